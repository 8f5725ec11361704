"""Questions: /ask, private messages, mentions and replies in groups; and the quote buttons under answers."""

from __future__ import annotations

import logging
import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update

from bot.access import chat_key
from bot.chat_action import typing
from bot.conversation import Exchange
from bot.formatting import format_answer, format_quote, split_message
from bot.runtime import BotContext
from bot.streaming import StreamedReply, finish
from retrieval.answer.types import Citation

logger = logging.getLogger(__name__)

BUSY = "I'm answering a lot of questions right now. Please ask again in a minute."

HOW_TO_ASK = "Ask me a question about the news articles, e.g. <code>/ask How many troops did the US send to Iraq?</code>"


async def ask(update: Update, context: BotContext) -> None:
    """/ask QUESTION"""
    if update.effective_message is None:
        return
    await respond(update.effective_message, context, " ".join(context.args or []))


async def message(update: Update, context: BotContext) -> None:
    """A question as plain text: any private message, or a group message that mentions or replies to the bot."""
    if update.effective_message is None:
        return
    text = update.effective_message.text or ""
    username = context.bot.username
    if username:
        text = re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.I)
    await respond(update.effective_message, context, text)


async def respond(message: Message, context: BotContext, question: str) -> None:
    """Check the limits, read a reply in the context of the answer it replies to, answer, remember."""
    runtime = context.runtime
    question = " ".join(question.split())
    if not any(ch.isalnum() for ch in question):  # nothing to search for: blank, emoji, punctuation
        await message.reply_text(HOW_TO_ASK)
        return
    limit = runtime.settings.max_question_chars
    if len(question) > limit:
        await message.reply_text(f"That question is too long ({len(question)} characters). Please keep it under {limit}.")
        return
    if not await allow(message, context):
        return
    with runtime.slots.claim() as admitted:
        if not admitted:
            logger.warning("busy: %d answers in progress, a question was turned away", runtime.slots.in_progress)
            await message.reply_text(BUSY)
            return
        await _answer(message, context, question)


async def _answer(message: Message, context: BotContext, question: str) -> None:
    runtime = context.runtime
    key = chat_key(message)
    replied = message.reply_to_message
    # Questions are answered as of the day they were asked: "this week" means that week.
    as_of = message.date.date() if message.date else None
    # A chat model's answer is shown as it is written, sentence by checked sentence (bot/streaming.py).
    stream = StreamedReply(message) if runtime.streams else None
    try:
        async with typing(message):  # kept on while a chat model writes, which can take longer than the indicator lasts
            answer, searched = await runtime.answer(
                key, question, replied.message_id if replied else None, as_of=as_of, on_text=stream.push if stream else None
            )
    finally:
        streamed = await stream.close() if stream else None
    pieces = split_message(format_answer(answer))
    keyboard = quote_keyboard(runtime.quotes.add(answer.citations), answer.citations) if answer.citations else None
    sent = await finish(streamed, message, pieces, reply_markup=keyboard)
    runtime.conversations.remember(key, Exchange(question, searched, [m.message_id for m in sent], answer.citations))


async def allow(message: Message, context: BotContext) -> bool:
    """The per-user rate limit: False (after saying so) when the user should slow down."""
    runtime = context.runtime
    user = message.from_user
    if user is None or runtime.limiter.allow(user.id):
        return True
    wait = max(1, round(runtime.limiter.retry_after(user.id)))
    await message.reply_text(
        f"Slow down a little: you can ask {runtime.limiter.per_minute} questions a minute. Try again in {wait} seconds."
    )
    return False


def quote_keyboard(key: int, citations: list[Citation]) -> InlineKeyboardMarkup:
    """One button per citation; pressing it shows the exact passage quoted."""
    buttons = [InlineKeyboardButton(f"Quote [{c.n}]", callback_data=f"q:{key}:{c.n}") for c in citations]
    return InlineKeyboardMarkup([buttons[i : i + 4] for i in range(0, len(buttons), 4)])


async def quote(update: Update, context: BotContext) -> None:
    """A quote button: reply with the passage behind citation [n]."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    _, key, n = query.data.split(":")
    citation = context.runtime.quotes.get(int(key), int(n))
    if citation is None:
        await query.answer("That answer is too old for me to show its quotes. Please ask again.", show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.reply_text(format_quote(citation))
    else:
        await context.bot.send_message(query.from_user.id, format_quote(citation))
