"""Answers, briefings and lists as Telegram HTML: everything escaped, long texts split into valid messages."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from retrieval.answer.briefing import Briefing
from retrieval.answer.types import Answer, Citation
from retrieval.ingest.articles import Article
from retrieval.ingest.feeds import Feed

# Telegram's limit on one message's text.
MAX_MESSAGE_CHARS = 4096


def link(title: str, url: str | None) -> str:
    """An escaped title, linked when the url is http(s)."""
    text = escape(title or "Untitled", quote=False)
    if url and url.lower().startswith(("http://", "https://")):
        return f'<a href="{escape(url, quote=True)}">{text}</a>'
    return text


def source_line(n: int, title: str, url: str | None, source: str | None, published: str | None) -> str:
    """`[n] Title — outlet, date` with the title linked."""
    details = ", ".join(escape(part, quote=False) for part in (source, published) if part)
    return f"[{n}] {link(title, url)}" + (f" — {details}" if details else "")


def sources_block(citations: Sequence[Citation]) -> str:
    lines = ["<b>Sources</b>"]
    lines += [source_line(c.n, c.title, c.url, c.source, c.published) for c in citations]
    return "\n".join(lines)


def format_answer(answer: Answer) -> str:
    """The answer with its [n] markers (its short answer in bold, the LLM backend's one-line note), then the sources.

    A refusal has no sources.
    """
    body = escape(answer.text, quote=False)
    if answer.short_answer:
        # The short answer that leads the reply is marked **so** in the text; Telegram shows it bold.
        lead = escape(f"**{answer.short_answer}**", quote=False)
        if body.startswith(lead):
            body = f"<b>{escape(answer.short_answer, quote=False)}</b>{body[len(lead) :]}"
    if answer.note:
        body += f"\n<i>{escape(answer.note, quote=False)}</i>"
    if answer.refused or not answer.citations:
        return body
    return f"{body}\n\n{sources_block(answer.citations)}"


def format_quote(citation: Citation) -> str:
    """The exact passage behind citation [n], and where it is from."""
    where = source_line(citation.n, citation.title, citation.url, citation.source, citation.published)
    return f"<blockquote>{escape(citation.quote, quote=False)}</blockquote>\n{where}"


def format_briefing(briefing: Briefing) -> str:
    """Dated bullets with [n] markers, then the numbered sources."""
    if not briefing.points:
        return escape(briefing.message, quote=False)
    lines = [f"<b>Briefing: {escape(briefing.topic, quote=False)}</b>"]
    for point in briefing.points:
        day = escape(point.date or "undated", quote=False)
        lines.append(f"• <b>{day}</b> {escape(point.text, quote=False)}")
    sources = ["<b>Sources</b>"] + [source_line(s.n, s.title, s.url, s.source, s.published) for s in briefing.sources]
    return "\n".join(lines) + "\n\n" + "\n".join(sources)


def format_feeds(feeds: Sequence[Feed]) -> str:
    """Each feed with its number, last poll, new articles and what went wrong."""
    if not feeds:
        return "No feeds yet. An admin adds one with <code>/feeds add URL</code>."
    lines = ["<b>Feeds</b>"]
    for feed in feeds:
        polled = _when(feed.last_poll_at) if feed.last_poll_at else "not polled yet"
        lines.append(
            f"{feed.id}. {link(feed.name, feed.url)}\n"
            f"   last poll {polled}; {feed.last_new} new; {feed.articles} article{'s' if feed.articles != 1 else ''}"
        )
        if feed.last_error:
            lines.append(f"   ⚠ {escape(feed.last_error, quote=False)}")
        for problem in feed.problems[:3]:
            lines.append(f"   • {escape(problem, quote=False)}")
        if len(feed.problems) > 3:
            lines.append(f"   • and {len(feed.problems) - 3} more entries not read")
    lines.append("\nRemove one with <code>/feeds remove N</code>.")
    return "\n".join(lines)


def _when(stamp: str) -> str:
    """An ISO timestamp as "2026-12-02 08:00 UTC"."""
    return escape(stamp.replace("T", " ")[:16] + " UTC", quote=False)


def format_article_added(article: Article, added: bool) -> str:
    """The reply to a link: the article's title, outlet and date."""
    details = ", ".join(
        escape(part, quote=False) for part in (article.source, article.published and article.published.isoformat()) if part
    )
    what = "Added" if added else "Already had"
    return f"{what} {link(article.title, article.url)}" + (f" ({details})" if details else "") + ". You can ask about it now."


def format_digest(topic: str, since: str, briefing: Briefing) -> str:
    """A scheduled briefing: a line saying what it is, then the briefing."""
    head = f"<b>Daily digest</b>: {escape(topic, quote=False)}, new since {escape(since, quote=False)}"
    return f"{head}\n\n{format_briefing(briefing)}"


def split_message(html: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split on paragraph boundaries (then lines, then words) into pieces of at most `limit` characters.

    The pieces are cut only between paragraphs, lines or words, and the HTML built here keeps every
    tag within one line, so each piece is valid HTML on its own.
    """
    pieces: list[str] = []
    current = ""
    for block in _blocks(html, limit):
        candidate = f"{current}\n\n{block}" if current else block
        if len(candidate) <= limit:
            current = candidate
        else:
            if current:
                pieces.append(current)
            current = block
    if current:
        pieces.append(current)
    return pieces or [""]


def _blocks(html: str, limit: int) -> list[str]:
    """Paragraphs, with any paragraph over `limit` broken into lines, and any such line into words."""
    blocks: list[str] = []
    for paragraph in html.split("\n\n"):
        if len(paragraph) <= limit:
            blocks.append(paragraph)
            continue
        blocks.extend(_pack(paragraph.split("\n"), "\n", limit, words=True))
    return blocks


def _pack(parts: list[str], joiner: str, limit: int, *, words: bool) -> list[str]:
    packed: list[str] = []
    current = ""
    for part in parts:
        if len(part) > limit:
            # A line too long is packed by words; a single word too long is cut (never inside an entity).
            sub = _pack(part.split(" "), " ", limit, words=False) if words else _cut(part, limit)
            if current:
                packed.append(current)
                current = ""
            packed.extend(sub[:-1])
            current = sub[-1]
            continue
        candidate = f"{current}{joiner}{part}" if current else part
        if len(candidate) <= limit:
            current = candidate
        else:
            packed.append(current)
            current = part
    if current:
        packed.append(current)
    return packed


def _cut(word: str, limit: int) -> list[str]:
    out: list[str] = []
    while len(word) > limit:
        cut = limit
        amp = word.rfind("&", 0, cut)
        if amp != -1 and word.find(";", amp) >= cut:
            cut = amp or limit
        out.append(word[:cut])
        word = word[cut:]
    out.append(word)
    return out
