"""The reader: a model trained on news questions that reads each candidate sentence together with the question.

Two parts, both learned from the RealTimeQA training weeks (`retrieval/evaluation/training.py`):

1. a cross-encoder (the bundled MiniLM's first layers, fine-tuned to tell the sentence that answers
   a question from the sentences that only talk about its subject, exported to int8 ONNX). It reads
   "question [SEP] sentence | headline" as one input, so it can tell "X won best picture" from "the
   awards take place on Sunday": the score of a pair, not of a sentence alone;
2. two logistic regressions over that score, the sentence's cosine similarity to the question (the
   bundled embedding model's) and the cheap features every answerer measures (`read/candidates.py`).
   One gives the probability that the sentence holds the answer, what the answerer ranks by; the
   other is what the refusal gate compares with the calibrated threshold. The cosine tells whether
   the articles speak of what was asked rather than which sentence answers it, so training gives it
   weight in the gate alone (`training.RANKING_LEFT_OUT`).

Reading a pair costs a pass of the model, and a cosine a pass of the embedder, so only the `pool`
candidates that a cheap prior (the question's terms in the sentence and its passage, the kind of
thing asked for) puts first are read. Nothing is computed at ingest.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from retrieval.index.embedding import Embedder
from retrieval.index.encoder import OnnxEncoder
from retrieval.passages import Passage, Query
from retrieval.read.candidates import Candidate, SentenceFeatures, candidates, sentence_features, term_weights

logger = logging.getLogger(__name__)

_KEPT = 8192  # pair scores and sentence vectors remembered (the gate and the answer read the same sentences)

# The features the logistic regression weighs, in the order of its coefficients.
FEATURES = ("pair", "pair_gap", "dense", "coverage", "context", "answer_type", "recency", "headline", "lead")


def bundled_model() -> Path:
    """The reader shipped with newsbot: weights, tokenizer, learned feature weights and model card."""
    return Path(str(resources.files("retrieval.read") / "model"))


def pair_text(candidate: Candidate) -> str:
    """What the model reads of a candidate after the question: the sentence, then its article's headline."""
    title = candidate.passage.title
    return candidate.sentence if candidate.sentence == title else f"{candidate.sentence} | {title}"


def prior(features: SentenceFeatures) -> float:
    """The cheap score that chooses which candidates the model reads: the question's terms, the kind asked for."""
    return 0.75 * features.coverage + 0.25 * features.context + 0.15 * features.answer_type + 0.05 * features.recency


def chosen(features: list[SentenceFeatures], pool: int) -> list[int]:
    """The indices of the `pool` candidates that the prior puts first, in their own order."""
    priors = [prior(f) for f in features]
    return sorted(sorted(range(len(features)), key=lambda i: (-priors[i], i))[:pool])


def feature_matrix(features: list[SentenceFeatures], scores: np.ndarray) -> np.ndarray:
    """One row of `FEATURES` per candidate: the pair score, its gap to the best, then the shared features (`dense` set)."""
    if not features:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    best = float(np.max(scores))
    rows = [
        [float(s), float(s) - best, f.dense, f.coverage, f.context, f.answer_type, f.recency, f.headline, f.lead]
        for f, s in zip(features, scores)
    ]
    return np.asarray(rows, dtype=np.float32)


@dataclass(frozen=True)
class ReaderWeights:
    """The learned feature weights, how many candidates are read, and the calibrated refusal threshold.

    Two regressions over the same features: `coef` orders the answering sentences (recency
    counts: of two reports, the one near the as-of date is quoted first); `gate_coef` is the
    probability the refusal threshold judges, and gives recency no weight (an old article can
    answer; a recent one that does not answer is no evidence). As trained, the cosine to the
    question weighs in the gate alone.
    """

    coef: tuple[float, ...]
    intercept: float
    gate_coef: tuple[float, ...]
    gate_intercept: float
    threshold: float
    pool: int = 24

    @classmethod
    def read(cls, path: Path) -> ReaderWeights:
        data = json.loads(path.read_text(encoding="utf-8"))
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"{path}: features {data['features']} are not the reader's {list(FEATURES)}")
        return cls(
            tuple(float(c) for c in data["coef"]),
            float(data["intercept"]),
            tuple(float(c) for c in data["gate_coef"]),
            float(data["gate_intercept"]),
            float(data["threshold"]),
            int(data.get("pool", cls.pool)),
        )

    def probability(self, rows: np.ndarray) -> np.ndarray:
        """P(the sentence holds the answer) for each row of features: what orders the sentences."""
        return _logistic(rows, self.coef, self.intercept)

    def evidence(self, rows: np.ndarray) -> np.ndarray:
        """P(some answer is here) by this sentence, the gate's regression: what the refusal threshold judges."""
        return _logistic(rows, self.gate_coef, self.gate_intercept)


