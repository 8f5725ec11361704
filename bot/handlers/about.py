"""/about: how many articles and chunks, their date range, and when they were last reloaded."""

from __future__ import annotations

from telegram import Update

from bot.catalog import load_catalog
from bot.runtime import BotContext


async def about(update: Update, context: BotContext) -> None:
    if update.effective_message is None:
        return
    runtime = context.runtime
    catalog = await load_catalog(runtime.services)
    span = catalog.date_range
    dates = f"published {span[0]} to {span[1]}" if span else "no publication dates known"
    reloaded = (
        f"last reloaded {runtime.last_reload:%Y-%m-%d %H:%M}"
        if runtime.last_reload
        else f"not reloaded since the bot started ({runtime.started:%Y-%m-%d %H:%M})"
    )
    await update.effective_message.reply_text(
        "I answer questions from a collection of news articles, quoting them and citing each source.\n\n"
        f"<b>{len(catalog.articles)}</b> articles in <b>{catalog.chunks}</b> chunks, {dates}; {reloaded}."
    )
