"""Cleaning of article text, sentence splitting and date parsing: general rules for web news."""

from __future__ import annotations

import itertools
import re
from datetime import date

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS = [
    re.compile(r"(?P<year>\d{4})[-/.](?P<mon>\d{1,2})[-/.](?P<day>\d{1,2})"),
    re.compile(r"(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH + r",?\s+(?P<year>\d{4})", re.I),
    re.compile(_MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})", re.I),
]
# A line that is nothing but a date, with an optional weekday or "Published"/"Updated" label.
_DATELINE = re.compile(
    r"^\s*(?:(?:published|updated|posted)(?:\s+on)?:?\s*)?"
    r"(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day,?\s+)?"
    r"(?P<date>[\w ,./-]{6,30}?)\s*(?:\d{1,2}:\d{2}\s*(?:am|pm)?\s*(?:[A-Z]{2,4})?)?\s*$",
    re.I,
)


def parse_date(text: str | None) -> date | None:
    """The first calendar date in `text` (ISO, "11 July, 2016", "July 11, 2016", "2023/01/05")."""
    if not text:
        return None
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            groups = match.groupdict()
            month = int(groups["mon"]) if groups.get("mon") else _MONTHS[groups["month"].lower()]
            try:
                return date(int(groups["year"]), month, int(groups["day"]))
            except ValueError:
                continue
    return None


def dateline(line: str) -> date | None:
    """The date of a line that is only a date (a dateline), else None."""
    match = _DATELINE.match(line)
    if not match or not any(ch.isdigit() for ch in line):
        return None
    return parse_date(match.group("date"))


# Page furniture: lines that web pages wrap around articles. Each rule is a kind of line,
# not a particular site's sentence.
_FURNITURE = [
    re.compile(p, re.I)
    for p in [
        r"^this (story|article|page) is (over|more than) \d+ \w+ old\.?$",
        r"^\d+\s*(min|mins|minute|minutes)\.? read$",
        r"^(related|read more|read also|see also|more on this|recommended|most read|trending)\s*[:|»>-].*",
        r"^(related (articles|stories|coverage|content)|most (read|popular)|more stories|read more|advertisement|ad"
        r"|sponsored( content)?|continue reading|skip to (main )?content|show more|load more)\.?$",
        r"^(do you|did you) (like|enjoy|find) this (article|story)\b.*\??$",
        r"^\d+\s+comments?(\(s\))?\.?$",
        r"^\d+\s*comment\(s\)$",
        r"^comment policy\b.*",
        r"^(follow|like) .{1,60} on (twitter|x|facebook|instagram|linkedin|threads|tiktok)\b.*",
        r"^(share|share this|share on|tweet|email|print|copy link|save)( (article|story|this|on \w+))?\s*$",
        r"^(share|sharing) (this|on) .{0,40}$",
        r"^(sign up|subscribe)\b.{0,120}(newsletter|inbox|email|updates|subscribe|free)\b.*",
        r"^(get|receive) (our|the) .{0,60}newsletter.*",
        r"^.{0,120}\bnewsletter\b.{0,160}$",  # short lines about newsletters are sign-up prompts
        r"^.{0,200}\b(privacy (policy|notice)|terms (of|and) (use|service|conditions)|tick (here|the box)|"
        r"(processing|use) of your (personal )?(data|information)|details you have shared)\b.*",
        r"^.{0,80}\b(this ad|the ad|ad (froze|was|is))\b.{0,160}$",
        r"^video (player|content)\b.{0,200}(load|loading|loaded)\b.*",
        r"^(follow|watch) (every|all|live|our|us|the latest)\b.{0,80}$",
        r"^(contributing|additional reporting|reporting by|editing by|from [\w .]{0,40} and wire reports)\b.{0,100}$",
        r"^[A-Z][\w .,&'-]{0,50}\s[—–]$",  # a bare dateline/byline prefix: "CNN —", "New York CNN Business —"
        r"^(click|tap) here\b.*",
        r"^(all rights reserved|©|copyright\s).*",
        r"^(photo|image|video|picture|file photo|credit)s?\s*:.*",
        r"^(we use cookies|this (site|website) uses cookies)\b.*",
        r"^(listen to (this|the) (article|story)|audio)\b.{0,40}$",
        r"^(leave a comment|comments are closed|add comment|post a comment)\.?$",
        r"^(log ?in|sign ?in|register|menu|search|home|close)$",
        r"^[\W_]*$",
    ]
]
# A photo caption ends with a credit in brackets: "[Getty]", "[Ahmad al-Rubaye/AFP]",
# "(Photo by Carolyn Kaster/Reuters)".
_CAPTION_CREDIT = re.compile(
    r"[\[(]\s*(?:(?:photo|image|imagen|foto|picture|credit|file)\b[^\])]{0,80}"
    r"|[^\])]{0,60}\b(?:getty|afp|reuters|ap|epa|anadolu|xinhua|shutterstock|file|photo)(?: images)?\s*)"
    r"[\])]\s*$",
    re.I,
)


