"""What the answer layer hands out: a cited `Answer`, its `Citation`s, and a generator's `Draft`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from retrieval.passages import Passage

REFUSAL = "I couldn't find that in the articles I have."


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
    # How strongly the best sentence answers the question (the reader's probability), what refusal judges.
    evidence: float | None = None
    # Who wrote the text ("extractive" or "llm"); with the LLM backend, why its reply was not used
    # ("error", "timeout", "unsupported", "not_found", "off_question", "conflict": llm.NOTES), how many
    # of its sentences the support check dropped, and the one line the user is shown about it.
    backend: str = "extractive"
    fallback: str | None = None
    dropped: int = 0
    note: str | None = None
    # The thing asked for, named alone ("560 more troops"), when the quoted sentence holds one entity of that kind.
    short_answer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "short_answer": self.short_answer,
            "refused": self.refused,
            "conflict": self.conflict,
            "evidence": None if self.evidence is None else round(self.evidence, 4),
            "backend": self.backend,
            "fallback": self.fallback,
            "dropped_sentences": self.dropped,
            "note": self.note,
            "citations": [asdict(citation) for citation in self.citations],
            "passages": [passage.to_dict() for passage in self.passages],
            "timings_ms": {key: round(value, 1) for key, value in self.timings_ms.items()},
        }


@dataclass(frozen=True)
class Draft:
    """What a generator writes from passages: the text and its citations."""

    text: str
    refused: bool
    citations: list[Citation]
    conflict: bool = False
    evidence: float | None = None
    backend: str = "extractive"
    fallback: str | None = None
    dropped: int = 0
    note: str | None = None
    short_answer: str | None = None
