"""The reader: a model trained on news questions that reads each candidate sentence together with the question.

Two parts, both learned from the RealTimeQA training weeks (`retrieval/evaluation/training.py`):

1. a cross-encoder (the bundled MiniLM's first layers, fine-tuned to tell the sentence that answers
   a question from the sentences that only talk about its subject, exported to int8 ONNX). It reads
   "question [SEP] sentence | headline" as one input, so it can tell "X won best picture" from "the
   awards take place on Sunday": the score of a pair, not of a sentence alone;
2. a logistic regression over that score and the cheap features every answerer measures
   (`read/candidates.py`). Its output is the probability that the sentence holds the answer:
   what the answerer ranks by and the refusal gate compares with the calibrated threshold.

Reading a pair costs a pass of the model, so only the `pool` candidates that a cheap prior (the
question's terms in the sentence and its passage, the kind of thing asked for) puts first are read.
Nothing is computed at ingest.
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

from retrieval.index.encoder import OnnxEncoder
from retrieval.passages import Passage, Query
from retrieval.read.candidates import Candidate, SentenceFeatures, candidates, sentence_features, term_weights

logger = logging.getLogger(__name__)

_PAIRS_KEPT = 8192  # pair scores remembered (re-ranking and answering read the same pairs)
RERANK_FUSION_K = 60  # reciprocal rank fusion constant of `Reader.rerank`

# The features the logistic regression weighs, in the order of its coefficients.
FEATURES = ("pair", "pair_gap", "coverage", "context", "answer_type", "recency", "headline", "lead")


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
    """One row of `FEATURES` per candidate: the pair score, its gap to the best, then the shared features."""
    if not features:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    best = float(np.max(scores))
    rows = [
        [float(s), float(s) - best, f.coverage, f.context, f.answer_type, f.recency, f.headline, f.lead]
        for f, s in zip(features, scores)
    ]
    return np.asarray(rows, dtype=np.float32)


@dataclass(frozen=True)
class ReaderWeights:
    """The learned feature weights, how many candidates are read, and the calibrated refusal threshold.

    Two regressions over the same features: `coef` orders the answering sentences (recency
    counts: of two reports, the one near the as-of date is quoted first); `gate_coef` is the
    probability the refusal threshold judges, and gives recency no weight (an old article can
    answer; a recent one that does not answer is no evidence).
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
        """The same probability without recency: what the refusal threshold judges."""
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


class Reader:
    """Reads the sentences of passages against a question: each candidate's probability of answering it."""

    def __init__(
        self,
        model: ReaderModel,
        term_weight: Callable[[str], float],
        *,
        threshold: float | None = None,
        pool: int | None = None,
    ) -> None:
        self.model = model
        self.term_weight = term_weight
        self.threshold = model.weights.threshold if threshold is None else threshold
        self.pool = pool or model.weights.pool
        # Re-ranking and answering read many of the same pairs: each is scored once.
        self._pairs: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._pairs_lock = threading.Lock()

    def read(self, query: Query, passages: list[Passage]) -> list[Candidate]:
        """The `pool` candidates of the passages that the prior puts first, best first.

        `rank` = P(answers), `score` = the same without recency (what the refusal gate judges).
        """
        found = candidates(passages)
        if not found:
            return []
        features = sentence_features(
            query, found, np.zeros(len(found)), term_weights(query, self.term_weight), with_support=False
        )
        keep = chosen(features, self.pool)
        found, features = [found[i] for i in keep], [features[i] for i in keep]
        scores = self._scores(query.text, [pair_text(c) for c in found])
        rows = feature_matrix(features, scores)
        weights = self.model.weights
        for candidate, found_features, p, gate in zip(found, features, weights.probability(rows), weights.evidence(rows)):
            candidate.features = found_features
            candidate.rank = float(p)
            candidate.score = float(gate)
        return sorted(found, key=lambda c: c.rank, reverse=True)

    def rerank(self, query: Query, passages: list[Passage]) -> list[Passage]:
        """The passages in the order of two fused rankings: retrieval's, and the reader's by the best sentence in each.

        Reciprocal rank fusion (`RERANK_FUSION_K`, as search fuses its dense and keyword rankings):
        each ranking's evidence counts, and neither's scale matters. A passage none of whose
        sentences was read keeps retrieval's evidence alone.
        """
        best: dict[str, float] = {}
        for candidate in self.read(query, passages):
            best.setdefault(candidate.passage.chunk_id, candidate.rank)
        by_reader = sorted(range(len(passages)), key=lambda i: (-best.get(passages[i].chunk_id, 0.0), i))
        fused = [1.0 / (RERANK_FUSION_K + i + 1) for i in range(len(passages))]
        for reader_rank, i in enumerate(by_reader, start=1):
            fused[i] += 1.0 / (RERANK_FUSION_K + reader_rank)
        order = sorted(range(len(passages)), key=lambda i: (-fused[i], i))
        return [replace(passages[i], rank=rank) for rank, i in enumerate(order, start=1)]

    def forget(self) -> None:
        """Drop the remembered pair scores (a benchmark's questions are then new again)."""
        with self._pairs_lock:
            self._pairs.clear()

    def _scores(self, question: str, texts: list[str]) -> np.ndarray:
        scores = np.zeros(len(texts), dtype=np.float32)
        missing: list[int] = []
        with self._pairs_lock:
            for i, text in enumerate(texts):
                hit = self._pairs.get((question, text))
                if hit is None:
                    missing.append(i)
                else:
                    self._pairs.move_to_end((question, text))
                    scores[i] = hit
        if missing:
            fresh = self.model.scores(question, [texts[i] for i in missing])
            scores[missing] = fresh
            with self._pairs_lock:
                for i, value in zip(missing, fresh):
                    self._pairs[(question, texts[i])] = float(value)
                while len(self._pairs) > _PAIRS_KEPT:
                    self._pairs.popitem(last=False)
        return scores