def is_furniture(line: str) -> bool:
    """True for a line a reader would not count as part of the article."""
    stripped = line.strip()
    if len(stripped) > 300:  # furniture is short; a long line is a paragraph, whatever it mentions
        return False
    return any(rule.match(stripped) for rule in _FURNITURE) or bool(_CAPTION_CREDIT.search(stripped))


def _norm(line: str) -> str:
    return re.sub(r"\W+", " ", line).strip().lower()


def _is_menu_item(line: str) -> bool:
    return len(line.split()) <= 4 and not line.rstrip().endswith((".", "!", "?", '"', "”", ":"))


def clean_lines(lines: list[str]) -> list[str]:
    """Drop furniture, captions, menus and lines that repeat an earlier line (repeated titles, captions).

    A menu is a run of five or more consecutive very short lines with no sentence punctuation
    (a list of sections, states or share buttons); a single short line (a subheading) stays.
    """
    seen: set[str] = set()
    kept: list[str] = []
    for raw in lines:
        line = re.sub(r"\s+", " ", raw).strip()
        if not line or is_furniture(line):
            continue
        key = _norm(line)
        if key in seen:
            continue
        seen.add(key)
        kept.append(line)
    return _drop_menus(kept)


def _drop_menus(lines: list[str], run: int = 5) -> list[str]:
    kept: list[str] = []
    start = 0
    while start < len(lines):
        end = start
        while end < len(lines) and _is_menu_item(lines[end]):
            end += 1
        if end - start >= run:
            start = end
            continue
        kept.extend(lines[start : max(end, start + 1)])
        start = max(end, start + 1)
    return kept


def looks_like_headline(line: str) -> bool:
    """A short line of four words or more that does not end like a paragraph."""
    words = line.split()
    return 4 <= len(words) <= 25 and len(line) <= 200 and not line.rstrip().endswith((".", ":", ";", ","))


_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "gen",
    "lt",
    "col",
    "maj",
    "sgt",
    "capt",
    "cmdr",
    "adm",
    "gov",
    "sen",
    "rep",
    "st",
    "jr",
    "sr",
    "inc",
    "ltd",
    "co",
    "corp",
    "no",
    "vs",
    "etc",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "u.s",
    "u.k",
    "u.n",
    "e.g",
    "i.e",
    "a.m",
    "p.m",
    "approx",
    "est",
    "dept",
    "fig",
}
_SENTENCE_END = re.compile(r"([.!?…]+[\"”’')\]]*)\s+(?=[\"“‘'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, keeping abbreviations ("Lt. Gen.", "U.S.") and numbers intact."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        start = 0
        for match in _SENTENCE_END.finditer(paragraph):
            end = match.end(1)
            before = paragraph[start:end].rstrip(".!?…\"”’')]")
            last_word = before.rsplit(None, 1)[-1].lower() if before.split() else ""
            if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
                continue
            sentences.append(paragraph[start:end].strip())
            start = match.end()
        tail = paragraph[start:].strip()
        if tail:
            sentences.append(tail)
    return sentences


# -- raw text: control characters and hard-wrapped lines ------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # terminal colour and cursor codes
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 controls except tab and newline


def strip_controls(text: str) -> str:
    """Text without terminal escape codes and control characters (form feeds and the like also break lines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    return _CONTROL.sub("", _ANSI.sub("", text))


# Lines that stand alone in Markdown and plain text: headings, list items, quotes, tables, rules.
_STANDALONE = re.compile(r"^\s{0,3}(#{1,6}\s|[-*+]\s|\d+[.)]\s|>|\||(-{3,}|\*{3,}|_{3,})\s*$)")
_ENDS_PARAGRAPH = re.compile(r"[.!?…:;\"”’')\]]\s*$")


def unwrap_lines(lines: list[str]) -> list[str]:
    """Join the lines of a hard-wrapped paragraph into one; blank lines (paragraph breaks) are kept.

    A line runs on into the next when it does not end like a sentence, the next is not a heading,
    list item, quote or table row, and either the next starts in lower case or the paragraph is
    wrapped: its lines are at most 200 characters and this one is at least 60 % of the longest.
    So "... drew\\n12,345 visitors this\\nsummer." is one sentence again, while a short headline
    above its text and files with one long paragraph a line stay as they are.
    """
    out: list[str] = []
    for blank, run in itertools.groupby(lines, key=lambda line: not line.strip()):
        block = [line.rstrip() for line in run]
        if blank:
            out.extend(block)
            continue
        width = max(len(line) for line in block)
        current = previous = block[0]
        for line in block[1:]:
            if _runs_on(previous, line, width):
                current = f"{current} {line.strip()}"
            else:
                out.append(current)
                current = line
            previous = line
        out.append(current)
    return out


def _runs_on(line: str, following: str, width: int) -> bool:
    if _ENDS_PARAGRAPH.search(line) or _STANDALONE.match(following) or re.match(r"^\s{0,3}#{1,6}\s", line):
        return False
    return following.lstrip()[:1].islower() or (width <= 200 and len(line) >= 0.6 * width)
