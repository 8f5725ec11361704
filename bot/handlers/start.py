"""/start and /help: what the bot is and how to use it."""

from __future__ import annotations

from telegram import Update

from bot.runtime import BotContext

START = (
    "Hi! I answer questions about a collection of news articles, quoting them and citing my sources.\n\n"
    "In a private chat just send me a question. In a group, use <code>/ask QUESTION</code>, mention me, "
    "or reply to one of my answers to follow up.\n\n"
    "Send /help to see everything I can do."
)

HELP = (
    "<b>Asking</b>\n"
    "/ask QUESTION: answer from the articles, with numbered sources\n"
    "Reply to an answer to ask a follow-up; /reset forgets the conversation\n"
    "Tap a <i>Quote</i> button under an answer to see the exact passage\n\n"
    "<b>Briefings</b>\n"
    "/brief TOPIC [since YYYY-MM-DD | 7d]: a few dated, cited bullet points\n"
    "/digest TOPIC at HH:MM: that briefing, here, every day (group admins); /digest lists them\n\n"
    "<b>About the articles</b>\n"
    "/sources: the indexed articles\n"
    "/about: how many articles, their dates, when they were last reloaded\n\n"
    "<b>Admins</b>\n"
    "/reload: rescan the articles directory\n"
    "/stats: questions served, refusals, latency\n"
    "/feeds: the RSS and Atom feeds polled; /feeds add URL, /feeds remove N\n"
    "/add URL, or send a link: add that article\n"
    "Send a .txt, .md, .html, .jsonl or .json file to add it"
)


async def start(update: Update, context: BotContext) -> None:
    if update.effective_message is not None:
        await update.effective_message.reply_text(START)


async def help(update: Update, context: BotContext) -> None:  # noqa: A001 - named after the command
    if update.effective_message is not None:
        await update.effective_message.reply_text(HELP)
