"""The reader: a model trained on news questions that scores how well each sentence answers a question.

Two parts, both learned from the RealTimeQA training weeks (`retrieval/evaluation/training.py`):

1. an encoder (the bundled MiniLM fine-tuned on question -> answering sentence pairs, exported
   to int8 ONNX) whose cosine says how much a sentence reads like the answer to the question.
   A sentence's vector does not depend on the question, so it is computed once, at ingest;
2. a logistic regression over that cosine and the cheap features every answerer measures
   (`read/candidates.py`). Its output is the probability that the sentence holds the answer:
   what the answerer ranks by and the refusal gate compares with the calibrated threshold.
"""

from __future__ import annotations

import hashlib
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
from retrieval.index.store import ChunkStore
from retrieval.passages import Passage, Query
from retrieval.read.candidates import Candidate, SentenceFeatures, candidates, sentence_features, term_weights
from retrieval.read.vectors import SentenceAnnotator, SentenceVectors, reader_text

logger = logging.getLogger(__name__)

_QUESTIONS_KEPT = 256  # question vectors remembered
RERANK_FUSION_K = 60  # reciprocal rank fusion constant of `Reader.rerank`

# The features the logistic regression weighs, in the order of its coefficients.
FEATURES = ("reader", "reader_gap", "coverage", "context", "answer_type", "support", "recency", "headline", "lead")


def bundled_model() -> Path:
    """The reader shipped with newsbot: weights, tokenizer, learned feature weights and model card."""
    return Path(str(resources.files("retrieval.read") / "model"))


def feature_matrix(features: list[SentenceFeatures], similarities: np.ndarray) -> np.ndarray:
    """One row of `FEATURES` per candidate: the reader's cosine, its gap to the best, then the shared features."""
    if not features:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    best = float(np.max(similarities))
    rows = [
        [float(s), float(s) - best, f.coverage, f.context, f.answer_type, f.support, f.recency, f.headline, f.lead]
        for f, s in zip(features, similarities)
    ]
    return np.asarray(rows, dtype=np.float32)


@dataclass(frozen=True)
class ReaderWeights:
    """The learned feature weights, and the refusal threshold calibrated on the dev weeks.

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
        )

    def weighs(self, feature: str) -> bool:
        """Whether either regression gives `feature` any weight."""
        i = FEATURES.index(feature)
        return bool(self.coef[i] or self.gate_coef[i])

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
    """The files of one trained reader: its encoder and feature weights, and a version naming the encoder."""

    def __init__(self, folder: str | Path | None = None, *, threads: int = 1) -> None:
        self.folder = Path(folder) if folder else bundled_model()
        self.encoder = OnnxEncoder(self.folder, threads=threads)
        self.weights = ReaderWeights.read(self.folder / "reader.json")
        digest = hashlib.sha256()
        for name in ("model.onnx", "tokenizer.json"):
            digest.update((self.folder / name).read_bytes())
        # Stored sentence vectors are valid only for the encoder that made them.
        self.version = digest.hexdigest()[:16]

    def annotator(self) -> SentenceAnnotator:
        return SentenceAnnotator(self.encoder, self.version)


class Reader:
    """Reads the sentences of passages against a question: each candidate's probability of answering it."""

    def __init__(
        self,
        model: ReaderModel,
        store: ChunkStore,
        term_weight: Callable[[str], float],
        *,
        threshold: float | None = None,
    ) -> None:
        self.model = model
        self.vectors = SentenceVectors(store, model.encoder, model.version)
        self.term_weight = term_weight
        self.threshold = model.weights.threshold if threshold is None else threshold
        # Re-ranking and answering read one question twice: its vector is made once.
        self._questions: OrderedDict[str, np.ndarray] = OrderedDict()
        self._questions_lock = threading.Lock()

    def read(self, query: Query, passages: list[Passage]) -> list[Candidate]:
        """Every candidate sentence of the passages, best first: `rank` = P(answers), `score` = the same without recency."""
        found = candidates(passages)
        if not found:
            return []
        vectors = self._vectors(found)
        question = self._question(query.text)
        similarities = vectors @ question
        weights = self.model.weights
        features = sentence_features(
            query, found, similarities, term_weights(query, self.term_weight), with_support=weights.weighs("support")
        )
        rows = feature_matrix(features, similarities)
        for candidate, found_features, vector, p, gate in zip(
            found, features, vectors, weights.probability(rows), weights.evidence(rows)
        ):
            candidate.features = found_features
            candidate.vector = vector
            candidate.rank = float(p)
            candidate.score = float(gate)
        return sorted(found, key=lambda c: c.rank, reverse=True)

    def rerank(self, query: Query, passages: list[Passage]) -> list[Passage]:
        """The passages in the order of two fused rankings: retrieval's, and the reader's by the best sentence in each.

        Reciprocal rank fusion (`RERANK_FUSION_K`, as search fuses its dense and keyword rankings):
        each ranking's evidence counts, and neither's scale matters. On the dev weeks the reader's
        order alone put the answer in the first passage less often than retrieval did (recall@1 0.479
        against 0.514); fused, more often (0.542; bench/RESULTS.md).
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

    def forget_questions(self) -> None:
        """Drop the remembered question vectors (a benchmark's questions are then new again)."""
        with self._questions_lock:
            self._questions.clear()

    def _question(self, text: str) -> np.ndarray:
        with self._questions_lock:
            vector = self._questions.get(text)
            if vector is not None:
                self._questions.move_to_end(text)
                return vector
        vector = self.model.encoder.embed([text])[0]
        with self._questions_lock:
            self._questions[text] = vector
            while len(self._questions) > _QUESTIONS_KEPT:
                self._questions.popitem(last=False)
        return vector

    def _vectors(self, found: list[Candidate]) -> np.ndarray:
        """Each candidate's reader vector: stored with its chunk at ingest, else encoded now."""
        chunk_ids: list[str] = []
        titles: dict[str, str] = {}
        for candidate in found:
            for cid in candidate.passage.window or (candidate.passage.chunk_id,):
                chunk_ids.append(cid)
                titles[cid] = candidate.passage.title
        stored = self.vectors.lookup(list(dict.fromkeys(chunk_ids)), titles)
        rows = np.zeros((len(found), self.model.encoder.dimension), dtype=np.float32)
        missing: list[int] = []
        for i, candidate in enumerate(found):
            vector = None
            for cid in candidate.passage.window or (candidate.passage.chunk_id,):
                vector = stored.get(cid, {}).get(candidate.sentence)
                if vector is not None:
                    break
            if vector is None:
                missing.append(i)
            else:
                rows[i] = vector
        if missing:
            texts = [reader_text(found[i].sentence, found[i].passage.title) for i in missing]
            rows[missing] = self.model.encoder.embed(texts)
        return rows
