"""Hybrid retrieval: dense (Chroma) and keyword (BM25) results fused by reciprocal rank."""

from __future__ import annotations

import ctypes
import logging
import threading
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

import numpy as np

from retrieval.index.embedding import Embedder
from retrieval.index.keywords import KeywordIndex, tokenize
from retrieval.index.store import INGESTED, ChunkStore, day_number, parse_version
from retrieval.ingest.chunking import indexed_text
from retrieval.ingest.text import split_sentences
from retrieval.passages import Passage, Query

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Article:
    """What a passage shows of its article; one object shared by all the article's chunks."""

    doc_id: str
    title: str
    source: str | None
    url: str | None
    published: str | None
    published_day: int | None
    path: str | None
    ingested_at: int | None = None  # when this content of it was ingested (`store.INGESTED`)

    @classmethod
    def of(cls, meta: dict[str, Any]) -> _Article:
        day = meta.get("published_day")
        ingested = meta.get(INGESTED)
        return cls(
            doc_id=str(meta.get("doc_id", "")),
            title=str(meta.get("title", "")),
            source=meta.get("source"),
            url=meta.get("url"),
            published=meta.get("published"),
            published_day=None if day is None else int(day),
            path=meta.get("path"),
            ingested_at=None if ingested is None else int(ingested),
        )


@dataclass(slots=True)
class _Chunk:
    text: str
    article: _Article
    # The distinct terms of the text, by number (`KeywordIndex.term_id`): 4 bytes a term, where a set of
    # strings takes 30; story grouping compares them.
    terms: array[int] | None = None


def _similar(a: set[int], b: set[int]) -> bool:
    """Jaccard similarity of at least 0.5: the same story. Sets of very different sizes cannot be."""
    if 2 * min(len(a), len(b)) < max(len(a), len(b)) or not a:
        return False
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared) >= 0.5


_WINDOWS_KEPT = 4096  # windows remembered (about 10 MB), emptied when full and at every rebuild
_BUCKETS = 256  # of term numbers, for the bound on shared terms that spares most set comparisons


def _bucket_counts(terms: array[int]) -> np.ndarray:
    """How many of the terms fall in each bucket (term number modulo `_BUCKETS`)."""
    numbers = np.frombuffer(terms, dtype=np.uint32) if terms else np.zeros(0, dtype=np.uint32)
    return np.bincount(numbers % _BUCKETS, minlength=_BUCKETS).astype(np.int16)


class _Stories:
    """The stories of one result list, in order: each a head chunk (its article, its terms) and its members.

    A chunk repeats a story when its terms and the head's are the same story by `_similar`. Comparing
    the sets was a fifth of a search's time (a list of twenty stories: 2,600 comparisons a question),
    so each chunk's terms are also counted into buckets: two sets cannot share more terms than the sum,
    over the buckets, of the smaller count, and only the stories this bound leaves possible are compared.
    The result is exactly that of comparing every story.
    """

    def __init__(self, capacity: int) -> None:
        self.members: list[list[str]] = []
        self._heads: list[tuple[str, set[int]]] = []
        self._counts = np.zeros((max(capacity, 1), _BUCKETS), dtype=np.int16)
        self._sizes = np.zeros(max(capacity, 1), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.members)

    def find(self, doc_id: str, terms: array[int], counts: np.ndarray) -> list[str] | None:
        """The first story that a chunk of article `doc_id` with these (distinct) terms repeats from another article."""
        n = len(self.members)
        if not n or not terms:
            return None
        # `_similar` needs shared / (|a| + |b| - shared) >= 0.5, that is 3 * shared >= |a| + |b|.
        shared_at_most = np.minimum(self._counts[:n], counts).sum(axis=1)
        possible = np.flatnonzero(3 * shared_at_most >= self._sizes[:n] + len(terms))
        if not len(possible):
            return None
        compared = set(terms)
        for i in possible:
            head_doc, head_terms = self._heads[i]
            if head_doc != doc_id and _similar(compared, head_terms):
                return self.members[i]
        return None

    def start(self, cid: str, doc_id: str, terms: array[int], counts: np.ndarray) -> None:
        """A new story, headed by `cid`."""
        n = len(self.members)
        if n == len(self._sizes):
            self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
            self._sizes = np.concatenate([self._sizes, np.zeros_like(self._sizes)])
        self._counts[n] = counts
        self._sizes[n] = len(terms)
        self._heads.append((doc_id, set(terms)))
        self.members.append([cid])


