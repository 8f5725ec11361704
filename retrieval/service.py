"""Builds the long-lived services (embedder, store, retriever, answerer, ingestor) from settings, once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

from config import Settings
from retrieval.answer.answerer import Answerer, AnswerGenerator
from retrieval.answer.extractive import ExtractiveGenerator
from retrieval.index.embedding import Embedder, SentenceTransformerEmbedder
from retrieval.index.store import ArticleStore
from retrieval.ingest.pipeline import Ingestor
from retrieval.search.hybrid import HybridRetriever

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """The embedder, index, answerer and ingestor of one process, made on first use."""

    settings: Settings

    @cached_property
    def embedder(self) -> Embedder:
        return SentenceTransformerEmbedder(
            self.settings.embedding_model or None, self.settings.embedding_batch_size, self.settings.embedding_threads
        )

    @cached_property
    def store(self) -> ArticleStore:
        return ArticleStore.from_settings(self.settings)

    @cached_property
    def retriever(self) -> HybridRetriever:
        return HybridRetriever(self.store, self.embedder, top_k=self.settings.top_k)

    @cached_property
    def generator(self) -> AnswerGenerator:
        if self.settings.answer_backend == "llm":
            from retrieval.answer.llm import LLMGenerator

            return LLMGenerator.from_settings(self.settings, fallback=self._extractive())
        return self._extractive()

    def _extractive(self) -> ExtractiveGenerator:
        return ExtractiveGenerator(
            self.embedder,
            lambda term: self.retriever.keywords.idf(term),
            threshold=self.settings.refusal_threshold,
            max_sentences=self.settings.answer_sentences,
        )

    @cached_property
    def answerer(self) -> Answerer:
        return Answerer(self.retriever, self.generator, top_k=self.settings.top_k)

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.embedder, self.settings.chunk_size, self.settings.chunk_overlap)
