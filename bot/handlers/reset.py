"""/reset: forget this chat's (or forum topic's) conversation context."""

from __future__ import annotations

from telegram import Update

from bot.access import chat_key
from bot.runtime import BotContext


async def reset(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None:
        return
    context.runtime.conversations.reset(chat_key(message))
    await message.reply_text("Done: I've forgotten our conversation here. Replies to my earlier answers start afresh.")
