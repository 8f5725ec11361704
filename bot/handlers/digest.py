"""/digest TOPIC at HH:MM (a group's admins, or the bot's): a daily briefing; /digest lists, /digest stop N ends one."""

from __future__ import annotations

import asyncio
import logging
from html import escape

from telegram import Update

from bot import jobs
from bot.access import require_chat_admin, sent_by_the_group
from bot.digests import DigestRequestError, parse_request
from bot.runtime import BotContext

logger = logging.getLogger(__name__)

USAGE = (
    "<code>/digest TOPIC at HH:MM</code> posts a briefing on TOPIC here every day at that time; "
    "<code>/digest</code> lists this chat's digests; <code>/digest stop N</code> ends one."
)


async def digest(update: Update, context: BotContext) -> None:
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None:
        return
    book = context.runtime.digests
    settings = context.settings
    args = context.args or []
    if not args:
        await message.reply_text(_listing(context, chat.id))
        return
    if not await require_chat_admin(update, context):
        return
    # An anonymous admin is known only as the group (Telegram names a placeholder account as the sender).
    user_id = update.effective_user.id if update.effective_user and not sent_by_the_group(message) else None
    if args[0].lower() == "stop" and len(args) == 2:
        number = args[1].lstrip("#")
        stopped = book.stop(chat.id, int(number)) if number.isdigit() else None
        if stopped is None:
            await message.reply_text(f"This chat has no digest {escape(args[1])}.\n\n" + _listing(context, chat.id))
            return
        await asyncio.to_thread(jobs.unschedule, context.runtime, stopped.id)
        logger.info("digest %s stopped in chat id %s by user id %s", stopped.id, chat.id, user_id)
        await message.reply_text(f"Stopped digest {stopped.id} ({escape(stopped.topic, quote=False)}).")
        return
    try:
        topic, at = parse_request(" ".join(args))
    except DigestRequestError as exc:
        await message.reply_text(escape(str(exc), quote=False))
        return
    if len(topic) > settings.max_question_chars:
        await message.reply_text(f"That topic is too long. Please keep it under {settings.max_question_chars} characters.")
        return
    if len(book.for_chat(chat.id)) >= settings.max_digests_per_chat:
        await message.reply_text(f"This chat has {settings.max_digests_per_chat} digests already; stop one first.")
        return
    thread_id = message.message_thread_id if message.is_topic_message else None
    made = book.add(chat.id, thread_id, topic, at, user_id)
    await asyncio.to_thread(jobs.schedule, context.runtime, made)
    logger.info("digest %s (%r at %s) made in chat id %s by user id %s", made.id, topic, at, chat.id, user_id)
    await message.reply_text(
        f"Digest {made.id}: every day at {at.strftime('%H:%M')} {escape(settings.timezone)} I'll post what's new on "
        f"<b>{escape(topic, quote=False)}</b>. <code>/digest stop {made.id}</code> ends it."
    )


def _listing(context: BotContext, chat_id: int) -> str:
    found = context.runtime.digests.for_chat(chat_id)
    if not found:
        return "No digests in this chat. " + USAGE
    zone = escape(context.settings.timezone)
    lines = ["<b>Digests</b>"]
    for item in found:
        sent = item.last_sent.strftime("%Y-%m-%d %H:%M UTC") if item.last_sent else "not yet"
        lines.append(f"{item.id}. {escape(item.topic, quote=False)} at {item.at.strftime('%H:%M')} {zone} (last sent: {sent})")
    lines.append("\n<code>/digest stop N</code> ends one.")
    return "\n".join(lines)
