"""Hybrid retrieval: dense (Chroma) and keyword (BM25) results fused by reciprocal rank."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

from retrieval.answers import Passage, Query
from retrieval.chunking import indexed_text
from retrieval.embedding import Embedder
from retrieval.keywords import KeywordIndex, tokenize
from retrieval.store import ArticleStore, day_number

logger = logging.getLogger(__name__)


@dataclass
class _Chunk:
    text: str
    meta: dict[str, Any]
    terms: set[str] | None = None


# "This week" in a question means the week before the as-of date: recency then counts for more.
_THIS_WEEK = re.compile(r"\b(this|last|past) week\b", re.I)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class HybridRetriever:
    """Finds passages by meaning and by words, then fuses the two rankings."""

    def __init__(
        self,
        store: ArticleStore,
        embedder: Embedder,
        *,
        top_k: int = 10,
        candidates: int = 60,
        rrf_k: int = 60,
        keyword_weight: float = 1.0,
        dense_weight: float = 1.0,
        recency_weight: float = 0.5,
        recency_half_life: float = 30.0,
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
            half_life = 7.0 if _THIS_WEEK.search(query.text) else self.recency_half_life
            for cid in fused:
                fused[cid] *= 1.0 + self.recency_weight * self._closeness(cid, query.as_of, half_life)
        ranked = sorted(fused, key=fused.__getitem__, reverse=True)
        return [
            self._passage(rank, group[0], fused[group[0]], group[1:])
            for rank, group in enumerate(self._group_stories(ranked, k), start=1)
        ]

    def _closeness(self, cid: str, as_of: date, half_life: float) -> float:
        """1.0 for an article published on the as-of date, halving every `half_life` days before it."""
        day = self._chunks[cid].meta.get("published_day")
        if day is None:
            return 0.0
        return float(0.5 ** (max(day_number(as_of) - int(day), 0) / half_life))

    def _group_stories(self, ranked: list[str], k: int) -> list[list[str]]:
        """The first `k` stories: a passage that repeats a better one from another article joins its group.

        Wire copy runs in many outlets; without this the top results can be five copies of one story.
        """
        groups: list[tuple[set[str], list[str]]] = []
        for cid in ranked:
            terms = self._terms(cid)
            doc_id = self._chunks[cid].meta.get("doc_id")
            for head_terms, members in groups:
                if self._chunks[members[0]].meta.get("doc_id") != doc_id and _jaccard(terms, head_terms) >= 0.5:
                    members.append(cid)
                    break
            else:
                if len(groups) < k:
                    groups.append((terms, [cid]))
        return [members for _, members in groups]

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
        # An "as of" date hides what was published after it; undated articles stay in.
        return not (query.as_of is not None and day is not None and day > day_number(query.as_of))

    def _passage(self, rank: int, cid: str, score: float, duplicates: list[str] | None = None) -> Passage:
        chunk = self._chunks[cid]
        meta = chunk.meta
        return Passage(
            rank=rank,
            doc_id=str(meta.get("doc_id", "")),
            chunk_id=cid,
            title=str(meta.get("title", "")),
            text=chunk.text,
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
