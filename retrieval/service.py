"""Builds the long-lived services (embedder, store, retriever, answerer, briefer, ingestor) from settings, once.

Every part can be passed to the constructor instead (tests pass fakes or a shared model that way);
whatever is not given is built from the settings on first use, from the parts before it.
"""

from __future__ import annotations

import logging

from config import Settings
from retrieval.answer.answerer import Answerer
from retrieval.answer.briefing import Briefer
from retrieval.answer.extractive import ExtractiveGenerator
from retrieval.answer.protocols import AnswerGenerator
from retrieval.index.embedding import Embedder, SentenceTransformerEmbedder
from retrieval.index.store import ArticleStore
from retrieval.ingest.pipeline import Ingestor
from retrieval.search.hybrid import HybridRetriever

logger = logging.getLogger(__name__)


class Services:
    """The embedder, index, answerer, briefer and ingestor of one process, made on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: ArticleStore | None = None,
        retriever: HybridRetriever | None = None,
        generator: AnswerGenerator | None = None,
        answerer: Answerer | None = None,
        briefer: Briefer | None = None,
        ingestor: Ingestor | None = None,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._store = store
        self._retriever = retriever
        self._generator = generator
        self._answerer = answerer
        self._briefer = briefer
        self._ingestor = ingestor

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            settings = self.settings
            self._embedder = SentenceTransformerEmbedder(
                settings.embedding_model or None, settings.embedding_batch_size, settings.embedding_threads
            )
        return self._embedder

    @property
    def store(self) -> ArticleStore:
        if self._store is None:
            self._store = ArticleStore.from_settings(self.settings)
        return self._store

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            self._retriever = HybridRetriever(self.store, self.embedder, top_k=self.settings.top_k)
        return self._retriever

    @property
    def generator(self) -> AnswerGenerator:
        if self._generator is None:
            extractive = ExtractiveGenerator(
                self.embedder,
                self.retriever.term_weight,
                threshold=self.settings.refusal_threshold,
                max_sentences=self.settings.answer_sentences,
            )
            if self.settings.answer_backend == "llm":
                from retrieval.answer.llm import LLMGenerator

                # The extractive scorer stays on as the evidence gate: weak evidence is refused before the model is asked.
                self._generator = LLMGenerator.from_settings(self.settings, gate=extractive)
            else:
                self._generator = extractive
        return self._generator

    @property
    def answerer(self) -> Answerer:
        if self._answerer is None:
            self._answerer = Answerer(self.retriever, self.generator, top_k=self.settings.top_k)
        return self._answerer

    @property
    def briefer(self) -> Briefer:
        if self._briefer is None:
            self._briefer = Briefer(self.retriever, self.embedder)
        return self._briefer

    @property
    def ingestor(self) -> Ingestor:
        if self._ingestor is None:
            settings = self.settings
            self._ingestor = Ingestor(
                self.store, self.embedder, settings.chunk_size, settings.chunk_overlap, settings.max_file_bytes
            )
        return self._ingestor

    def warm_up(self) -> None:
        """Load the model and the keyword index now, once, rather than on the first question."""
        _ = self.answerer, self.briefer
        self.retriever.refresh()
        _ = self.embedder.dimension
