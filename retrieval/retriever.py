"""Hybrid retrieval: dense (Chroma) and keyword (BM25) results fused by reciprocal rank."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

from retrieval.answers import Passage, Query
from retrieval.chunking import indexed_text
from retrieval.embedding import Embedder
from retrieval.keywords import KeywordIndex
from retrieval.store import ArticleStore, day_number

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Chunk:
    text: str
    meta: dict[str, Any]


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
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.top_k = top_k
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.keyword_weight = keyword_weight
        self.dense_weight = dense_weight
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
            self._keywords = KeywordIndex(ids, [indexed_text(str(m.get("title", "")), m.get("published"), t) for t, m in zip(texts, metas)])
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
        ranked = sorted(fused, key=fused.__getitem__, reverse=True)[:k]
        return [self._passage(rank, cid, fused[cid]) for rank, cid in enumerate(ranked, start=1)]

    def _in_range(self, cid: str, query: Query) -> bool:
        meta = self._chunks[cid].meta if cid in self._chunks else {}
        day = meta.get("published_day")
        if query.since is not None and (day is None or day < day_number(query.since)):
            return False
        if query.until is not None and (day is None or day > day_number(query.until)):
            return False
        # An "as of" date hides what was published after it; undated articles stay in.
        return not (query.as_of is not None and day is not None and day > day_number(query.as_of))

    def _passage(self, rank: int, cid: str, score: float) -> Passage:
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
