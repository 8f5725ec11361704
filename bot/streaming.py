"""An answer shown while it is written: one message, sent with the first checked sentence, then edited.

The answer layer calls `push` (from its worker thread) with the checked answer so far, never with
anything unchecked; the message shows the latest such text, edited at most once every
`EDIT_EVERY_SECONDS` (Telegram allows about one edit a second in a chat and twenty a minute in a
group). When the answer is done, `close` hands the message over so the whole answer, with its sources,
replaces the text in the same message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from html import escape

from telegram import Message
from telegram.error import BadRequest, TelegramError

from bot.formatting import MAX_MESSAGE_CHARS

logger = logging.getLogger(__name__)

# Seconds between two edits of the growing message: three keeps a group under Telegram's twenty a minute.
EDIT_EVERY_SECONDS = 3.0


class StreamedReply:
    """One reply to `message` that grows as checked sentences arrive."""

    def __init__(self, message: Message, every: float = EDIT_EVERY_SECONDS) -> None:
        self.message = message
        self.every = every
        self.sent: Message | None = None
        self.edits = 0
        self._loop = asyncio.get_running_loop()
        self._latest: str | None = None
        self._shown: str | None = None
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def push(self, text: str) -> None:
        """The checked answer so far (thread-safe: the answer is written in a worker thread)."""
        self._loop.call_soon_threadsafe(self._set, text)

    def _set(self, text: str) -> None:
        self._latest = text
        self._changed.set()

    async def close(self) -> Message | None:
        """Stop showing (a send under way finishes first); the message sent, if any, for the whole answer."""
        self._closing.set()
        self._changed.set()
        await self._task
        return self.sent

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._closing.is_set():
                return
            await self._show()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.every)  # the throttle; closing cuts it short
            if self._closing.is_set():
                return

    async def _show(self) -> None:
        text = self._latest
        if text is None or text == self._shown or len(escape(text, quote=False)) > MAX_MESSAGE_CHARS:
            return
        try:
            if self.sent is None:
                self.sent = await self.message.reply_text(escape(text, quote=False))
            else:
                await self.sent.edit_text(escape(text, quote=False))
                self.edits += 1
            self._shown = text
        except TelegramError as exc:  # a courtesy: the whole answer still goes out at the end
            logger.warning("could not show the answer so far: %s", exc)


async def finish(streamed: Message | None, message: Message, pieces: list[str], **last_options: object) -> list[Message]:
    """Send the whole answer: into the streamed message (its first piece) if there is one, the rest as replies."""
    sent: list[Message] = []
    for index, piece in enumerate(pieces):
        options = last_options if index == len(pieces) - 1 else {}
        if index == 0 and streamed is not None:
            try:
                edited = await streamed.edit_text(piece, **options)  # type: ignore[arg-type]
                sent.append(edited if isinstance(edited, Message) else streamed)
                continue
            except BadRequest as exc:
                logger.warning("could not replace the answer so far (%s); sending it anew", exc)
        sent.append(await message.reply_text(piece, **options))  # type: ignore[arg-type]
    return sent