_EXACT_BLOCK = 16384  # rows of half-precision vectors made single precision at a time
# A search over more than `_EXACT_ROWS` chunks goes to Chroma's index: the whole collection (no date range)
# always, a date range when it is also at least `_WIDE_RANGE` of the collection, by asking for up to
# `_WIDE_RANGE_MOST` nearest chunks of all and keeping those in the range. Up to `_EXACT_ROWS`, a scan.
_EXACT_ROWS = 32768
# The in-memory index is changed in place until the changes since it was read pass this share of it (and
# this many chunks); then it is read again, so the keyword index's term statistics are the collection's.
_CHANGES_REBUILD = 0.1
_CHANGES_REBUILD_MIN = 2000
_WIDE_RANGE = 0.1
_WIDE_RANGE_MOST = 2000
# Vectors are kept in single precision up to this many chunks (200 MB), in half precision past it: making
# half-precision rows single precision costs ten times the dot products (16k chunks: 13 ms against 1.2).
_SINGLE_PRECISION_ROWS = 131072


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero): dot products are then cosines.

    Half precision past `_SINGLE_PRECISION_ROWS` rows. Scales `vectors` in place: at a million chunks a
    second single-precision copy would be 1.5 GB.
    """
    if vectors.size:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms == 0, 1.0, norms)
    return vectors.astype(np.float32 if len(vectors) <= _SINGLE_PRECISION_ROWS else np.float16, copy=False)


def _return_freed_memory() -> None:
    """Give the memory freed by an index build back to the system: glibc keeps it for reuse otherwise.

    Building the keyword index of 100k chunks leaves 400 MB of it resident, for the life of the process.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): its allocator decides
        return
    libc.malloc_trim(0)


