"""Ingest: read article files, chunk, embed what changed, and update the index."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from retrieval.index.embedding import Embedder
from retrieval.index.store import EMBEDDER, INGESTED, ArticleStore
from retrieval.ingest.articles import COLLECTION_SUFFIXES, Article, ArticleError, iter_files, load_file
from retrieval.ingest.chunking import Chunk, chunk_article

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

logger = logging.getLogger(__name__)

# Called with (done, total) as articles are embedded; the bot edits a progress message with it.
ProgressCallback = Callable[[int, int], None]
_EMBED_BATCH = 256  # chunks embedded at a time (whole articles)
_REMEMBERED = 20_000  # chunk vectors kept in a run to find repeated texts (1.5 KB each)
_CHANGE_CHUNKS = 5000  # chunks written to the live collection as one change (at most about this many)


@dataclass
class IngestReport:
    """What one ingest run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Unchanged articles embedded again because another embedding model made their vectors.
    reembedded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[ArticleError] = field(default_factory=list)
    duplicates: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.skipped

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.skipped)} skipped",
        ]
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates ignored")
        if self.reembedded:
            parts.append(f"{len(self.reembedded)} re-embedded by the new embedding model")
        return ", ".join(parts) + f" ({self.chunks_embedded} chunks embedded in {self.seconds:.1f}s)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "reembedded": len(self.reembedded),
            "removed": len(self.removed),
            "skipped": [str(error) for error in self.skipped],
            "duplicates": self.duplicates,
            "chunks_embedded": self.chunks_embedded,
            "seconds": round(self.seconds, 3),
        }


