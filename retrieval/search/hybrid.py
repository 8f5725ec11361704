"""Hybrid retrieval: dense (Chroma) and keyword (BM25) results fused by reciprocal rank."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

from retrieval.index.embedding import Embedder
from retrieval.index.keywords import KeywordIndex, tokenize
from retrieval.index.store import ChunkStore, day_number
from retrieval.ingest.chunking import indexed_text
from retrieval.ingest.text import split_sentences
from retrieval.passages import Passage, Query

logger = logging.getLogger(__name__)


@dataclass
class _Chunk:
    text: str
    meta: dict[str, Any]
    terms: set[str] | None = None


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


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
        self._refresh_lock = threading.Lock()

    # The keyword index mirrors the live collection; it is rebuilt when the alias moves.
    def refresh(self, force: bool = False) -> None:
        """Rebuild the keyword index if the live collection changed since it was built."""
        with self._refresh_lock:
            version = f"{self.store.live_name}:{self.store.count()}"
            if not force and version == self._version:
                return
            ids, texts, metas = self.store.all_chunks()
            self._chunks = {cid: _Chunk(text, meta) for cid, text, meta in zip(ids, texts, metas)}
            searchable = [indexed_text(str(m.get("title", "")), m.get("published"), t) for t, m in zip(texts, metas)]
            self._keywords = KeywordIndex(ids, searchable)
            self._version = version
            logger.info("keyword index: %d chunks (%s)", len(ids), version)

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
        k = top_k or self.top_k
        vector = self.embedder.embed([query.text])[0]
        dense = self.store.query(vector, self.candidates, where=_date_filter(query.since, query.until))
        for cid, text, meta, _ in dense:
            self._chunks.setdefault(cid, _Chunk(text, meta))
        dense_ids = [cid for cid, *_ in dense if self._in_range(cid, query)]
        keyword_ids = [cid for cid, _ in self.keywords.search(query.text, self.candidates) if self._in_range(cid, query)]
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

    def _published(self, cid: str) -> date | None:
        day = self._chunks[cid].meta.get("published_day")
        return None if day is None else date.fromordinal(int(day))

    def _group_stories(self, ranked: list[str], k: int) -> list[list[str]]:
        """The first `k` stories, each article's best passage first, near-duplicates folded in.

        Wire copy runs in many outlets; without this the top results can be five copies of one story.
        An article's best passage (with its neighbours as context) stands for it, so the first slots go
        to distinct articles; an article's further passages fill the slots that are left.
        """
        groups: list[tuple[set[str], list[str]]] = []
        covered: set[str] = set()  # chunks already shown inside a passage's window
        placed: set[str] = set()
        later: list[str] = []
        for cid in ranked:
            doc_id = str(self._chunks[cid].meta.get("doc_id"))
            if doc_id in placed:
                later.append(cid)
                continue
            if len(groups) >= k and self._story(cid, groups) is None:
                continue
            placed.add(doc_id)
            self._place(cid, groups, covered)
        for cid in later:
            if len(groups) >= k:
                break
            if cid not in covered:
                self._place(cid, groups, covered)
        return [members for _, members in groups[:k]]

    def _story(self, cid: str, groups: list[tuple[set[str], list[str]]]) -> list[str] | None:
        """The story (group members) that `cid` repeats from another article, if any."""
        doc_id = self._chunks[cid].meta.get("doc_id")
        terms = self._terms(cid)
        for head_terms, members in groups:
            if self._chunks[members[0]].meta.get("doc_id") != doc_id and _jaccard(terms, head_terms) >= 0.5:
                return members
        return None

    def _place(self, cid: str, groups: list[tuple[set[str], list[str]]], covered: set[str]) -> None:
        """Fold `cid` into the story it repeats, or start a new one."""
        story = self._story(cid, groups)
        if story is not None:
            story.append(cid)
            return
        groups.append((self._terms(cid), [cid]))
        covered.update(self._neighbours(cid))

    def _neighbours(self, cid: str) -> list[str]:
        """The chunk and up to `window` chunks each side of it in its article, in order."""
        doc_id, _, index = cid.rpartition(":")
        around = (f"{doc_id}:{position:04d}" for position in range(int(index) - self.window, int(index) + self.window + 1))
        return [other for other in around if other in self._chunks]

    def _window(self, cid: str) -> str:
        """The chunk with its neighbours, overlapping sentences once ("small to big" retrieval)."""
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

    def _terms(self, cid: str) -> set[str]:
        chunk = self._chunks[cid]
        if chunk.terms is None:
            chunk.terms = set(tokenize(chunk.text))
        return chunk.terms

    def _in_range(self, cid: str, query: Query) -> bool:
        meta = self._chunks[cid].meta if cid in self._chunks else {}
        day = meta.get("published_day")
        if query.since is not None and (day is None or day < day_number(query.since)):
            return False
        if query.until is not None and (day is None or day > day_number(query.until)):
            return False
        return True

    def _passage(self, rank: int, cid: str, score: float, duplicates: list[str] | None = None) -> Passage:
        chunk = self._chunks[cid]
        meta = chunk.meta
        return Passage(
            rank=rank,
            doc_id=str(meta.get("doc_id", "")),
            chunk_id=cid,
            title=str(meta.get("title", "")),
            text=self._window(cid) if self.window else chunk.text,
            score=score,
            source=meta.get("source"),
            url=meta.get("url"),
            published=meta.get("published"),
            path=meta.get("path"),
            duplicates=tuple(self._passage(rank, other, score) for other in duplicates or ()),
        )


def _date_filter(since: date | None, until: date | None) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if since is not None:
        clauses.append({"published_day": {"$gte": day_number(since)}})
    if until is not None:
        clauses.append({"published_day": {"$lte": day_number(until)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
