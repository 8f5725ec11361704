"""/feeds (admins): list the feeds; /feeds add URL subscribes and polls it now; /feeds remove N."""

from __future__ import annotations

import logging
from html import escape

from telegram import Update

from bot import jobs
from bot.access import require_admin
from bot.formatting import format_feeds, link
from bot.runtime import BotContext
from retrieval.index.store import StoreError
from retrieval.ingest.fetch import FetchError

logger = logging.getLogger(__name__)

USAGE = "<code>/feeds</code> lists the feeds, <code>/feeds add URL</code> adds one, <code>/feeds remove N</code> removes one."


async def feeds(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None or not await require_admin(update, context):
        return
    collector = context.runtime.services.collector
    args = context.args or []
    user_id = update.effective_user.id if update.effective_user else None
    if not args:
        await message.reply_text(format_feeds(collector.feeds()))
        return
    action, rest = args[0].lower(), args[1:]
    if action == "add" and len(rest) == 1:
        known = {feed.url: feed for feed in collector.feeds()}
        try:
            feed = collector.add_feed(rest[0], added_by=str(user_id))
        except FetchError as exc:
            await message.reply_text(f"I can't add that feed: {escape(exc.reason, quote=False)}")
            return
        if feed.url in known:
            await message.reply_text(f"That feed is already feed {feed.id}.\n\n" + format_feeds([feed]))
            return
        logger.info("feed %s (%s) added by user id %s", feed.id, feed.url, user_id)
        progress = await message.reply_text(f"Added feed {feed.id}: {link(feed.url, feed.url)}. Polling it now…")
        try:
            result = await jobs.poll_feed_now(context.runtime, feed.id)
        except (StoreError, OSError) as exc:
            logger.error("first poll of feed %s failed", feed.id, exc_info=exc)
            await progress.edit_text(f"Added feed {feed.id}, but its articles could not be indexed; I'll try at the next poll.")
            return
        polled = collector.feed(feed.id) or result.poll.feeds[0].feed
        await progress.edit_text(format_feeds([polled]))
        return
    if action == "remove" and len(rest) == 1 and rest[0].isdigit():
        removed = collector.remove_feed(int(rest[0]))
        if removed is None:
            await message.reply_text(f"There is no feed {escape(rest[0])}. " + USAGE)
            return
        logger.info("feed %s (%s) removed by user id %s", removed.id, removed.url, user_id)
        await message.reply_text(
            f"Removed feed {removed.id}: {link(removed.name, removed.url)}. Its articles stay in the collection"
            + (" until the retention removes them." if context.settings.feed_retention_days else ".")
        )
        return
    await message.reply_text(USAGE)