class Ingestor:
    """Turns article files into indexed chunks, re-embedding only what changed."""

    def __init__(
        self,
        store: ArticleStore,
        embedder: Embedder,
        chunk_size: int,
        chunk_overlap: int,
        max_file_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.max_file_bytes = max_file_bytes
        self.clock: Callable[[], float] = time.time  # when an article arrives (seconds since 1970)

    def read(self, paths: list[Path]) -> tuple[list[Article], list[ArticleError], set[str], int]:
        """Articles under `paths`, the errors, the files read whole, and the duplicate count.

        Whatever goes wrong with one file (too large, unreadable, a loader that fails in any way)
        skips that file with its path and the reason; it never ends the batch. An article whose
        content repeats one already read (the same file under two names) is counted as a duplicate.
        """
        articles: dict[str, Article] = {}
        by_content: set[str] = set()
        errors: list[ArticleError] = []
        read_ok: set[str] = set()
        duplicates = 0
        for path in paths:
            if not path.exists():
                errors.append(ArticleError(path, "no such file or directory"))
        for file in iter_files([p for p in paths if p.exists()]):
            try:
                self._check_size(file)
                found, bad = load_file(file)
            except ArticleError as exc:
                errors.append(exc)
                continue
            except Exception as exc:  # a loader's bug or a missing library must cost one file, not the batch
                logger.warning("loader failed on %s", file, exc_info=True)
                errors.append(ArticleError(file, f"could not be read ({type(exc).__name__}: {exc})"))
                continue
            errors.extend(bad)
            if not bad:
                read_ok.add(str(file))
            for article in found:
                if article.doc_id in articles or article.content_hash in by_content:
                    duplicates += 1
                    continue
                articles[article.doc_id] = article
                by_content.add(article.content_hash)
        for error in errors:
            logger.warning("skipped %s", error)
        return list(articles.values()), errors, read_ok, duplicates

    def _check_size(self, file: Path) -> None:
        """A single-article file over `max_file_bytes` is refused before it is read.

        JSON and JSON Lines files are collections (an export of thousands of articles is tens of
        megabytes), so the limit does not apply to them; the chunk size limit still bounds each article's chunks.
        """
        if self.max_file_bytes is None or file.suffix.lower() in COLLECTION_SUFFIXES:
            return
        try:
            size = file.stat().st_size
        except OSError as exc:
            raise ArticleError(file, f"cannot read file ({exc.strerror or exc})") from exc
        if size > self.max_file_bytes:
            raise ArticleError(
                file,
                f"file is too large ({size / 1e6:.1f} MB; the limit is {self.max_file_bytes / 1e6:.1f} MB, "
                "setting max_file_bytes)",
            )

    def ingest(
        self,
        paths: list[Path],
        *,
        prune: bool = False,
        rebuild: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Index the articles under `paths`.

        In place by default: what changed is embedded first, then written to the live collection as one
        journaled change (`ArticleStore.change`) that questions see whole or not at all, and that a crash
        rolls back or forward; only the articles read are looked up, unless `prune` needs them all.
        With `rebuild`, the changes go into a copy of the live collection that replaces it in one
        step when everything succeeded (`/reload`); on any error the live collection is left as it was.
        """
        started = time.perf_counter()
        report = IngestReport()
        articles, report.skipped, read_ok, report.duplicates = self.read(paths)
        if rebuild:
            target = self.store.stage()
            try:
                self._apply(target, articles, paths, read_ok, prune, report, progress)
                self.store.publish(target)
            except BaseException:
                self.store.discard(target)
                raise
        else:
            self._apply(None, articles, paths, read_ok, prune, report, progress)
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, doc_ids: list[str]) -> IngestReport:
        """Remove the articles `doc_ids` from the live collection in place (one journaled change)."""
        started = time.perf_counter()
        report = IngestReport()
        self.store.recover()
        stored = self.store.stored(doc_ids)
        report.removed = [doc_id for doc_id in doc_ids if doc_id in stored]
        if report.removed:
            self.store.change([], self.store.chunk_ids(report.removed))
        report.seconds = time.perf_counter() - started
        return report

    def _apply(
        self,
        target: Collection | None,
        articles: list[Article],
        paths: list[Path],
        read_ok: set[str],
        prune: bool,
        report: IngestReport,
        progress: ProgressCallback | None,
    ) -> None:
        """Compare the articles with what `target` holds (None: the live collection, changed in place) and
        write what is new, changed or gone."""
        if target is None:
            self.store.recover()  # a change a crash interrupted is finished before this one looks
            stored = self.store.articles() if prune else self.store.stored([a.doc_id for a in articles])
        else:
            stored = self.store.articles(target)
        todo: list[Article] = []
        embedder = self.embedder.version
        # When each article's content arrived: now for new and changed content, as before when only re-embedded.
        now = int(self.clock())
        arrived: dict[str, int] = {}
        for article in articles:
            previous = stored.get(article.doc_id)
            if previous is None:
                report.added.append(article.doc_id)
                todo.append(article)
            elif previous.content_hash != article.content_hash or previous.path != article.path:
                report.updated.append(article.doc_id)
                todo.append(article)
            else:
                report.unchanged.append(article.doc_id)
                if previous.embedder != embedder:  # vectors of two models are not comparable
                    report.reembedded.append(article.doc_id)
                    todo.append(article)
                    arrived[article.doc_id] = previous.ingested_at if previous.ingested_at is not None else now

        if prune:
            seen = {article.doc_id for article in articles}
            roots = [path.resolve() for path in paths]
            for doc_id, previous in stored.items():
                file = Path(previous.path)
                under = any(file.resolve() == root or root in file.resolve().parents for root in roots)
                gone = not file.exists() or (str(file) in read_ok and doc_id not in seen)
                if under and gone:
                    report.removed.append(doc_id)

        stale = report.updated + report.reembedded + report.removed
        when = {d: arrived.get(d, now) for d in (a.doc_id for a in todo)}
        if target is not None:
            if stale:
                self.store.delete(target, stale)

            def write(article: Article, chunks: list[Chunk], vectors: np.ndarray, extra: dict[str, str | int]) -> None:
                self.store.add(target, article, chunks, vectors, [extra for _ in chunks])

            self._embed_and_add(todo, when, report, progress, write)
            return
        # Written a change at a time, of `_CHANGE_CHUNKS` chunks or so, each of whole articles with the old
        # chunks of those it replaces: a large ingest never holds all its vectors, and each article is seen
        # old or new. Removed articles go with the last change.
        replaced = set(report.updated + report.reembedded)
        batch: list[tuple[Article, list[Chunk], np.ndarray, dict[str, str | int]]] = []

        def write_change(gone: list[str]) -> None:
            docs = [article.doc_id for article, *_ in batch if article.doc_id in replaced] + gone
            # The old chunks of what changed or went (those the new content has too are kept: same ids).
            self.store.change(list(batch), self.store.chunk_ids(docs) if docs else [])
            batch.clear()

        def collect(article: Article, chunks: list[Chunk], vectors: np.ndarray, extra: dict[str, str | int]) -> None:
            batch.append((article, chunks, vectors, extra))
            if sum(len(item[1]) for item in batch) >= _CHANGE_CHUNKS:
                write_change([])

        self._embed_and_add(todo, when, report, progress, collect)
        if batch or report.removed:
            write_change(report.removed)

    def _embed_and_add(
        self,
        articles: list[Article],
        arrived: dict[str, int],
        report: IngestReport,
        progress: ProgressCallback | None,
        store: Callable[[Article, list[Chunk], np.ndarray, dict[str, str | int]], None],
    ) -> None:
        """Embed the articles' chunks a batch at a time, handing each article to `store` while the next
        batch is embedded.

        The encoder and Chroma both work outside the GIL, so a writer thread stores batch n while this
        thread embeds batch n + 1. A
        chunk text that repeats one already embedded in the run (boilerplate, a wire story's
        paragraph under the same headline) is embedded once.
        """
        bar = tqdm(total=len(articles), unit="article", desc="embedding", disable=None, leave=False)
        done = 0
        embedded: dict[str, np.ndarray] = {}

        def write(batch: list[tuple[Article, list[Chunk]]], vectors: np.ndarray) -> None:
            nonlocal done
            offset = 0
            for article, chunks in batch:
                fields: dict[str, str | int] = {EMBEDDER: self.embedder.version, INGESTED: arrived[article.doc_id]}
                store(article, chunks, vectors[offset : offset + len(chunks)], fields)
                offset += len(chunks)
            done += len(batch)
            bar.update(len(batch))
            if progress:
                progress(done, len(articles))

        def embed(batch: list[tuple[Article, list[Chunk]]]) -> np.ndarray:
            texts = [chunk.embedding_text(article) for article, chunks in batch for chunk in chunks]
            if len(embedded) > _REMEMBERED:
                embedded.clear()
            new = list(dict.fromkeys(text for text in texts if text not in embedded))
            if new:
                embedded.update(zip(new, self.embedder.embed_documents(new)))
            report.chunks_embedded += len(new)
            if not texts:
                return np.zeros((0, self.embedder.dimension), dtype=np.float32)
            return np.stack([embedded[text] for text in texts])

        writer = ThreadPoolExecutor(1, thread_name_prefix="ingest-writer")
        pending: Future[None] | None = None
        try:
            for batch in _batches(articles, self.chunk_size, self.chunk_overlap):
                vectors = embed(batch)
                if pending is not None:
                    pending.result()  # one batch in flight: a failed write stops the run here
                pending = writer.submit(write, batch, vectors)
            if pending is not None:
                pending.result()
        finally:
            writer.shutdown(wait=True)
            bar.close()


def _batches(articles: list[Article], chunk_size: int, chunk_overlap: int) -> Iterator[list[tuple[Article, list[Chunk]]]]:
    """The articles with their chunks, in batches of about `_EMBED_BATCH` chunks (whole articles)."""
    batch: list[tuple[Article, list[Chunk]]] = []
    pending = 0
    for article in articles:
        chunks = chunk_article(article, chunk_size, chunk_overlap)
        batch.append((article, chunks))
        pending += len(chunks)
        if pending >= _EMBED_BATCH:
            yield batch
            batch, pending = [], 0
    if batch:
        yield batch
