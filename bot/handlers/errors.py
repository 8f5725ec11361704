"""The one error handler: log with the traceback, then tell the user something short and true."""

from __future__ import annotations

import logging

from telegram import Update

from bot.runtime import BotContext
from retrieval.index.store import StoreUnavailable
from retrieval.remote.client import WorkersUnavailable

logger = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on my side while handling that. It has been logged; please try again later."
UNAVAILABLE = "I can't reach my article index right now. Please try again shortly."
NO_WORKERS = "None of my answer workers is answering right now. Please try again shortly."


async def error(update: object, context: BotContext) -> None:
    if isinstance(context.error, StoreUnavailable):
        # Expected while a Chroma server restarts: the next question reaches it again, no traceback needed.
        logger.warning("index unavailable: %s", context.error)
        reply = UNAVAILABLE
    elif isinstance(context.error, WorkersUnavailable):
        # Every answer worker service was asked (setting answer_workers); the log names each and why.
        logger.warning("%s", context.error)
        reply = NO_WORKERS
    else:
        logger.error("error while handling an update", exc_info=context.error)
        reply = SORRY
    if isinstance(update, Update) and update.effective_message is not None:
        await update.effective_message.reply_text(reply)
