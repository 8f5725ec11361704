"""The answer model shared by the CLI, the bot and every answer backend, and the Answerer that joins them."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Protocol

logger = logging.getLogger(__name__)

REFUSAL = "I couldn't find that in the articles I have."

# "This week" in a question means the week before the as-of date: recency then counts for more.
_THIS_WEEK = re.compile(r"\b(this|last|past) week\b", re.I)


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk, with its article's metadata."""

    rank: int
    doc_id: str
    chunk_id: str
    title: str
    text: str
    score: float
    source: str | None = None
    url: str | None = None
    published: str | None = None
    path: str | None = None
    # The same story from other articles (near-duplicate passages folded into this one).
    duplicates: tuple[Passage, ...] = ()

    @property
    def published_on(self) -> date | None:
        """The day of `published` (an ISO date or timestamp), None when undated."""
        try:
            return date.fromisoformat(self.published[:10]) if self.published else None
        except ValueError:
            return None

    def public(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "doc_id": self.doc_id,
            "chunk_id": self.chunk_id,
            "title": self.title,
            "text": self.text,
            "score": round(self.score, 4),
            "source": self.source,
            "published": self.published,
            "also_in": [duplicate.doc_id for duplicate in self.duplicates],
        }


@dataclass(frozen=True)
class Citation:
    """A numbered source behind an answer, with the exact sentence quoted from it."""

    n: int
    doc_id: str
    title: str
    source: str | None
    url: str | None
    published: str | None
    path: str | None
    quote: str

    @classmethod
    def of(cls, n: int, passage: Passage, quote: str) -> Citation:
        """Citation number `n` of the article behind `passage`, quoting `quote` from it."""
        return cls(n, passage.doc_id, passage.title, passage.source, passage.url, passage.published, passage.path, quote)


@dataclass
class Answer:
    """A reply: text with [n] markers, its citations, and how it was found."""

    question: str
    text: str
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    conflict: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "conflict": self.conflict,
            "citations": [asdict(citation) for citation in self.citations],
            "passages": [passage.public() for passage in self.passages],
            "timings_ms": {key: round(value, 1) for key, value in self.timings_ms.items()},
        }


@dataclass(frozen=True)
class Query:
    """A question and the dates that scope it."""

    text: str
    as_of: date | None = None
    since: date | None = None
    until: date | None = None

    def recency(self, published: date | None, half_life: float = 30.0) -> float:
        """How close to the as-of date an article was published: 1.0 on the day, halving every `half_life` days.

        A question about "this week" halves every 7 days. No as-of date, an undated article or one
        published after the as-of date: 0.0.
        """
        if self.as_of is None or published is None or published > self.as_of:
            return 0.0
        if _THIS_WEEK.search(self.text):
            half_life = 7.0
        return float(0.5 ** ((self.as_of - published).days / half_life))


@dataclass(frozen=True)
class Draft:
    """What a generator writes from passages: the text and its citations."""

    text: str
    refused: bool
    citations: list[Citation]
    conflict: bool = False


class Retriever(Protocol):
    """Finds the passages most likely to answer a query."""

    def retrieve(self, query: Query, top_k: int | None = None) -> list[Passage]:
        """Ranked passages, best first."""
        ...


class AnswerGenerator(Protocol):
    """Writes a grounded reply from passages alone."""

    def generate(self, query: Query, passages: list[Passage]) -> Draft:
        """A cited draft, or a refusal when the passages do not hold the answer."""
        ...


class Answerer:
    """Question in, `Answer` out: retrieve the context, then write the answer from it."""

    def __init__(self, retriever: Retriever, generator: AnswerGenerator, top_k: int = 10) -> None:
        self.retriever = retriever
        self.generator = generator
        self.top_k = top_k
        self._lock = asyncio.Lock()

    def answer(
        self,
        question: str,
        *,
        as_of: date | None = None,
        since: date | None = None,
        until: date | None = None,
        top_k: int | None = None,
    ) -> Answer:
        started = time.perf_counter()
        query = Query(question.strip(), as_of=as_of, since=since, until=until)
        passages = self.retriever.retrieve(query, top_k or self.top_k)
        retrieved = time.perf_counter()
        draft = self.generator.generate(query, passages)
        finished = time.perf_counter()
        return Answer(
            question=question,
            text=draft.text,
            refused=draft.refused,
            citations=[] if draft.refused else draft.citations,
            passages=passages,
            conflict=draft.conflict,
            timings_ms={
                "retrieve": (retrieved - started) * 1000,
                "generate": (finished - retrieved) * 1000,
                "total": (finished - started) * 1000,
            },
        )

    async def aanswer(self, question: str, **kwargs: Any) -> Answer:
        """`answer` off the event loop; one at a time, since the model and index are shared."""
        async with self._lock:
            return await asyncio.to_thread(self.answer, question, **kwargs)
