"""Builds the long-lived services (embedder, store, retriever, answerer, briefer, ingestor) from settings, once.

Every part can be passed to the constructor instead (tests pass fakes or a shared model that way);
whatever is not given is built from the settings on first use, from the parts before it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings
from retrieval.answer.answerer import Answerer
from retrieval.answer.briefing import Briefer
from retrieval.answer.extractive import DEFAULT_ENTITY_WEIGHTS, UNWEIGHTED, ExtractiveGenerator
from retrieval.answer.protocols import AnswerGenerator
from retrieval.index.embedding import Embedder, OnnxEmbedder, SentenceTransformerEmbedder
from retrieval.index.store import ArticleStore
from retrieval.ingest.articles import Article
from retrieval.ingest.database import Database
from retrieval.ingest.feeds import Collector, PollResult
from retrieval.ingest.fetch import Fetcher, FetchPolicy
from retrieval.ingest.jobs import FEED_JOB, JobBook, feed_job_name
from retrieval.ingest.pipeline import Ingestor, IngestReport
from retrieval.read.entities import EntityTagger, shared_tagger
from retrieval.read.reader import Reader, ReaderModel
from retrieval.search.hybrid import HybridRetriever

logger = logging.getLogger(__name__)


def _one_blas_thread() -> None:
    """One thread for numpy's matrix products in this process, from now on.

    Questions are answered side by side in threads, and each one's products are small (a question
    against 16k chunk vectors: 1-2 ms). A BLAS that spreads every product over all cores makes the
    questions wait for each other's threads: four questions at once took as long as four in a row
    (0.96-0.99x) with two BLAS threads on this 2-core machine, and 1.13-1.34x with one (bench/RESULTS.md).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@dataclass
class FeedRefresh:
    """One poll of the feeds and the ingest of what it found (None: nothing new, nothing embedded)."""

    poll: PollResult
    report: IngestReport | None = None
    busy: list[int] = field(default_factory=list)  # feeds left to the replica polling them now

    @property
    def changed_index(self) -> bool:
        report = self.report
        return report is not None and bool(report.added or report.updated or report.removed or report.reembedded)


@dataclass
class LinkResult:
    """A page an admin sent: its article, and what the ingest did with it."""

    article: Article
    report: IngestReport


