"""What the bot keeps for its whole run, built once in post_init, and the typed context that reaches it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from telegram.ext import Application, CallbackContext, ExtBot

from bot.conversation import ChatKey, Conversations, follow_up_question
from bot.digests import DigestBook
from bot.limits import AnswerSlots, RateLimiter
from bot.quotes import QuoteCache
from bot.usage import Usage
from config import Settings

if TYPE_CHECKING:
    from retrieval.answer.answerer import Answerer
    from retrieval.answer.briefing import Briefer
    from retrieval.answer.types import Answer
    from retrieval.remote.client import RemoteWorkers
    from retrieval.service import FeedRefresh, LinkResult, Services
    from retrieval.workers import AnswerWorkers

# Where questions are answered when not in the bot's own process: worker processes, or worker services.
Workers: TypeAlias = "AnswerWorkers | RemoteWorkers"

RUNTIME_KEY = "newsbot"


@dataclass
class Runtime:
    """The shared services and the bot's own state (conversation context, limits, counters).

    With `workers` (setting answer_processes, or answer_workers), questions and briefings are answered in
    those processes or services, and this one only ingests and talks to Telegram.
    """

    settings: Settings
    services: Services
    conversations: Conversations
    limiter: RateLimiter
    slots: AnswerSlots = field(default_factory=lambda: AnswerSlots(0))
    quotes: QuoteCache = field(default_factory=QuoteCache)
    usage: Usage = field(default_factory=Usage)
    ingest_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    poll_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one feed poll at a time
    started: datetime = field(default_factory=datetime.now)
    last_reload: datetime | None = None
    workers: Workers | None = None
    _digests: DigestBook | None = None

    @property
    def digests(self) -> DigestBook:
        """The chats' scheduled briefings, in the SQLite file beside the index (opened on first use)."""
        if self._digests is None:
            self._digests = DigestBook(self.services.database)
        return self._digests

    @property
    def answerer(self) -> Answerer | Workers:
        return self.workers or self.services.answerer

    @property
    def briefer(self) -> Briefer | Workers:
        return self.workers or self.services.briefer

    async def refresh(self) -> None:
        """Build the live collection's keyword index now (after a reload), wherever questions are answered."""
        await asyncio.to_thread(self.workers.refresh if self.workers else self.services.retriever.refresh)

    async def refresh_feeds(self, feed_id: int | None = None, *, feed_ids: list[int] | None = None) -> FeedRefresh:
        """Poll the feeds (or one, or those of `feed_ids`), then ingest what is new. One poll at a time; the fetching
        leaves reloads and uploads free, the ingest takes its turn with them; questions are answered throughout."""
        async with self.poll_lock:
            poll = await asyncio.to_thread(self.services.collector.poll, feed_id, feed_ids=feed_ids)
            if not (poll.changed or poll.expired_ids):
                return self.services.ingest_poll(poll)  # nothing new: nothing to ingest, no lock needed
            async with self.ingest_lock:
                result = await asyncio.to_thread(self.services.ingest_poll, poll)
                if result.changed_index:
                    await self.refresh()
                    self.last_reload = datetime.now()
        return result

    async def add_link(self, url: str) -> LinkResult:
        """Fetch, extract and ingest one page (raises FetchError or ArticleError saying why not)."""
        article, path = await asyncio.to_thread(self.services.collector.fetch_link, url)
        async with self.ingest_lock:
            result = await asyncio.to_thread(self.services.ingest_link, article, path)
            await self.refresh()
            self.last_reload = datetime.now()
        return result

    @property
    def streams(self) -> bool:
        """Whether answers can be shown while they are written: a chat model writes them in this process, or
        in an answer worker service, which streams what its model writes (answer processes hand back whole answers)."""
        if self.workers is not None:
            return self.workers.streams
        return self.settings.answer_backend == "llm"

    async def answer(
        self,
        key: ChatKey,
        question: str,
        replying_to: int | None = None,
        as_of: date | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[Answer, str]:
        """Answer `question` as of the message's date, read in the context of the exchange it replies to.

        Also returns what was searched. `on_text` (answers in this process or a worker service) sees the checked answer grow.
        """
        searched = question
        previous = self.conversations.find(key, replying_to) if replying_to is not None else None
        if previous is not None:
            searched = follow_up_question(previous, question)
        started = time.perf_counter()
        if on_text is not None and (self.workers is None or self.workers.streams):
            answer = await self.answerer.aanswer(searched, as_of=as_of, on_text=on_text)
        else:
            answer = await self.answerer.aanswer(searched, as_of=as_of)
        self.usage.record(
            refused=answer.refused,
            latency_ms=(time.perf_counter() - started) * 1000,
            backend=answer.backend,
            fallback=answer.fallback,
            dropped=answer.dropped,
        )
        return answer, searched

    @classmethod
    def build(cls, settings: Settings, services: Services, workers: Workers | None = None) -> Runtime:
        return cls(
            settings=settings,
            services=services,
            workers=workers,
            conversations=Conversations(settings.context_turns, settings.context_ttl_seconds),
            limiter=RateLimiter(settings.rate_limit_per_minute),
            slots=AnswerSlots(settings.max_concurrent_answers),
        )


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """CallbackContext with the runtime as a typed property."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)

    @property
    def runtime(self) -> Runtime:
        runtime = self.bot_data.get(RUNTIME_KEY)
        if not isinstance(runtime, Runtime):
            raise RuntimeError("the bot's services are not ready (post_init has not run)")
        return runtime

    @property
    def settings(self) -> Settings:
        return self.runtime.settings
