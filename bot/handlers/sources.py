"""/sources: the indexed articles, a page at a time, with buttons to turn the pages."""

from __future__ import annotations

from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot.catalog import Catalog, load_catalog
from bot.formatting import link
from bot.runtime import BotContext

PAGE_SIZE = 10


def render_page(catalog: Catalog, page: int) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of the list and its navigation buttons."""
    total = len(catalog.articles)
    if total == 0:
        return "No articles are indexed yet.", None
    pages = (total + PAGE_SIZE - 1) // PAGE_SIZE
    page = min(max(page, 0), pages - 1)
    lines = [f"<b>Indexed articles</b> ({total}), page {page + 1} of {pages}"]
    for number, article in enumerate(catalog.articles[page * PAGE_SIZE : (page + 1) * PAGE_SIZE], page * PAGE_SIZE + 1):
        details = ", ".join(part for part in (article.source, article.published) if part)
        suffix = f" — {escape(details, quote=False)}" if details else ""
        lines.append(f"{number}. {link(article.title, article.url)}{suffix}")
    buttons = []
    if page > 0:
        buttons.append(InlineKeyboardButton("‹ Previous", callback_data=f"src:{page - 1}"))
    if page < pages - 1:
        buttons.append(InlineKeyboardButton("Next ›", callback_data=f"src:{page + 1}"))
    return "\n".join(lines), InlineKeyboardMarkup([buttons]) if buttons else None


async def sources(update: Update, context: BotContext) -> None:
    if update.effective_message is None:
        return
    text, keyboard = render_page(await load_catalog(context.runtime.services), 0)
    await update.effective_message.reply_text(text, reply_markup=keyboard)


async def page(update: Update, context: BotContext) -> None:
    """A page button: show that page in the same message."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    text, keyboard = render_page(await load_catalog(context.runtime.services), int(query.data.split(":")[1]))
    await query.answer()
    try:
        await query.edit_message_text(text, reply_markup=keyboard)
    except BadRequest as exc:  # pressing the same page twice: Telegram says "message is not modified"
        if "not modified" not in str(exc).lower():
            raise
