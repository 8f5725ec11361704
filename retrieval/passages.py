"""The values that travel up the pipeline: a query and the passages found for it.

Shared by search (which returns passages), the answer layer (which quotes them) and evaluation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

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
    # The chunks the text was made of, in order: the matched chunk and its neighbours ("small to big").
    window: tuple[str, ...] = ()

    @property
    def published_on(self) -> date | None:
        """The day of `published` (an ISO date or timestamp), None when undated."""
        try:
            return date.fromisoformat(self.published[:10]) if self.published else None
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
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
class Query:
    """A question and the dates that scope it."""

    text: str
    as_of: date | None = None
    since: date | None = None  # published from this day
    until: date | None = None  # published up to this day
    # Only articles whose content was ingested at or after this time (seconds since 1970, UTC): what a
    # digest has not seen yet.
    arrived_after: int | None = None

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
