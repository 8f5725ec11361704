"""The one error handler: log with the traceback, then tell the user something short and true."""

from __future__ import annotations

import logging

from telegram import Update

from bot.runtime import BotContext

logger = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on my side while handling that. It has been logged; please try again later."


async def error(update: object, context: BotContext) -> None:
    logger.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_message is not None:
        await update.effective_message.reply_text(SORRY)
