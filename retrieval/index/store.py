"""The index: article chunks in Chroma, behind an alias that switches to a rebuilt collection in one step."""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar

import httpx
import numpy as np

from config import Settings
from retrieval.ingest.articles import Article
from retrieval.ingest.chunking import Chunk

if TYPE_CHECKING:  # chromadb is imported when a client is made, not when this module is
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import GetResult, Include, Where

logger = logging.getLogger(__name__)

# Rows of `nearest`: chunk id, text, metadata, cosine similarity.
Hit = tuple[str, str, dict[str, Any], float]
_DELETE_BATCH = 500

# Chunk metadata that an earlier reader wrote at ingest (packed sentence vectors, tens of KB a chunk).
# Nothing reads it now; the bulk reads below leave it out of what search keeps in memory, so an index
# built then costs no more memory until it is rebuilt.
LEGACY_SENTENCE_VECTORS = "sentence_vectors"
# Chunk metadata naming the embedding model (and runtime) that made the chunk's vector.
EMBEDDER = "embedder"
# Chunk metadata: when its article (this content of it) was first ingested, in whole seconds since 1970
# (UTC). Kept when the article is only re-embedded; new when its content changes. Digests read it.
INGESTED = "ingested_at"


# The journal of in-place changes to the live collection (`ArticleStore.change`): a change is written as
# pending, its new chunks are upserted, it is committed (readers then see it whole), its old chunks are
# deleted and it is done. A change found pending is rolled back, one found committed rolled forward.
PENDING, COMMITTED, DONE = "pending", "committed", "done"
_CHANGES_KEPT = 1000  # done changes kept for readers that catch up by applying them (more: a full read)


@dataclass(frozen=True)
class Change:
    """One in-place change of the live collection: the chunks it adds and those it removes, by id."""

    seq: int
    live: str
    added: list[str]
    removed: list[str]
    state: str