def _logistic(rows: np.ndarray, coef: tuple[float, ...], intercept: float) -> np.ndarray:
    if not len(rows):
        return np.zeros(0)
    return 1.0 / (1.0 + np.exp(-(rows @ np.asarray(coef, dtype=np.float32) + intercept)))


class ReaderModel:
    """The files of one trained reader: its pair model and its feature weights."""

    def __init__(self, folder: str | Path | None = None, *, threads: int = 1) -> None:
        self.folder = Path(folder) if folder else bundled_model()
        # The pair model is an encoder whose "vector" is one number: the pair's score.
        self.scorer = OnnxEncoder(self.folder, threads=threads)
        self.weights = ReaderWeights.read(self.folder / "reader.json")

    def scores(self, question: str, texts: list[str]) -> np.ndarray:
        """The model's score of each (question, text) pair: higher, the more the text answers the question."""
        return self.scorer.embed([(question, text) for text in texts])[:, 0]


class _Remembered:
    """The last `kept` values computed for keys, thread-safe: what one reading computed, the next need not."""

    def __init__(self, kept: int = _KEPT) -> None:
        self.kept = kept
        self._values: OrderedDict[object, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, keys: list[object], compute: Callable[[list[int]], list[object]]) -> list[object]:
        """The value of each key: remembered, or computed (`compute(indices of the missing keys)`) and remembered."""
        found: list[object] = [None] * len(keys)
        missing: list[int] = []
        with self._lock:
            for i, key in enumerate(keys):
                if key in self._values:
                    self._values.move_to_end(key)
                    found[i] = self._values[key]
                else:
                    missing.append(i)
        if missing:
            fresh = compute(missing)
            with self._lock:
                for i, value in zip(missing, fresh):
                    found[i] = self._values[keys[i]] = value
                while len(self._values) > self.kept:
                    self._values.popitem(last=False)
        return found

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class Reader:
    """Reads the sentences of passages against a question: each candidate's probability of answering it."""

    def __init__(
        self,
        model: ReaderModel,
        term_weight: Callable[[str], float],
        embedder: Embedder,
        *,
        threshold: float | None = None,
        pool: int | None = None,
    ) -> None:
        self.model = model
        self.term_weight = term_weight
        self.embedder = embedder
        self.threshold = model.weights.threshold if threshold is None else threshold
        self.pool = pool or model.weights.pool
        # The evidence gate and the answer (with the LLM backend), a follow-up and the same wire story in another
        # outlet read many of the same sentences: each pair is scored, each sentence embedded, once.
        self._pairs = _Remembered()
        self._vectors = _Remembered()

    def read(self, query: Query, passages: list[Passage]) -> list[Candidate]:
        """The `pool` candidates of the passages that the prior puts first, best first.

        `rank` = P(answers), `score` = the gate's probability (what the refusal threshold judges).
        """
        found = candidates(passages)
        if not found:
            return []
        features = sentence_features(
            query, found, np.zeros(len(found)), term_weights(query, self.term_weight), with_support=False
        )
        keep = chosen(features, self.pool)
        found = [found[i] for i in keep]
        texts = [c.sentence for c in found]
        features = [replace(features[i], dense=float(d)) for i, d in zip(keep, self.similarities(query.text, texts))]
        scores = self.scores(query.text, [pair_text(c) for c in found])
        rows = feature_matrix(features, scores)
        weights = self.model.weights
        for candidate, found_features, p, gate in zip(found, features, weights.probability(rows), weights.evidence(rows)):
            candidate.features = found_features
            candidate.rank = float(p)
            candidate.score = float(gate)
        return sorted(found, key=lambda c: c.rank, reverse=True)

    def scores(self, question: str, texts: list[str]) -> np.ndarray:
        """The pair model's score of (question, text) for each text."""

        def compute(missing: list[int]) -> list[object]:
            return [float(v) for v in self.model.scores(question, [texts[i] for i in missing])]

        return np.asarray(self._pairs.get([(question, t) for t in texts], compute), dtype=np.float32)

    def similarities(self, question: str, sentences: list[str]) -> np.ndarray:
        """The cosine similarity of each sentence to the question, by the embedding model."""
        texts = [question, *sentences]

        def compute(missing: list[int]) -> list[object]:
            return list(self.embedder.embed([texts[i] for i in missing]))

        vectors = np.asarray(self._vectors.get(list(texts), compute))
        return (vectors[1:] @ vectors[0]).astype(np.float32)

    def forget(self) -> None:
        """Drop the remembered pair scores and sentence vectors (a benchmark's questions are then new again)."""
        self._pairs.clear()
        self._vectors.clear()
