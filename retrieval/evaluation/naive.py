"""The peer pipeline of the LangChain tutorials, for `newsbot eval --compare naive`.

Split each article with `RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)`,
embed the chunks with the same all-MiniLM-L6-v2 model, keep them in their own Chroma collection
and answer a query with a plain similarity search. No cleaning, no keywords, no dates: this is
the baseline our retrieval has to beat. Each document is `title + "\n" + text`, as LangChain's
loaders would give it (on the six RealTimeQA weeks this gives the 14,850 chunks of the README).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from retrieval.index.embedding import Embedder
from retrieval.index.store import delete_articles, nearest, pages
from retrieval.ingest.articles import iter_files
from retrieval.passages import Passage, Query

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

logger = logging.getLogger(__name__)

NAIVE_COLLECTION = "naive-lc-1000-200"
_BATCH = 256


@dataclass(frozen=True)
class NaiveDocument:
    """One document as a tutorial loader would produce it: the page content and a little metadata."""

    doc_id: str
    page_content: str
    title: str
    path: str
    url: str | None = None
    source: str | None = None
    published: str | None = None

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.page_content.encode()).hexdigest()[:32]


@dataclass
class NaiveIngestReport:
    """What one naive ingest did."""

    documents: int = 0
    embedded_documents: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def _doc_id(key: str) -> str:
    # The same id our loader gives a record whose `id` is `key`, so both pipelines name articles alike.
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def load_documents(paths: Iterable[Path]) -> tuple[list[NaiveDocument], list[str]]:
    """Documents from JSON Lines articles (title + text) and text files (the whole file), uncleaned."""
    documents: dict[str, NaiveDocument] = {}
    errors: list[str] = []
    for file in iter_files(list(paths)):
        suffix = file.suffix.lower()
        try:
            raw = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{file}: {exc}")
            continue
        if suffix == ".jsonl":
            for number, line in enumerate(raw.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    text = str(record.get("text") or record.get("body") or record.get("content") or "")
                except (json.JSONDecodeError, AttributeError) as exc:
                    errors.append(f"{file}:{number}: {exc}")
                    continue
                if not text.strip():
                    continue
                title = str(record.get("title") or "")
                url = record.get("url") or record.get("link")
                key = str(record.get("id") or url or f"{file.resolve()}#{number}")
                doc = NaiveDocument(
                    _doc_id(key),
                    f"{title}\n{text}" if title else text,
                    title,
                    str(file),
                    url,
                    record.get("source"),
                    record.get("published"),
                )
                documents.setdefault(doc.doc_id, doc)
        elif suffix in (".txt", ".md", ".markdown") and raw.strip():
            title = next((line.strip() for line in raw.splitlines() if line.strip()), "")
            doc = NaiveDocument(_doc_id(str(file.resolve())), raw, title, str(file))
            documents.setdefault(doc.doc_id, doc)
    return list(documents.values()), errors


class NaiveRetriever:
    """Split, embed, similarity search: the tutorial pipeline behind our `Retriever` interface."""

    def __init__(
        self,
        client: ClientAPI,
        embedder: Embedder,
        *,
        collection: str = NAIVE_COLLECTION,
        chunk_size: int = 1000,
        chunk_overlap: int = 200,
        top_k: int = 10,
    ) -> None:
        self.embedder = embedder
        self.top_k = top_k
        self.splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        self.collection = client.get_or_create_collection(collection, embedding_function=None, metadata={"hnsw:space": "cosine"})

    def _stored_hashes(self) -> dict[str, str]:
        hashes: dict[str, str] = {}
        for page in pages(self.collection, ["metadatas"], batch=5000, where={"chunk_index": 0}):
            for meta in page["metadatas"] or []:
                hashes[str(meta["doc_id"])] = str(meta.get("content_hash", ""))
        return hashes

    def ingest(self, paths: list[Path]) -> NaiveIngestReport:
        """Index the documents under `paths`; unchanged ones are not embedded again."""
        started = time.perf_counter()
        report = NaiveIngestReport()
        documents, report.errors = load_documents(paths)
        report.documents = len(documents)
        stored = self._stored_hashes()
        todo = [doc for doc in documents if stored.get(doc.doc_id) != doc.content_hash]
        stale = [doc.doc_id for doc in todo if doc.doc_id in stored]
        delete_articles(self.collection, stale)
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict[str, Any]] = []

        def flush() -> None:
            if not ids:
                return
            self.collection.add(
                ids=list(ids),
                embeddings=self.embedder.embed_documents(texts).tolist(),
                documents=list(texts),
                metadatas=list(metas),
            )
            report.chunks_embedded += len(ids)
            ids.clear()
            texts.clear()
            metas.clear()

        for doc in todo:
            for index, chunk in enumerate(self.splitter.split_text(doc.page_content)):
                meta: dict[str, Any] = {
                    "doc_id": doc.doc_id,
                    "chunk_index": index,
                    "title": doc.title,
                    "path": doc.path,
                    "content_hash": doc.content_hash,
                }
                meta.update({k: v for k, v in (("url", doc.url), ("source", doc.source), ("published", doc.published)) if v})
                ids.append(f"{doc.doc_id}:{index:04d}")
                texts.append(chunk)
                metas.append(meta)
                if len(ids) >= _BATCH:
                    flush()
        flush()
        report.embedded_documents = len(todo)
        report.chunks_total = int(self.collection.count())
        report.seconds = time.perf_counter() - started
        return report

    def retrieve(self, query: Query, top_k: int | None = None) -> list[Passage]:
        """The top-k chunks by cosine similarity to the question; dates are ignored, as in the tutorial."""
        if self.collection.count() == 0:
            return []
        vector = self.embedder.embed([query.text])[0]
        hits = nearest(self.collection, vector, top_k or self.top_k)
        return [
            Passage(
                rank=rank,
                doc_id=str(meta.get("doc_id", "")),
                chunk_id=cid,
                title=str(meta.get("title", "")),
                text=text,
                score=similarity,
                source=meta.get("source"),
                url=meta.get("url"),
                published=meta.get("published"),
                path=meta.get("path"),
            )
            for rank, (cid, text, meta, similarity) in enumerate(hits, start=1)
        ]
