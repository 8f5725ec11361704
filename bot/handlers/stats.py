"""/stats (admins): questions served, refusals, LLM answers and fallbacks, median latency, where answered, index size."""

from __future__ import annotations

from telegram import Update

from bot.access import require_admin
from bot.catalog import load_catalog
from bot.runtime import BotContext


async def stats(update: Update, context: BotContext) -> None:
    if update.effective_message is None or not await require_admin(update, context):
        return
    usage = context.runtime.usage
    catalog = await load_catalog(context.runtime.services)
    median = f"{usage.median_ms:.0f} ms" if usage.median_ms is not None else "n/a"
    workers = context.runtime.workers
    answering = workers.description if workers else "in the bot's process"
    llm = (
        f"LLM answers: {usage.llm_answers}\n"
        f"LLM fallbacks: {usage.llm_fallbacks}\n"
        f"Sentences dropped by the support check: {usage.dropped_sentences}\n"
        if context.runtime.settings.answer_backend == "llm"
        else ""
    )
    await update.effective_message.reply_text(
        "<b>Since start</b>\n"
        f"Questions served: {usage.questions}\n"
        f"Refusals: {usage.refusals}\n"
        f"{llm}"
        f"Briefings: {usage.briefings}\n"
        f"Median answer latency: {median}\n"
        f"Answering: {answering}\n\n"
        "<b>Index</b>\n"
        f"Articles: {len(catalog.articles)}\n"
        f"Chunks: {catalog.chunks}"
    )
