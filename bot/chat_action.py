"""The "typing…" indicator, kept on while an answer is being written (a chat model can take a minute)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from telegram import Message
from telegram.constants import ChatAction
from telegram.error import TelegramError

logger = logging.getLogger(__name__)

# Telegram shows a chat action for 5 seconds or until the next message; it is sent again before then.
REPEAT_SECONDS = 4.0


@contextlib.asynccontextmanager
async def typing(message: Message, every: float | None = None) -> AsyncIterator[None]:
    """Show "typing…" in the message's chat until the block ends, sending it again every `every` seconds."""
    every = every or REPEAT_SECONDS

    async def show() -> None:
        try:
            await message.reply_chat_action(ChatAction.TYPING)
        except TelegramError as exc:  # the indicator is a courtesy: the answer still goes out
            logger.debug("could not send the typing indicator: %s", exc)

    async def keep_on() -> None:
        while True:
            await asyncio.sleep(every)
            await show()

    await show()
    task = asyncio.create_task(keep_on())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
