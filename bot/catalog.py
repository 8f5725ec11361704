"""What is in the index: the articles, newest first, and their counts and date range."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from retrieval.index.store import StoredArticle
from retrieval.service import Services


@dataclass(frozen=True)
class Catalog:
    articles: list[StoredArticle]

    @property
    def chunks(self) -> int:
        return sum(a.chunks for a in self.articles)

    @property
    def date_range(self) -> tuple[str, str] | None:
        dates = sorted(a.published for a in self.articles if a.published)
        return (dates[0], dates[-1]) if dates else None


async def load_catalog(services: Services) -> Catalog:
    """The indexed articles, newest first (undated last), read off the event loop."""
    stored = await asyncio.to_thread(lambda: list(services.store.articles().values()))
    stored.sort(key=lambda a: a.title.lower())
    stored.sort(key=lambda a: a.published or "", reverse=True)
    return Catalog(stored)
