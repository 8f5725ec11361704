"""Run an ingest off the event loop while one Telegram message shows its progress."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path

from telegram import Message
from telegram.error import BadRequest

from bot.runtime import Runtime
from retrieval.ingest.pipeline import IngestReport

logger = logging.getLogger(__name__)


class ProgressMessage:
    """Edits one message in place; skips edits that would repeat the text or come too often."""

    def __init__(self, message: Message, min_interval: float = 2.0) -> None:
        self.message = message
        self.min_interval = min_interval
        self._text = message.text_html if message.text else ""
        self._last = 0.0
        self._lock = asyncio.Lock()

    async def show(self, text: str, *, force: bool = False) -> None:
        async with self._lock:
            now = time.monotonic()
            if text == self._text or (not force and now - self._last < self.min_interval):
                return
            try:
                await self.message.edit_text(text)
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():
                    raise
            self._text, self._last = text, now


async def ingest_with_progress(
    runtime: Runtime, paths: list[Path], progress: ProgressMessage, *, prune: bool = False, rebuild: bool = False
) -> IngestReport:
    """Ingest `paths`, editing `progress` as articles are embedded: into the live collection in place, or with
    `rebuild` (`/reload`) into a new collection that goes live when done."""
    loop = asyncio.get_running_loop()
    edits: list[Future[None]] = []

    def report(done: int, total: int) -> None:  # called from the ingest thread
        text = f"Embedding articles: {done} of {total}…"
        edits.append(asyncio.run_coroutine_threadsafe(progress.show(text, force=done == total), loop))

    result = await asyncio.to_thread(runtime.services.ingestor.ingest, paths, rebuild=rebuild, prune=prune, progress=report)
    for edit in edits:
        await asyncio.wrap_future(edit)
    # The index in memory brought up to date now rather than by the next question (questions asked
    # meanwhile are answered from the one in use).
    await runtime.refresh()
    runtime.last_reload = datetime.now()
    return result
