"""/reload (admins): rescan the articles directory into a fresh index, showing progress in one message."""

from __future__ import annotations

import logging
from html import escape

from telegram import Update

from bot.access import require_admin
from bot.progress import ProgressMessage, ingest_with_progress
from bot.runtime import BotContext
from retrieval.index.store import StoreError

logger = logging.getLogger(__name__)


async def reload(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None or not await require_admin(update, context):
        return
    runtime = context.runtime
    if runtime.ingest_lock.locked():
        await message.reply_text("A reload or upload is already running; I'll be ready in a moment.")
        return
    directory = runtime.settings.articles_dir
    assert directory is not None
    async with runtime.ingest_lock:
        started = await message.reply_text(f"Reloading articles from <code>{escape(directory.name)}</code>…")
        progress = ProgressMessage(started)
        user_id = update.effective_user.id if update.effective_user else None
        logger.info("reload of %s started by user id %s", directory, user_id)
        try:
            report = await ingest_with_progress(runtime, [directory], progress, prune=True, rebuild=True)
        except (StoreError, OSError) as exc:
            logger.error("reload failed", exc_info=exc)
            await progress.show("The reload failed, so I'm still answering from the articles I had before.", force=True)
            return
    lines = [
        "<b>Reload finished</b>",
        f"Added: {len(report.added)}",
        f"Updated: {len(report.updated)}",
        f"Unchanged: {len(report.unchanged)}",
        f"Skipped: {len(report.skipped)}",
    ]
    if report.removed:
        lines.append(f"Removed: {len(report.removed)}")
    for skipped in report.skipped[:5]:
        lines.append(f"• {escape(str(skipped), quote=False)}")
    await progress.show("\n".join(lines), force=True)
