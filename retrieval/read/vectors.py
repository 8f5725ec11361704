"""Sentence vectors of the reader, computed once at ingest and kept with each chunk.

A sentence's reader vector does not depend on the question, so ingest encodes every sentence
(and the headline) of a chunk and stores them, packed, in the chunk's metadata under
`SENTENCE_VECTORS`, with the encoder's version under `SENTENCE_VECTORS_MODEL`. At answer time
the reader looks them up by chunk; a chunk without them (an index built before the reader, or by
another reader version) has its sentences encoded on the spot.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from retrieval.index.encoder import OnnxEncoder
from retrieval.index.store import SENTENCE_VECTORS, SENTENCE_VECTORS_MODEL, ChunkStore
from retrieval.ingest.text import split_sentences

logger = logging.getLogger(__name__)


def reader_text(sentence: str, title: str) -> str:
    """What the encoder reads for a candidate: the sentence, then its article's headline for context."""
    return sentence if sentence == title else f"{sentence} | {title}"


def chunk_sentences(title: str, text: str) -> list[str]:
    """The sentences a chunk's stored vectors are for, in order: its headline first."""
    return [title, *split_sentences(text)]


def pack(vectors: np.ndarray) -> str:
    """Unit vectors as int8 with one float32 scale a row, base64: 4 + dimension bytes a sentence."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scale = np.abs(vectors).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    quantised = np.round(vectors / scale).astype(np.int8)
    rows = np.concatenate([scale.astype(np.float32).view(np.uint8), quantised.view(np.uint8)], axis=1)
    return base64.b64encode(rows.tobytes()).decode("ascii")


def unpack(text: str, dimension: int) -> np.ndarray:
    """The vectors `pack` stored, renormalised to unit length."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(-1, 4 + dimension)
    scale = raw[:, :4].copy().view(np.float32)
    vectors = raw[:, 4:].copy().view(np.int8).astype(np.float32) * scale
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class SentenceAnnotator:
    """At ingest: the reader vectors of every sentence of an article's chunks, as chunk metadata.

    A sentence that two chunks share (the overlap) is encoded once.
    """

    def __init__(self, encoder: OnnxEncoder, version: str, *, workers: int | None = None) -> None:
        self.encoder = encoder
        self.version = version
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def annotate(self, title: str, texts: Sequence[str]) -> list[dict[str, str]]:
        """One metadata dict per chunk text."""
        per_chunk = [chunk_sentences(title, text) for text in texts]
        distinct = list(dict.fromkeys(s for sentences in per_chunk for s in sentences))
        vectors = self.encoder.embed([reader_text(s, title) for s in distinct])
        row = {s: i for i, s in enumerate(distinct)}
        return [
            {SENTENCE_VECTORS: pack(vectors[[row[s] for s in sentences]]), SENTENCE_VECTORS_MODEL: self.version}
            for sentences in per_chunk
        ]

    def annotate_many(self, articles: Sequence[tuple[str, Sequence[str]]]) -> list[list[dict[str, str]]]:
        """`annotate` for many articles (title, chunk texts), several at once on the machine's cores.

        Each article is encoded in a call of its own: int8 activations are quantised per batch, so
        mixing articles in one batch would make an article's vectors depend on what was ingested with it.
        """
        if len(articles) < 2 or self.workers < 2:
            return [self.annotate(title, texts) for title, texts in articles]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="annotate")
        return list(self._pool.map(lambda article: self.annotate(*article), articles))


class SentenceVectors:
    """At answer time: the reader vector of each sentence of a chunk, from the store, cached by chunk."""

    def __init__(self, store: ChunkStore, encoder: OnnxEncoder, version: str, cache_chunks: int = 4096) -> None:
        self.store = store
        self.encoder = encoder
        self.version = version
        self.cache_chunks = cache_chunks
        self._cache: OrderedDict[tuple[str | None, str], dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, chunk_ids: Sequence[str], title_of: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
        """For each chunk id, its sentences (headline included) mapped to their vectors."""
        live = self.store.live_name
        found: dict[str, dict[str, np.ndarray]] = {}
        with self._lock:
            for cid in chunk_ids:
                hit = self._cache.get((live, cid))
                if hit is not None:
                    self._cache.move_to_end((live, cid))
                    found[cid] = hit
        missing = [cid for cid in dict.fromkeys(chunk_ids) if cid not in found]
        if missing:
            for cid, (text, meta) in self.store.chunks(missing).items():
                title = str(meta.get("title") or title_of.get(cid, ""))
                sentences = chunk_sentences(title, text)
                packed = meta.get(SENTENCE_VECTORS)
                vectors = None
                if isinstance(packed, str) and meta.get(SENTENCE_VECTORS_MODEL) == self.version:
                    vectors = unpack(packed, self.encoder.dimension)
                    if len(vectors) != len(sentences):
                        vectors = None
                if vectors is None:
                    logger.debug("chunk %s has no reader vectors of this reader; encoding its sentences", cid)
                    vectors = self.encoder.embed([reader_text(s, title) for s in sentences])
                found[cid] = dict(zip(sentences, vectors))
                with self._lock:
                    self._cache[(live, cid)] = found[cid]
                    while len(self._cache) > self.cache_chunks:
                        self._cache.popitem(last=False)
        return found