class _ReadWriteLock:
    """Many readers at once, or one writer; a waiting writer lets no new reader in (so it is not starved)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writing)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writing)
            self._writing = True
            self._condition.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


class HybridRetriever:
    """Finds passages by meaning and by words, then fuses the two rankings."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        *,
        top_k: int = 10,
        candidates: int = 150,
        rrf_k: int = 60,
        keyword_weight: float = 1.0,
        dense_weight: float = 1.0,
        recency_weight: float = 1.0,
        recency_half_life: float = 30.0,
        window: int = 1,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.top_k = top_k
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.keyword_weight = keyword_weight
        self.dense_weight = dense_weight
        self.recency_weight = recency_weight
        self.recency_half_life = recency_half_life
        self.window = window
        self._version: str | None = None
        self._keywords: KeywordIndex | None = None
        self._chunks: dict[str, _Chunk] = {}
        self._new_terms: dict[str, int] = {}  # numbers of terms the keyword index does not know
        self._windows: dict[str, str] = {}  # the text of a chunk's window, by chunk id (`_window`)
        # Every chunk's id and embedding, the dated ones first in date order (`_days`: their days), then
        # the undated: a date range is a slice of rows, and a small collection or range is searched exactly.
        self._days = np.zeros(0, dtype=np.int64)
        self._ordered: list[str] = []
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._refresh_lock = threading.Lock()
        self._new_terms_lock = threading.Lock()
        self._in_use = _ReadWriteLock()

    # The keyword index mirrors the live collection: rebuilt when the alias moves (a reload), changed in
    # place by the changes committed to the collection in place (`ArticleStore.change`).
    def refresh(self, force: bool = False) -> None:
        """Bring the in-memory index (chunks, vectors, keyword index) up to the live collection.

        Changes made in place since it was read are applied whole, one committed change at a time
        (each article is seen old or new, never half); a new live collection, writes outside the
        journal, or changes past `_CHANGES_REBUILD` of the collection read it all again. The new index is
        built beside the one in use: questions asked meanwhile are answered from the old one (they do
        not wait for the build), and the two are swapped in one step between questions. Only the very
        first build makes questions wait.
        """
        if self._keywords is None or force:
            self._refresh_lock.acquire()
        elif not self._refresh_lock.acquire(blocking=False):
            return  # being rebuilt by another thread: answer from the index in use
        try:
            version = self.store.version()
            if not force and version == self._version:
                return
            if not force and self._catch_up(version):
                return
            self._rebuild(version)
            self._catch_up(self.store.version())  # what was committed while it was read, each change whole
        finally:
            self._refresh_lock.release()

    def _rebuild(self, version: str) -> None:
        """Read the whole live collection (as of `version`) into a new index and swap it in."""
        live, seq, _ = parse_version(version)
        ids, texts, metas = self.store.all_chunks()
        # Not yet committed, or committed after `version`: applied whole afterwards (`_catch_up`), not seen in part.
        hidden = self.store.uncommitted(live)
        for change in self.store.changes(live, seq) or []:
            hidden.update(change.added)
        if hidden:
            keep = [i for i, cid in enumerate(ids) if cid not in hidden]
            ids, texts, metas = [ids[i] for i in keep], [texts[i] for i in keep], [metas[i] for i in keep]
        articles: dict[_Article, _Article] = {}
        chunks: dict[str, _Chunk] = {}
        for cid, text, meta in zip(ids, texts, metas):
            article = _Article.of(meta)
            chunks[cid] = _Chunk(text, articles.setdefault(article, article))
        del metas  # a dict a chunk: at a million chunks, gigabytes
        dated = [(c.article.published_day, cid) for cid, c in chunks.items() if c.article.published_day is not None]
        dated.sort()
        days = np.array([day for day, _ in dated], dtype=np.int64)
        ordered = [cid for _, cid in dated] + [cid for cid, c in chunks.items() if c.article.published_day is None]
        del dated
        vectors = _unit_rows(self.store.vectors(ordered))
        new_terms: dict[str, int] = {}
        keywords = self._index(ids, chunks, new_terms)
        with self._in_use.writing():
            self._days, self._ordered, self._vectors = days, ordered, vectors
            self._keywords, self._new_terms, self._chunks = keywords, new_terms, chunks
            self._windows = {}
            self._version = version
        del ids, texts, chunks
        _return_freed_memory()
        logger.info("keyword index: %d chunks (%s)", len(self._chunks), version)

    def _catch_up(self, version: str) -> bool:
        """Apply the changes committed in place since the index was read, whole; False when it must be read again."""
        if self._version is None or self._keywords is None:
            return False
        live, seq, writes = parse_version(version)
        mine, my_seq, my_writes = parse_version(self._version)
        if live != mine or writes != my_writes or seq < my_seq:
            return False
        if seq == my_seq:
            return True
        changes = self.store.changes(live, my_seq)
        if changes is None:
            return False
        added: dict[str, None] = {}  # what the changes leave added, in order, and what they leave removed
        removed: set[str] = set()
        for change in changes:
            for cid in change.removed:
                if added.pop(cid, 0) is not None:
                    removed.add(cid)
            for cid in change.added:
                added[cid] = None
                if cid in self._chunks:  # written again (a path changed): replaced
                    removed.add(cid)
        removed &= self._chunks.keys()
        if self._keywords.changes + len(added) + len(removed) > max(_CHANGES_REBUILD_MIN, _CHANGES_REBUILD * len(self._chunks)):
            return False  # enough changed that the keyword index's statistics are worth a full build
        new_ids = list(added)
        found = self.store.chunks(new_ids)
        if len(found) != len(new_ids):  # deleted since by something outside the journal: read it all
            return False
        vectors = _unit_rows(self.store.vectors(new_ids))
        chunks = {cid: chunk for cid, chunk in self._chunks.items() if cid not in removed}
        fresh: list[tuple[str, list[str]]] = []
        for cid, (text, meta) in found.items():
            chunk = _Chunk(text, _Article.of(meta))
            chunks[cid] = chunk
            fresh.append((cid, tokenize(indexed_text(chunk.article.title, chunk.article.published, text))))
        gone = {
            cid: tokenize(indexed_text(c.article.title, c.article.published, c.text))
            for cid, c in self._chunks.items()
            if cid in removed
        }
        keywords = self._keywords.changed(gone, fresh)
        days, ordered, matrix = self._rows_changed(removed, new_ids, vectors, chunks)
        with self._in_use.writing():
            self._days, self._ordered, self._vectors = days, ordered, matrix
            self._keywords, self._chunks = keywords, chunks
            self._windows = {}
            self._version = version
        logger.info("index: %d chunks added, %d removed in place (%s)", len(found), len(removed), version)
        return True

    def _rows_changed(
        self, removed: set[str], added: list[str], vectors: np.ndarray, chunks: dict[str, _Chunk]
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """The date-ordered rows (days, ids, vectors) without `removed` and with `added` in their places.

        Two copies of the vectors at most (the rows kept, then the rows inserted), never one per chunk.
        """
        keep = np.array([cid not in removed for cid in self._ordered], dtype=bool)
        kept = [cid for cid, kept in zip(self._ordered, keep, strict=True) if kept]
        kept_days = self._days[keep[: len(self._days)]]
        new = sorted(
            ((chunks[cid].article.published_day, n) for n, cid in enumerate(added)),
            key=lambda item: (item[0] is None, item[0] or 0, item[1]),
        )
        new_days = np.array([day for day, _ in new if day is not None], dtype=np.int64)
        dated_at = np.searchsorted(kept_days, new_days, side="right")
        positions = np.concatenate([dated_at, np.full(len(new) - len(new_days), len(kept))]).astype(np.int64)
        order = [n for _, n in new]
        days = np.insert(kept_days, dated_at, new_days)
        ordered: list[str] = []
        start = 0
        for position, n in zip(positions.tolist(), order, strict=True):
            ordered += kept[start:position]
            ordered.append(added[n])
            start = position
        ordered += kept[start:]
        matrix = self._vectors
        if matrix.shape[0] == len(self._ordered) and vectors.size:
            dtype = matrix.dtype if matrix.size else np.dtype(np.float32)
            out = np.empty((len(ordered), vectors.shape[1]), dtype=dtype)
            # Rows are copied a block at a time into the one new matrix: the old one and the new are the
            # only two whole copies in memory (at 100k chunks, 154 MB each).
            source = np.flatnonzero(keep)
            destination = np.arange(len(source)) + np.searchsorted(positions, np.arange(len(source)), side="right")
            for start in range(0, len(source), _EXACT_BLOCK):
                block = slice(start, start + _EXACT_BLOCK)
                out[destination[block]] = matrix[source[block]]
            out[positions + np.arange(len(positions))] = vectors[order].astype(dtype)
            matrix = out
        else:  # no vectors kept in memory (search asks Chroma): none to add
            matrix = np.zeros((0, 0), dtype=np.float32)
        return days, ordered, matrix

    @property
    def current(self) -> bool:
        """Whether the keyword index in use is the live collection's (no rebuild is due)."""
        return self._keywords is not None and self._version == self.store.version()

    def _index(self, ids: list[str], chunks: dict[str, _Chunk], new_terms: dict[str, int]) -> KeywordIndex:
        """The keyword index of the chunks, noting in each chunk the terms of its text."""
        corpus = [tokenize(indexed_text(c.article.title, c.article.published, c.text)) for c in chunks.values()]
        keywords = KeywordIndex.of_terms(ids, corpus)
        # A chunk is indexed with its article's title line first: the terms after the title's are its text's.
        heads: dict[_Article, list[str]] = {}
        for chunk, terms in zip(chunks.values(), corpus):
            head = heads.get(chunk.article)
            if head is None:
                head = heads[chunk.article] = tokenize(indexed_text(chunk.article.title, chunk.article.published, ""))
            text_terms = terms[len(head) :] if terms[: len(head)] == head else tokenize(chunk.text)
            numbers = keywords.term_ids(set(text_terms))
            if None in numbers:  # only when the text did not tokenize as it did after its title
                numbers = [self._term_id(term, keywords, new_terms) for term in set(text_terms)]
            chunk.terms = array("I", cast(list[int], numbers))
        return keywords

    @property
    def keywords(self) -> KeywordIndex:
        if self._keywords is None:
            self.refresh()
        assert self._keywords is not None
        return self._keywords

    def term_weight(self, term: str) -> float:
        """How much a (stemmed) query term tells: its inverse document frequency in the live collection."""
        return self.keywords.idf(term)

    def retrieve(self, query: Query, top_k: int | None = None) -> list[Passage]:
        self.refresh()
        with self._in_use.reading():  # one index from start to end, though a rebuilt one is swapped in meanwhile
            return self._retrieve(query, top_k or self.top_k)

    def _retrieve(self, query: Query, k: int) -> list[Passage]:
        vector = self.embedder.embed([query.text])[0]
        if query.arrived_after is None:
            dense = self.nearest(vector, query.since, query.until)
        else:  # what arrived since a time: few chunks of many, named to Chroma (the date range is applied below)
            arrived = self._arrived(query.arrived_after)
            dense = self.store.nearest_ids(vector, self.candidates, ids=arrived) if arrived else []
        # Chroma's index may name chunks of a change not committed yet, or old ones being deleted: only the
        # chunks of the state read (`refresh`) are shown, so each article is seen whole.
        dense_ids = [cid for cid, _ in dense if cid in self._chunks and self._in_range(cid, query)]
        # A range of arrival is narrow: the best keyword matches in it are looked for among all, not the best 150.
        keywords = self.keywords
        asked = self.candidates if query.arrived_after is None else keywords.size
        keyword_ids = [cid for cid, _ in keywords.search(query.text, asked) if self._in_range(cid, query)][: self.candidates]
        fused: dict[str, float] = {}
        for weight, ranking in ((self.dense_weight, dense_ids), (self.keyword_weight, keyword_ids)):
            for rank, cid in enumerate(ranking):
                fused[cid] = fused.get(cid, 0.0) + weight / (self.rrf_k + rank + 1)
        if query.as_of is not None and self.recency_weight:
            for cid in fused:
                fused[cid] *= 1.0 + self.recency_weight * query.recency(self._published(cid), self.recency_half_life)
        ranked = sorted(fused, key=fused.__getitem__, reverse=True)
        return [
            self._passage(rank, group[0], fused[group[0]], group[1:])
            for rank, group in enumerate(self._group_stories(ranked, k), start=1)
        ]

    def nearest(self, vector: np.ndarray, since: date | None = None, until: date | None = None) -> list[tuple[str, float]]:
        """The dense candidates: an exact search of the collection or date range when small, else Chroma's index.

        Search keeps every chunk's vector (the dated chunks in date order), so a date range is a slice of
        one matrix. Up to `_EXACT_ROWS` chunks, the rows are scanned: exact, and faster than Chroma's
        approximate index (16,718 chunks: 1 ms against 8). Chroma applies a date filter slowly at size
        (a 30-day range of 300k chunks took 96 ms, where no filter took 7 ms), so a wide range of a large
        collection asks Chroma's index for more results, without a filter, and keeps those in the range;
        if too few are, the range is scanned. A scan sees the chunks of the last build of the index, as
        BM25 does: a write through this process's store rebuilds it at the next question, another
        process's within a second (`ArticleStore.version`).
        """
        if self._vectors.shape != (len(self._ordered), len(vector)):  # the store keeps no vectors to read
            if since is None and until is None:
                return self.store.nearest_ids(vector, self.candidates)
            start, end = self._date_rows(since, until)
            return self.store.nearest_ids(vector, self.candidates, ids=self._ordered[start:end]) if start < end else []
        if since is None and until is None:
            if len(self._ordered) > _EXACT_ROWS:
                return self.store.nearest_ids(vector, self.candidates)
            return self._scan(vector, 0, len(self._ordered))
        start, end = self._date_rows(since, until)
        if start >= end:
            return []
        share = (end - start) / max(len(self._ordered), 1)
        if end - start > _EXACT_ROWS and share >= _WIDE_RANGE:
            # A wide range: most of the nearest chunks of all are in it, and Chroma's index finds them
            # faster than a scan of the range would.
            low, high = int(self._days[start]), int(self._days[end - 1])
            asked = min(int(self.candidates / share * 2), _WIDE_RANGE_MOST)
            inside = [
                (cid, score)
                for cid, score in self.store.nearest_ids(vector, asked)
                if cid in self._chunks and low <= (self._chunks[cid].article.published_day or -1) <= high
            ]
            if len(inside) >= self.candidates:
                return inside[: self.candidates]
        return self._scan(vector, start, end)

    def _date_rows(self, since: date | None, until: date | None) -> tuple[int, int]:
        """The rows of the chunks published from `since` to `until` (open ends: the first or last dated chunk)."""
        start = 0 if since is None else int(np.searchsorted(self._days, day_number(since), side="left"))
        end = len(self._days) if until is None else int(np.searchsorted(self._days, day_number(until), side="right"))
        return start, end

    def _scan(self, vector: np.ndarray, start: int, end: int) -> list[tuple[str, float]]:
        """The `candidates` rows of `start` to `end` most similar to `vector`, exactly."""
        query = np.asarray(vector, dtype=np.float32)
        if self._vectors.dtype == np.float32:
            scores = self._vectors[start:end] @ query
        else:
            scores = np.concatenate(
                [
                    self._vectors[block : min(block + _EXACT_BLOCK, end)].astype(np.float32) @ query
                    for block in range(start, end, _EXACT_BLOCK)
                ]
            )
        n = min(self.candidates, len(scores))
        if n == 0:
            return []
        best = np.argpartition(-scores, n - 1)[:n]
        best = best[np.lexsort((best, -scores[best]))]  # by score, then row order: the same every time
        return [(self._ordered[start + int(i)], float(scores[i])) for i in best]

    def forget_windows(self) -> None:
        """Drop the remembered windows (a benchmark's questions then find their passages anew)."""
        self._windows = {}

    def _published(self, cid: str) -> date | None:
        day = self._chunks[cid].article.published_day
        return None if day is None else date.fromordinal(day)

    def _group_stories(self, ranked: list[str], k: int) -> list[list[str]]:
        """The first `k` stories, each article's best passage first, near-duplicates folded in.

        Wire copy runs in many outlets; without this the top results can be five copies of one story.
        An article's best passage (with its neighbours as context) stands for it, so the first slots go
        to distinct articles; an article's further passages fill the slots that are left.
        """
        stories = _Stories(k)
        covered: set[str] = set()  # chunks already shown inside a passage's window
        placed: set[str] = set()
        later: list[str] = []
        for cid in ranked:
            doc_id = self._chunks[cid].article.doc_id
            if doc_id in placed:
                later.append(cid)
                continue
            if self._place(cid, stories, covered, join_only=len(stories) >= k):
                placed.add(doc_id)
        for cid in later:
            if len(stories) >= k:
                break
            if cid not in covered:
                self._place(cid, stories, covered)
        return stories.members[:k]

    def _place(self, cid: str, stories: _Stories, covered: set[str], *, join_only: bool = False) -> bool:
        """Fold `cid` into the story it repeats from another article, or start a new one (unless `join_only`)."""
        doc_id = self._chunks[cid].article.doc_id
        terms = self._term_array(cid)
        counts = _bucket_counts(terms)
        story = stories.find(doc_id, terms, counts)
        if story is not None:
            story.append(cid)
            return True
        if join_only:
            return False
        stories.start(cid, doc_id, terms, counts)
        covered.update(self._neighbours(cid))
        return True

    def _neighbours(self, cid: str) -> list[str]:
        """The chunk and up to `window` chunks each side of it in its article, in order."""
        doc_id, _, index = cid.rpartition(":")
        around = (f"{doc_id}:{position:04d}" for position in range(int(index) - self.window, int(index) + self.window + 1))
        return [other for other in around if other in self._chunks]

    def _window(self, cid: str) -> str:
        """The chunk with its neighbours, overlapping sentences once ("small to big" retrieval).

        Remembered for the `_WINDOWS_KEPT` chunks shown last (a question's twenty windows took 2 ms):
        the questions of a chat come back to the same stories.
        """
        windows = self._windows
        text = windows.get(cid)
        if text is None:
            text = self._make_window(cid)
            if len(windows) >= _WINDOWS_KEPT:
                windows.clear()
            windows[cid] = text
        return text

    def _make_window(self, cid: str) -> str:
        sentences: list[str] = []
        seen: set[str] = set()
        for neighbour_id in self._neighbours(cid):
            for paragraph in self._chunks[neighbour_id].text.split("\n\n"):
                for sentence in split_sentences(paragraph):
                    if sentence not in seen:
                        seen.add(sentence)
                        sentences.append(sentence)
        # One sentence a line: web text has headlines and list items without a full stop.
        return "\n".join(sentences) or self._chunks[cid].text

    def _term_array(self, cid: str) -> array[int]:
        """The numbers of the chunk's distinct terms."""
        chunk = self._chunks[cid]
        if chunk.terms is None:  # written since the keyword index was built
            chunk.terms = array("I", {self._term_id(term, self.keywords, self._new_terms) for term in tokenize(chunk.text)})
        return chunk.terms

    def _term_id(self, term: str, keywords: KeywordIndex, new_terms: dict[str, int]) -> int:
        """The term's number in `keywords`, or one of its own past them (kept in `new_terms`)."""
        known = keywords.term_id(term)
        if known is not None:
            return known
        with self._new_terms_lock:
            return new_terms.setdefault(term, 2**31 + len(new_terms))

    def _arrived(self, after: int) -> list[str]:
        """The chunks whose articles were ingested at or after `after` (seconds since 1970)."""
        return [cid for cid, chunk in self._chunks.items() if (chunk.article.ingested_at or -1) >= after]

    def _in_range(self, cid: str, query: Query) -> bool:
        chunk = self._chunks.get(cid)
        day = chunk.article.published_day if chunk else None
        if query.arrived_after is not None and (chunk is None or (chunk.article.ingested_at or -1) < query.arrived_after):
            return False
        if query.since is not None and (day is None or day < day_number(query.since)):
            return False
        if query.until is not None and (day is None or day > day_number(query.until)):
            return False
        return True

    def _passage(self, rank: int, cid: str, score: float, duplicates: list[str] | None = None) -> Passage:
        chunk = self._chunks[cid]
        article = chunk.article
        return Passage(
            rank=rank,
            doc_id=article.doc_id,
            chunk_id=cid,
            title=article.title,
            text=self._window(cid) if self.window else chunk.text,
            score=score,
            source=article.source,
            url=article.url,
            published=article.published,
            path=article.path,
            duplicates=tuple(self._passage(rank, other, score) for other in duplicates or ()),
            window=tuple(self._neighbours(cid)) if self.window else (cid,),
        )