class Services:
    """The embedder, index, answerer, briefer and ingestor of one process, made on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: ArticleStore | None = None,
        retriever: HybridRetriever | None = None,
        reader_model: ReaderModel | None = None,
        generator: AnswerGenerator | None = None,
        answerer: Answerer | None = None,
        briefer: Briefer | None = None,
        ingestor: Ingestor | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._store = store
        self._retriever = retriever
        self._reader_model = reader_model
        self._reader: Reader | None = None
        self._generator = generator
        self._answerer = answerer
        self._briefer = briefer
        self._ingestor = ingestor
        self._fetcher = fetcher
        self._database: Database | None = None
        self._collector: Collector | None = None
        self._jobs: JobBook | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            settings = self.settings
            if settings.embedding_runtime == "onnx":
                self._embedder = OnnxEmbedder(
                    settings.embedding_model or None,
                    settings.model_cache or None,
                    batch_size=settings.embedding_batch_size,
                    threads=settings.embedding_threads,
                    workers=os.cpu_count() or 1,
                    max_tokens=settings.embedding_max_tokens or None,
                )
            else:
                self._embedder = SentenceTransformerEmbedder(
                    settings.embedding_model or None, settings.embedding_batch_size, settings.embedding_threads
                )
        return self._embedder

    @property
    def store(self) -> ArticleStore:
        if self._store is None:
            # On a Chroma server that several replicas share, writers take turns on a lock in the shared store.
            shared = self.settings.chroma_mode == "http" and bool(self.settings.database_url)
            self._store = ArticleStore.from_settings(self.settings, lock=self.database.lock if shared else None)
        return self._store

    @property
    def retriever(self) -> HybridRetriever:
        if self._retriever is None:
            self._retriever = HybridRetriever(self.store, self.embedder, top_k=self.settings.top_k)
        return self._retriever

    @property
    def reader_model(self) -> ReaderModel | None:
        """The trained reader's files (None with reader = "off")."""
        choice = self.settings.reader
        if self._reader_model is None and choice != "off":
            folder = None if choice == "bundled" else choice
            self._reader_model = ReaderModel(folder, threads=self.settings.reader_threads)
        return self._reader_model

    @property
    def reader(self) -> Reader | None:
        """The reader over this index: scores sentences, re-ranks passages, gates answers."""
        if self._reader is None and self.reader_model is not None:
            self._reader = Reader(
                self.reader_model, self.retriever.term_weight, self.embedder, threshold=self.settings.reader_threshold
            )
        return self._reader

    @property
    def tagger(self) -> EntityTagger | None:
        """The named-entity tagger the hand-weighted scorer uses: for its ranking (`entities`), its short answers
        (`short_answer`) or both; None with both off, or spaCy missing."""
        return shared_tagger() if self.settings.entities or self.settings.short_answer else None

    @property
    def generator(self) -> AnswerGenerator:
        if self._generator is None:
            reader = self.reader
            extractive = ExtractiveGenerator(
                self.embedder,
                self.retriever.term_weight,
                threshold=reader.threshold if reader else self.settings.refusal_threshold,
                max_sentences=self.settings.answer_sentences,
                reader=reader,
                tagger=self.tagger if reader is None else None,
                entity_weights=DEFAULT_ENTITY_WEIGHTS if self.settings.entities else UNWEIGHTED,
                short_answers=self.settings.short_answer,
            )
            if self.settings.answer_backend == "llm":
                from retrieval.answer.llm import LLMGenerator

                # The extractive scorer stays on as the evidence gate (weak evidence is refused before the model is
                # asked), and answers when the model cannot (setting llm_fallback).
                self._generator = LLMGenerator.from_settings(self.settings, gate=extractive, reader=reader, fallback=extractive)
            else:
                self._generator = extractive
        return self._generator

    @property
    def answerer(self) -> Answerer:
        if self._answerer is None:
            settings = self.settings
            _one_blas_thread()
            self._answerer = Answerer(self.retriever, self.generator, top_k=settings.top_k)
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

    @property
    def database(self) -> Database:
        """The shared store of feeds, articles, digests and jobs: the SQLite file in data_dir, or `database_url`."""
        if self._database is None:
            self._database = Database(self.settings.database)
        return self._database

    @property
    def jobs(self) -> JobBook:
        """The shared schedule of feed polls and digests, and this process's leases on them."""
        if self._jobs is None:
            self._jobs = JobBook(self.database, lease_seconds=self.settings.job_lease_seconds)
        return self._jobs

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            self._fetcher = Fetcher(FetchPolicy.from_settings(self.settings))
        return self._fetcher

    @property
    def collector(self) -> Collector:
        """Feeds and links: fetches pages and writes their articles for the ingestor."""
        if self._collector is None:
            self._collector = Collector(
                self.database, self.fetcher, self.settings.fetched_dir, retention_days=self.settings.feed_retention_days
            )
        return self._collector

    def refresh_feeds(self, feed_id: int | None = None, *, feed_ids: list[int] | None = None) -> FeedRefresh:
        """Poll the feeds (or one, or those of `feed_ids`) and ingest what is new or changed (`ingest_poll`)."""
        return self.ingest_poll(self.collector.poll(feed_id, feed_ids=feed_ids))

    def refresh_feeds_now(self) -> FeedRefresh:
        """Poll every feed now, as `newsbot refresh` does, each under its lease in the shared schedule: a feed a
        running replica is polling is left to it (`busy`), and each polled feed's next scheduled poll is an
        interval from now, so that neither polls the same feed twice at once or soon after."""
        every = self.settings.feed_poll_minutes * 60
        claims, busy = [], []
        for feed in self.collector.feeds():
            claimed = self.jobs.claim(feed_job_name(feed.id))
            if claimed is None:
                busy.append(feed.id)
            else:
                claims.append(claimed)
        try:
            with self.jobs.renewing(claims):
                refresh = self.refresh_feeds(feed_ids=[int(c.name.removeprefix(FEED_JOB)) for c in claims])
        except BaseException:
            for claimed in claims:
                self.jobs.release(claimed)
            raise
        for claimed in claims:
            self.jobs.done(claimed, time.time() + every if every else None)
        refresh.busy = busy
        return refresh

    def ingest_poll(self, poll: PollResult) -> FeedRefresh:
        """Change the live collection in place by what a poll found (and what an interrupted one left):
        new and changed articles added, expired ones removed, each as one journaled change questions
        see whole (`Ingestor.ingest`, `Ingestor.remove`). Nothing new: nothing done."""
        refresh = FeedRefresh(poll)
        removal = self.ingestor.remove(poll.expired_ids) if poll.expired_ids else None
        if poll.changed:
            refresh.report = self.ingestor.ingest(poll.changed)
            if removal is not None:
                refresh.report.removed += removal.removed
                refresh.report.seconds += removal.seconds
        else:
            refresh.report = removal
        self.collector.settle(poll.changed, poll.expired_ids)
        if refresh.report is not None:
            logger.info("feeds ingested: %s", refresh.report.summary())
        return refresh

    def add_link(self, url: str) -> LinkResult:
        """Fetch, extract and ingest one page; raises FetchError or ArticleError saying why not."""
        article, path = self.collector.fetch_link(url)
        return self.ingest_link(article, path)

    def ingest_link(self, article: Article, path: Path) -> LinkResult:
        """Ingest the article file `fetch_link` wrote into the live collection, in place."""
        result = LinkResult(article, self.ingestor.ingest([path]))
        self.collector.settle([path], [])
        return result

    def close(self) -> None:
        """Close what holds connections (the fetcher's, the database's)."""
        if self._fetcher is not None:
            self._fetcher.close()
        if self._database is not None:
            self._database.close()

    def warm_up(self) -> None:
        """Load the model and the keyword index now, once, rather than on the first question."""
        _ = self.answerer, self.briefer
        self.retriever.refresh()
        _ = self.embedder.dimension
        if self.reader is not None:
            self.reader.model.scores("warm up", ["the model is loaded"])
        elif self.tagger is not None:
            self.tagger.entities(["The tagger is loaded in London."])
