"""/add URL, or a link sent in a private chat (admins): fetch the page, extract its article, index it."""

from __future__ import annotations

import logging
import re
from html import escape

from telegram import Update
from telegram.constants import ChatAction

from bot.access import require_admin
from bot.formatting import format_article_added
from bot.runtime import BotContext
from retrieval.index.store import StoreError
from retrieval.ingest.articles import ArticleError
from retrieval.ingest.fetch import FetchError

logger = logging.getLogger(__name__)

# A private message that is only a link adds it; a question that quotes a link is still a question.
LINK_ONLY = re.compile(r"^\s*https?://\S+\s*$", re.I)
USAGE = "Send me a link to a news article: <code>/add https://…</code>"


async def add(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None or not await require_admin(update, context):
        return
    args = context.args or []
    if len(args) != 1:
        await message.reply_text(USAGE)
        return
    await _add(update, context, args[0])


async def link_message(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None or not message.text or not await require_admin(update, context):
        return
    await _add(update, context, message.text.strip())


async def _add(update: Update, context: BotContext, url: str) -> None:
    message = update.effective_message
    assert message is not None
    user_id = update.effective_user.id if update.effective_user else None
    logger.info("link %s sent by user id %s", url[:200], user_id)
    await message.reply_chat_action(ChatAction.TYPING)
    try:
        result = await context.runtime.add_link(url)
    except (FetchError, ArticleError) as exc:
        logger.info("link %s not added: %s", url[:200], exc.reason)
        await message.reply_text(f"I couldn't add that link: {escape(exc.reason, quote=False)}")
        return
    except (StoreError, OSError) as exc:
        logger.error("link %s could not be indexed", url[:200], exc_info=exc)
        await message.reply_text("I fetched that page but couldn't index it; please try again later.")
        return
    report = result.report
    if report.skipped:
        reasons = "; ".join(escape(e.reason, quote=False) for e in report.skipped)
        await message.reply_text(f"I couldn't add that link: {reasons}")
        return
    await message.reply_text(format_article_added(result.article, bool(report.added or report.updated)))
