"""/brief TOPIC [since DATE | 7d]: dated, cited bullet points on a topic."""

from __future__ import annotations

from html import escape

from telegram import Update
from telegram.constants import ChatAction

from bot.formatting import format_briefing, split_message
from bot.handlers.ask import BUSY, allow
from bot.runtime import BotContext
from retrieval.answer.briefing import BriefingRequestError, parse_request

USAGE = "Tell me a topic: <code>/brief TOPIC [since YYYY-MM-DD | 7d]</code>, e.g. <code>/brief Mosul since 2016-01-01</code>"


async def brief(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None:
        return
    text = " ".join(context.args or [])
    if not text.strip():
        await message.reply_text(USAGE)
        return
    try:
        topic, since = parse_request(text)
    except BriefingRequestError as exc:
        await message.reply_text(escape(str(exc), quote=False))
        return
    limit = context.settings.max_question_chars
    if len(topic) > limit:
        await message.reply_text(f"That topic is too long. Please keep it under {limit} characters.")
        return
    if not await allow(message, context):
        return
    with context.runtime.slots.claim() as admitted:
        if not admitted:
            await message.reply_text(BUSY)
            return
        await message.reply_chat_action(ChatAction.TYPING)
        briefing = await context.runtime.briefer.abrief(topic, since=since)
    context.runtime.usage.briefings += 1
    for piece in split_message(format_briefing(briefing)):
        await message.reply_text(piece)