class ChunkStore(Protocol):
    """What search reads from the index (`ArticleStore` is the Chroma one)."""

    @property
    def live_name(self) -> str | None:
        """The name of the collection being answered from: it changes when a rebuilt one goes live."""
        ...

    def count(self) -> int:
        """How many chunks the live collection holds."""
        ...

    def version(self) -> str:
        """A value that changes when the live collection does (search rebuilds its keyword index then)."""
        ...

    def all_chunks(self) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """Ids, texts and metadata of every live chunk (for the keyword index)."""
        ...

    def nearest_ids(self, embedding: np.ndarray, n: int, ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The `n` nearest live chunks (among `ids`, when given) as (id, cosine similarity), without text or metadata."""
        ...

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored embeddings of the live chunks `ids`, one row each in that order (zeros for a missing one)."""
        ...

    def chunks(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Text and full metadata of the live chunks `ids` (those that exist)."""
        ...

    def changes(self, live: str, after: int) -> list[Change] | None:
        """The committed in-place changes of collection `live` after number `after`, in order (None: not all are kept)."""
        ...

    def uncommitted(self, live: str) -> set[str]:
        """Chunk ids in `live` that its committed state does not hold (a change's new chunks before it is
        committed, its old ones after)."""
        ...


class StoreError(RuntimeError):
    """The index cannot be opened or changed."""


class StoreUnavailable(StoreError):
    """The Chroma server cannot be reached right now (restarting, network); asking again later may work."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _server_call(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn a lost connection to the Chroma server (chromadb lets httpx's errors through) into StoreUnavailable."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the Chroma server cannot be reached ({type(exc).__name__}: {exc})") from exc

    return wrapper


@dataclass(frozen=True)
class StoredArticle:
    """What the index remembers of one article (from its first chunk's metadata)."""

    doc_id: str
    title: str
    path: str
    content_hash: str
    chunks: int
    source: str | None = None
    url: str | None = None
    published: str | None = None
    # The version of the embedder that made its chunks' vectors (None: an index from before it was kept).
    embedder: str | None = None
    # When this content of the article was ingested (`INGESTED`; None: an index from before it was kept).
    ingested_at: int | None = None


def make_client(settings: Settings) -> ClientAPI:
    """An embedded Chroma on disk, or a Chroma server, by settings alone; telemetry off."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_mode == "http":
        try:
            return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
        except Exception as exc:  # chromadb raises bare ValueError/ConnectionError variants
            raise StoreError(
                f"cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port} "
                f"(settings chroma_host, chroma_port): {exc}"
            ) from exc
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


def chunk_metadata(article: Article, chunk: Chunk) -> dict[str, str | int]:
    """Chroma metadata of a chunk: its article's fields, with no None values (Chroma refuses them)."""
    meta: dict[str, str | int] = {
        "doc_id": article.doc_id,
        "chunk_index": chunk.index,
        "title": article.title,
        "path": article.path,
        "content_hash": article.content_hash,
    }
    if article.source:
        meta["source"] = article.source
    if article.url:
        meta["url"] = article.url
    if article.published:
        meta["published"] = article.published.isoformat()
        meta["published_day"] = article.published.toordinal()
    return meta


class ArticleStore:
    """Chunks, their embeddings and metadata in the live Chroma collection named by an alias.

    The alias lives in a small registry collection's metadata, so it is shared by every process
    that uses the same Chroma (embedded or server). `stage()` builds a new collection beside the
    live one and `publish()` switches the alias to it in one write.
    """

    def __init__(
        self,
        client: ClientAPI,
        name: str,
        lock_path: Path | None = None,
        lock: Callable[[str], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._client = client
        self.name = name
        # Writers of one embedded Chroma (`newsbot ingest` beside `newsbot serve`) take turns on this file;
        # replicas sharing a Chroma server, on `lock` (a lock in their shared database, by name).
        self._lock_path = lock_path
        self._lock = lock
        self._thread_lock = threading.RLock()
        self._collections: dict[str, Collection] = {}  # by name; a name is never reused (`_new_name`)
        self._writes = 0  # writes to the live collection outside the journal, through this store (`version`)
        self._registry = client.get_or_create_collection(
            f"{name}-registry", embedding_function=None, metadata={"kind": "newsbot-registry"}
        )
        self._journal = client.get_or_create_collection(
            f"{name}-journal", embedding_function=None, metadata={"kind": "newsbot-journal"}
        )
        if not self.live_name:
            self._set_live(self._create(self._new_name()).name)

    @classmethod
    def from_settings(cls, settings: Settings, lock: Callable[[str], AbstractContextManager[None]] | None = None) -> ArticleStore:
        lock_path = settings.chroma_path / f"{settings.collection}.lock" if settings.chroma_mode != "http" else None
        return cls(make_client(settings), settings.collection, lock_path, lock)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One writer at a time of the journal and the alias: threads of this process, and processes sharing
        the embedded Chroma's folder (a lock file), or replicas sharing a Chroma server and a database (`lock`,
        a PostgreSQL advisory lock: a replica killed while writing lets it go, and the next writer's
        `recover` rolls its change back or forward)."""
        with self._thread_lock:
            if self._lock is not None:
                with self._lock(f"index-writer:{self.name}"):
                    yield
                return
            if self._lock_path is None:
                yield
                return
            self._lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._lock_path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    # -- the alias --------------------------------------------------------------------------

    @_server_call
    def _state(self) -> tuple[str | None, int]:
        """The live collection's name and the number of the last change committed in place (one read)."""
        self._registry = self._client.get_collection(f"{self.name}-registry", embedding_function=None)
        meta = self._registry.metadata or {}
        value = meta.get("live")
        return (str(value) if value else None), int(meta.get("seq") or 0)

    @property
    def live_name(self) -> str | None:
        return self._state()[0]

    def _set_live(self, collection_name: str) -> None:
        self._registry.modify(metadata={"kind": "newsbot-registry", "live": collection_name, "seq": self._state()[1]})

    def _set_seq(self, live: str, seq: int) -> None:
        """Readers see change `seq` from now (one write, the same one that names the live collection)."""
        self._registry.modify(metadata={"kind": "newsbot-registry", "live": live, "seq": seq})

    def _new_name(self) -> str:
        return f"{self.name}-v{time.time_ns() // 1000}"

    def _create(self, collection_name: str) -> Collection:
        return self._client.create_collection(collection_name, embedding_function=None, metadata={"hnsw:space": "cosine"})

    @_server_call
    def live(self) -> Collection:
        """The collection questions are answered from."""
        name = self.live_name
        if name is None:
            raise StoreError(f"the index {self.name!r} has no live collection")
        if name in self._collections:
            return self._collections[name]
        try:
            collection = self._client.get_collection(name, embedding_function=None)
        except httpx.TransportError:
            raise
        except Exception as exc:
            raise StoreError(f"the live collection {name!r} is missing from Chroma") from exc
        # Asking the registry which collection is live is enough on every call; opening it once is.
        self._collections = {name: collection}
        return collection

    @_server_call
    def stage(self) -> Collection:
        """A new collection holding a copy of the live one (embeddings included), not yet live."""
        staged = self._create(self._new_name())
        for page in pages(self.live(), ["embeddings", "documents", "metadatas"], batch=self.max_batch):
            staged.add(
                ids=page["ids"],
                embeddings=page["embeddings"],
                documents=page["documents"],
                metadatas=page["metadatas"],
            )
        return staged

    @_server_call
    def publish(self, staged: Collection) -> None:
        """Make `staged` the live collection in one step, then drop the old one."""
        with self.writing():
            self._publish(staged)

    def _publish(self, staged: Collection) -> None:
        old = self.live_name
        self._set_live(staged.name)
        logger.info("collection %s is live (was %s)", staged.name, old)
        if old and old != staged.name:
            try:
                self._client.delete_collection(old)
            except Exception:  # a reader may still hold it; it is unreachable from the alias anyway
                logger.warning("could not delete old collection %s", old, exc_info=True)

    @_server_call
    def discard(self, staged: Collection) -> None:
        """Drop a staged collection that will not go live."""
        if staged.name != self.live_name:
            self._client.delete_collection(staged.name)

    @property
    def max_batch(self) -> int:
        try:
            return min(int(self._client.get_max_batch_size()), 5000)
        except Exception:
            return 1000

    # -- reading ----------------------------------------------------------------------------

    @_server_call
    def articles(self, collection: Collection | None = None) -> dict[str, StoredArticle]:
        """Every indexed article, by id."""
        collection = collection or self.live()
        hidden = self.uncommitted(collection.name)
        return _articles(meta for cid, meta in self._iter_metadatas(collection) if cid not in hidden)

    def _iter_metadatas(self, collection: Collection) -> Iterator[tuple[str, dict[str, Any]]]:
        for page in pages(collection, ["metadatas"], batch=self.max_batch):
            yield from ((cid, dict(meta)) for cid, meta in zip(page["ids"], page["metadatas"] or [], strict=True))

    @_server_call
    def all_chunks(self) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """Ids, texts and metadata of every live chunk (for the keyword index)."""
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict[str, Any]] = []
        for page in pages(self.live(), ["documents", "metadatas"], batch=self.max_batch):
            ids += page["ids"]
            texts += page["documents"] or []
            metas += [_lean(meta) for meta in page["metadatas"] or []]
        return ids, texts, metas

    @_server_call
    def chunks(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Text and full metadata of the live chunks `ids` (those that exist)."""
        if not ids:
            return {}
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for start in range(0, len(ids), self.max_batch):
            page = self.live().get(ids=list(ids[start : start + self.max_batch]), include=["documents", "metadatas"])
            documents, metadatas = page["documents"] or [], page["metadatas"] or []
            found.update({cid: (text, dict(meta)) for cid, text, meta in zip(page["ids"], documents, metadatas, strict=True)})
        return found

    @_server_call
    def count(self) -> int:
        return int(self.live().count())

    def version(self) -> str:
        """`LIVE:SEQ:N`: the live collection's name, the number of the last change committed in place
        (`change`: read with the name, every time, so another process's change shows at once) and the
        writes made outside the journal through this store (`add`, `delete` on the live collection)."""
        name, seq = self._state()
        return f"{name}:{seq}:{self._writes}"

    @_server_call
    def nearest_ids(self, embedding: np.ndarray, n: int, ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The `n` nearest live chunks (among `ids`, when given) as (id, cosine similarity), without text or metadata.

        Naming the chunks finds what the same `where` on their metadata would, many times faster: Chroma
        takes 300 ms to apply a date range to 100k chunks, and 40 ms to look up the ids in it.
        """
        if ids is not None and not ids:
            return []  # Chroma reads no ids as all of them
        result = self.live().query(
            query_embeddings=[embedding.tolist()], n_results=n, ids=None if ids is None else list(ids), include=["distances"]
        )
        distances = result["distances"]
        assert distances is not None  # they were included
        return [(cid, 1.0 - float(dist)) for cid, dist in zip(result["ids"][0], distances[0], strict=True)]

    @_server_call
    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored embeddings of the live chunks `ids`, one row each in that order (zeros for a missing one)."""
        collection = self.live()
        row = {cid: i for i, cid in enumerate(ids)}
        out: np.ndarray | None = None
        for start in range(0, len(ids), self.max_batch):
            page = collection.get(ids=list(ids[start : start + self.max_batch]), include=["embeddings"])
            embeddings = page["embeddings"]
            if embeddings is None or not len(embeddings):
                continue
            found = np.asarray(embeddings, dtype=np.float32)
            if out is None:
                out = np.zeros((len(ids), found.shape[1]), dtype=np.float32)
            out[[row[cid] for cid in page["ids"]]] = found
        return out if out is not None else np.zeros((len(ids), 0), dtype=np.float32)

    # -- writing ----------------------------------------------------------------------------

    @_server_call
    def add(
        self,
        collection: Collection,
        article: Article,
        chunks: list[Chunk],
        embeddings: np.ndarray,
        extra: Sequence[dict[str, str | int]] | None = None,
    ) -> None:
        """Write an article's chunks; `extra` adds fields to each chunk's metadata (the embedder's version,
        when it was ingested)."""
        more = list(extra) if extra else [{} for _ in chunks]
        try:
            collection.add(
                ids=[chunk.chunk_id for chunk in chunks],
                embeddings=embeddings.tolist(),
                documents=[chunk.text for chunk in chunks],
                metadatas=[{**chunk_metadata(article, chunk), **fields} for chunk, fields in zip(chunks, more, strict=True)],
            )
        finally:  # after the write: a reader of the live collection must read it again
            self._wrote(collection)

    @_server_call
    def delete(self, collection: Collection, doc_ids: Sequence[str]) -> None:
        try:
            delete_articles(collection, doc_ids)
        finally:
            self._wrote(collection)

    def _wrote(self, collection: Collection) -> None:
        if collection.name == self.live_name:
            self._writes += 1

    # -- changing the live collection in place -------------------------------------------------

    @_server_call
    def chunk_ids(self, doc_ids: Sequence[str], collection: Collection | None = None) -> list[str]:
        """The ids of every chunk of the articles `doc_ids` (in the live collection by default)."""
        collection = collection or self.live()
        found: list[str] = []
        for start in range(0, len(doc_ids), _DELETE_BATCH):
            members: dict[Literal["$in", "$nin"], list[str | int | float | bool]] = {
                "$in": list(doc_ids[start : start + _DELETE_BATCH])
            }
            found += collection.get(where={"doc_id": members}, include=[])["ids"]
        return found

    @_server_call
    def stored(self, doc_ids: Sequence[str]) -> dict[str, StoredArticle]:
        """What the live collection holds of the articles `doc_ids` (only those), committed state only."""
        if not doc_ids:
            return {}
        live = self.live()
        hidden = self.uncommitted(live.name)
        metas: list[dict[str, Any]] = []
        for start in range(0, len(doc_ids), _DELETE_BATCH):
            members: dict[Literal["$in", "$nin"], list[str | int | float | bool]] = {
                "$in": list(doc_ids[start : start + _DELETE_BATCH])
            }
            page = live.get(where={"doc_id": members}, include=["metadatas"])
            metas += [dict(m) for cid, m in zip(page["ids"], page["metadatas"] or [], strict=True) if cid not in hidden]
        return _articles(metas)

    @_server_call
    def change(
        self, upserts: Sequence[tuple[Article, list[Chunk], np.ndarray, dict[str, str | int]]], removed: Sequence[str]
    ) -> int:
        """Apply one change to the live collection in place, whole or not at all; its number.

        `upserts`: articles with their chunks, vectors and extra metadata; `removed`: chunk ids to drop (an
        updated article's old chunks: chunk ids hold the content hash, so old and new never share one).
        The change is journaled as pending before anything is written, committed once every new chunk
        is in (readers switch to it in one step: `changes`), and done once the old chunks are deleted.
        A crash at any point leaves a change that the next one rolls back (pending) or forward
        (committed): `recover`.
        """
        with self.writing():
            return self._change(upserts, removed)

    def _change(
        self, upserts: Sequence[tuple[Article, list[Chunk], np.ndarray, dict[str, str | int]]], removed: Sequence[str]
    ) -> int:
        self._recover()
        live = self.live()
        added = [chunk.chunk_id for _, chunks, _, _ in upserts for chunk in chunks]
        kept = set(added)
        removed = [cid for cid in dict.fromkeys(removed) if cid not in kept]
        seq = max(self._state()[1], self._last_journaled()) + 1
        self._journal.upsert(
            ids=[_change_id(seq)],
            embeddings=np.ones((1, 1), dtype=np.float32),  # Chroma wants one; nothing searches the journal
            documents=[json.dumps({"added": added, "removed": removed})],
            metadatas=[{"live": live.name, "seq": seq, "state": PENDING}],
        )
        batch: tuple[list[str], list[Any], list[str], list[Any]] = ([], [], [], [])
        for article, chunks, vectors, extra in upserts:
            for chunk, vector in zip(chunks, vectors, strict=True):
                batch[0].append(chunk.chunk_id)
                batch[1].append(vector)
                batch[2].append(chunk.text)
                batch[3].append({**chunk_metadata(article, chunk), **extra})
            if len(batch[0]) >= self.max_batch:
                live.upsert(
                    ids=batch[0], embeddings=np.asarray(batch[1], dtype=np.float32), documents=batch[2], metadatas=batch[3]
                )
                batch = ([], [], [], [])
        if batch[0]:
            live.upsert(ids=batch[0], embeddings=np.asarray(batch[1], dtype=np.float32), documents=batch[2], metadatas=batch[3])
        self._commit(live.name, seq)
        self._finish(live, seq, removed)
        return seq

    def _commit(self, live: str, seq: int) -> None:
        self._journal.update(ids=[_change_id(seq)], metadatas=[{"live": live, "seq": seq, "state": COMMITTED}])
        self._set_seq(live, seq)
        logger.info("change %d of %s committed", seq, live)

    def _finish(self, live: Collection, seq: int, removed: Sequence[str]) -> None:
        for start in range(0, len(removed), self.max_batch):
            live.delete(ids=list(removed[start : start + self.max_batch]))
        self._journal.update(ids=[_change_id(seq)], metadatas=[{"live": live.name, "seq": seq, "state": DONE}])
        old = [_change_id(n) for n in range(max(1, seq - _CHANGES_KEPT - 50), seq - _CHANGES_KEPT + 1)]
        if old:
            self._journal.delete(ids=old)

    def _last_journaled(self) -> int:
        seqs = [_int(m["seq"]) for m in self._journal.get(include=["metadatas"])["metadatas"] or []]
        return max(seqs, default=0)

    @_server_call
    def recover(self) -> list[int]:
        """Finish what a crash interrupted: a pending change is rolled back (its new chunks deleted), a
        committed one rolled forward (its old chunks deleted). The numbers of the changes recovered."""
        with self.writing():
            return self._recover()

    def _recover(self) -> list[int]:
        live_name, seq = self._state()
        unfinished: Any = {"state": {"$in": [PENDING, COMMITTED]}}
        found = self._journal.get(where=unfinished, include=["metadatas", "documents"])
        recovered: list[int] = []
        for meta, document in zip(found["metadatas"] or [], found["documents"] or [], strict=True):
            number, body = _int(meta["seq"]), json.loads(document)
            try:
                collection = self._client.get_collection(str(meta["live"]), embedding_function=None)
            except Exception:  # its collection was replaced by a reload since: nothing to finish
                self._journal.delete(ids=[_change_id(number)])
                continue
            if meta["state"] == PENDING:
                for start in range(0, len(body["added"]), self.max_batch):
                    collection.delete(ids=body["added"][start : start + self.max_batch])
                self._journal.delete(ids=[_change_id(number)])
                logger.warning("change %d of %s was interrupted before it was committed: rolled back", number, meta["live"])
            else:
                if meta["live"] == live_name and number > seq:  # committed, but readers were not told yet
                    self._set_seq(str(live_name), number)
                self._finish(collection, number, body["removed"])
                logger.warning("change %d of %s was interrupted after it was committed: finished", number, meta["live"])
            recovered.append(number)
        return recovered

    @_server_call
    def changes(self, live: str, after: int) -> list[Change] | None:
        """The committed in-place changes of collection `live` numbered after `after`, up to the last committed,
        in order; None when one of them is no longer kept (the reader then reads the collection again)."""
        _, last = self._state()
        if last <= after:
            return []
        wanted = [_change_id(n) for n in range(after + 1, last + 1)]
        found: dict[int, Change] = {}
        for start in range(0, len(wanted), 500):
            page = self._journal.get(ids=wanted[start : start + 500], include=["metadatas", "documents"])
            for meta, document in zip(page["metadatas"] or [], page["documents"] or [], strict=True):
                body = json.loads(document)
                number = _int(meta["seq"])
                found[number] = Change(number, str(meta["live"]), body["added"], body["removed"], str(meta["state"]))
        ordered = [found.get(n) for n in range(after + 1, last + 1)]
        if any(c is None or c.state == PENDING for c in ordered):
            return None
        return [c for c in ordered if c is not None and c.live == live]

    @_server_call
    def uncommitted(self, live: str) -> set[str]:
        """Chunk ids in `live` that its committed state does not hold: those a pending change added, and the
        old chunks a committed change has not finished deleting (a crash, or being deleted now)."""
        unfinished: Any = {"state": {"$in": [PENDING, COMMITTED]}}
        found = self._journal.get(where=unfinished, include=["metadatas", "documents"])
        hidden: set[str] = set()
        for meta, document in zip(found["metadatas"] or [], found["documents"] or [], strict=True):
            if meta["live"] == live:
                body = json.loads(document)
                hidden.update(body["added"] if meta["state"] == PENDING else body["removed"])
        return hidden


# -- Chroma helpers shared with the naive peer ----------------------------------------------------


def pages(collection: Collection, include: Include, *, batch: int, where: Where | None = None) -> Iterator[GetResult]:
    """Every record of `collection` (matching `where`), `batch` at a time: Chroma caps one `get`."""
    offset = 0
    while True:
        page = collection.get(where=where, include=include, limit=batch, offset=offset)
        if not page["ids"]:
            return
        yield page
        offset += len(page["ids"])


def nearest(collection: Collection, embedding: np.ndarray, n: int, where: Where | None = None) -> list[Hit]:
    """The `n` chunks of `collection` nearest to `embedding` as (id, text, metadata, cosine similarity)."""
    total = collection.count()
    if total == 0:
        return []
    result = collection.query(
        query_embeddings=[embedding.tolist()],
        n_results=min(n, total),
        where=where,
        include=["documents", "metadatas", "distances"],
    )
    documents, metadatas, distances = result["documents"], result["metadatas"], result["distances"]
    assert documents is not None and metadatas is not None and distances is not None  # all three were included
    return [
        (cid, doc, _lean(meta), 1.0 - float(dist))
        for cid, doc, meta, dist in zip(result["ids"][0], documents[0], metadatas[0], distances[0], strict=True)
    ]


def delete_articles(collection: Collection, doc_ids: Sequence[str]) -> None:
    """Remove every chunk of the articles `doc_ids` from `collection`."""
    for start in range(0, len(doc_ids), _DELETE_BATCH):
        members: dict[Literal["$in", "$nin"], list[str | int | float | bool]] = {
            "$in": list(doc_ids[start : start + _DELETE_BATCH])
        }
        collection.delete(where={"doc_id": members})


def _lean(meta: Any) -> dict[str, Any]:
    """Chunk metadata without an earlier reader's sentence vectors: what search keeps in memory."""
    return {key: value for key, value in dict(meta).items() if key != LEGACY_SENTENCE_VECTORS}


def parse_version(version: str) -> tuple[str, int, int]:
    """`ArticleStore.version`'s parts: (live collection, last change committed in place, writes outside the journal)."""
    live, seq, writes = version.rsplit(":", 2)
    return live, int(seq), int(writes)


def _articles(metas: Iterable[dict[str, Any]]) -> dict[str, StoredArticle]:
    """The articles whose chunks' metadata are `metas` (from each one's first chunk), with their chunk counts."""
    found: dict[str, StoredArticle] = {}
    counts: dict[str, int] = {}
    for meta in metas:
        doc_id = str(meta["doc_id"])
        counts[doc_id] = counts.get(doc_id, 0) + 1
        if meta.get("chunk_index") == 0:
            found[doc_id] = StoredArticle(
                doc_id=doc_id,
                title=str(meta.get("title", "")),
                path=str(meta.get("path", "")),
                content_hash=str(meta.get("content_hash", "")),
                chunks=0,
                source=_opt(meta.get("source")),
                url=_opt(meta.get("url")),
                published=_opt(meta.get("published")),
                embedder=_opt(meta.get(EMBEDDER)),
                ingested_at=_opt_int(meta.get(INGESTED)),
            )
    return {doc_id: StoredArticle(**{**article.__dict__, "chunks": counts.get(doc_id, 0)}) for doc_id, article in found.items()}


def _int(value: Any) -> int:
    return int(value)


def _change_id(seq: int) -> str:
    return f"change-{seq:012d}"


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None or isinstance(value, bool) else int(value)


def day_number(value: date) -> int:
    """The `published_day` metadata value of a date, for range filters."""
    return value.toordinal()
