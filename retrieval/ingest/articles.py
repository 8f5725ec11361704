"""Reading article files (text, Markdown, HTML, JSON Lines) into clean `Article`s."""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from retrieval.ingest.text import (
    clean_lines,
    dateline,
    looks_like_headline,
    parse_date,
    split_sentences,
    strip_controls,
    unwrap_lines,
)

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".json")
# Files that hold many articles (one JSON object a line, or an array).
COLLECTION_SUFFIXES = (".jsonl", ".json")


class ArticleError(ValueError):
    """A file, or one record in it, that cannot be read as an article."""

    def __init__(self, path: Path, reason: str, line: int | None = None) -> None:
        self.path, self.reason, self.line = path, reason, line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Article:
    """One cleaned news article, ready to chunk."""

    doc_id: str
    title: str
    text: str
    path: str
    source: str | None = None
    url: str | None = None
    published: date | None = None
    content_hash: str = field(default="")

    @classmethod
    def build(
        cls,
        *,
        title: str,
        text: str,
        path: Path,
        key: str,
        source: str | None = None,
        url: str | None = None,
        published: date | None = None,
    ) -> Article:
        """Make an article with its stable id (from `key`) and content hash."""
        source = source or domain(url)
        digest = hashlib.sha256(
            "\x1f".join([title, text, source or "", url or "", published.isoformat() if published else ""]).encode()
        ).hexdigest()
        doc_id = doc_id_of(key)
        return cls(doc_id, title, text, str(path), source, url, published, digest[:32])


def doc_id_of(key: str) -> str:
    """The stable id of the article found under `key` (its own id, else its URL, else its path)."""
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def domain(url: str | None) -> str | None:
    """The host of `url` without "www.": the outlet, when an article names none."""
    if not url:
        return None
    host = urlparse(url).netloc.lower()
    return host[4:] if host.startswith("www.") else host or None


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """Every supported file under `paths` (recursively), in a stable order; hidden files skipped."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if (
                    child.is_file()
                    and child.suffix.lower() in SUPPORTED_SUFFIXES
                    and not any(part.startswith(".") for part in relative)
                ):
                    yield child
        else:
            yield path


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArticleError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise ArticleError(path, "file is empty")
    for bom, encoding in _BOMS:  # a byte-order mark says which encoding; NUL bytes are normal in UTF-16
        if raw.startswith(bom):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ArticleError(path, f"not valid {encoding.upper()} text (byte {exc.start})") from exc
            if not text.strip("\ufeff \t\r\n"):
                raise ArticleError(path, "file is empty")
            return text.lstrip("\ufeff")
    if b"\x00" in raw[:4096]:
        raise ArticleError(path, "binary file, not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(
            path, f"not valid UTF-8 text (byte {exc.start}); save it as UTF-8 (it may be Latin-1 or Windows-1252)"
        ) from exc


# UTF-32's marks first: UTF-32-LE's begins with UTF-16-LE's.
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip().lower()] = value.strip().strip("\"'")
    return meta, text[match.end() :]


def _strip_markdown(line: str) -> str:
    line = re.sub(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+)", "", line)
    line = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", line)
    line = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", line)
    return re.sub(r"(\*\*|__|`)", "", line)


def article_from_text(
    body: str,
    *,
    path: Path,
    key: str,
    title: str | None = None,
    source: str | None = None,
    url: str | None = None,
    published: date | None = None,
    markdown: bool = False,
    unwrap: bool = True,
) -> Article:
    """Clean a plain-text article; find its title and dateline when metadata lacks them.

    Control characters go; with `unwrap` (text typed or saved by an editor, not extracted from
    HTML) the lines of a hard-wrapped paragraph become one line.
    """
    raw_lines = strip_controls(body).split("\n")
    if unwrap:
        raw_lines = unwrap_lines(raw_lines)
    if markdown:
        raw_lines = [_strip_markdown(line) for line in raw_lines]
    lines = clean_lines(raw_lines)
    kept: list[str] = []
    for index, line in enumerate(lines):
        # A dateline near the top is metadata, not text.
        if index < 8 and (found := dateline(line)) is not None:
            published = published or found
            continue
        kept.append(line)
    if title is None:
        title, kept = _take_title(kept)
    else:
        title = " ".join(strip_controls(title).split())
        kept = [line for line in kept if line.strip().lower() != title.strip().lower()]
    if len(title) > MAX_TITLE_CHARS:  # a title is shown with every answer: keep it a title
        title = title[: MAX_TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    text = "\n\n".join(kept).strip()
    if not text:
        raise ArticleError(path, "no article text left after cleaning")
    return Article.build(title=title, text=text, path=path, key=key, source=source, url=url, published=published)


def _take_title(lines: list[str]) -> tuple[str, list[str]]:
    """The first headline-like line is the title; short section labels above it are dropped."""
    for index, line in enumerate(lines[:6]):
        if looks_like_headline(line):
            above = lines[:index]
            if all(len(label.split()) < 4 for label in above):
                return line, lines[index + 1 :]
            break
    if not lines:
        return "", lines
    first = lines[0]
    if len(first) <= 120:
        return first, lines[1:] if len(lines) > 1 else lines
    sentence = split_sentences(first)[0]
    return (sentence if len(sentence) <= 120 else sentence[:117].rsplit(" ", 1)[0] + "…"), lines


def load_text_file(path: Path) -> Article:
    text = _read_text(path)
    meta, body = _front_matter(text)
    return article_from_text(
        body,
        path=path,
        key=meta.get("id") or meta.get("url") or str(path.resolve()),
        title=meta.get("title") or None,
        source=meta.get("source") or meta.get("outlet") or None,
        url=meta.get("url") or meta.get("link") or None,
        published=parse_date(meta.get("published") or meta.get("date")),
        markdown=path.suffix.lower() in (".md", ".markdown"),
    )


def load_html_file(path: Path) -> Article:
    return article_from_html(_read_text(path), path=path)


def article_from_html(
    html: str | bytes,
    *,
    path: Path,
    key: str | None = None,
    title: str | None = None,
    url: str | None = None,
    published: date | None = None,
    source: str | None = None,
) -> Article:
    """The main text and metadata of a web page (trafilatura); `title`, `url`, `published` and `source`
    stand in for what the page lacks. The id is made from `key`, else the page's URL, else `path`."""
    import trafilatura

    extracted = trafilatura.bare_extraction(
        html, output_format="python", with_metadata=True, include_comments=False, include_tables=False
    )
    if extracted is None:
        raise ArticleError(path, "no article text found in the HTML")
    data = extracted.as_dict() if hasattr(extracted, "as_dict") else dict(extracted)
    body = data.get("text") or ""
    if not body.strip():
        raise ArticleError(path, "no article text found in the HTML")
    page_url = data.get("url") or None
    if page_url is not None and not page_url.startswith(("http://", "https://")):
        page_url = None  # a relative canonical link says nothing
    return article_from_text(
        body,
        path=path,
        key=key or page_url or str(path.resolve()),
        title=data.get("title") or title or None,
        source=data.get("sitename") or source or None,
        url=page_url or url,
        published=parse_date(data.get("date")) or published,
        unwrap=False,  # trafilatura gives one paragraph a line already
    )


_FIELDS = {
    "title": ("title", "headline"),
    "text": ("text", "body", "content"),
    "published": ("published", "publish_date", "published_at", "date"),
    "url": ("url", "link"),
    "source": ("source", "outlet", "publisher"),
    "id": ("id",),
}


def _field(record: dict[str, Any], name: str) -> Any:
    for alias in _FIELDS[name]:
        value = record.get(alias)
        if value not in (None, ""):
            return value
    return None


def article_from_record(record: Any, *, path: Path, line: int | None) -> Article:
    """One JSON object with title/text (or their aliases) as an article."""
    if not isinstance(record, dict):
        raise ArticleError(path, "expected a JSON object", line)
    text = _field(record, "text")
    if not isinstance(text, str) or not text.strip():
        raise ArticleError(path, "record has no text (fields text, body or content)", line)
    title = _field(record, "title")
    url = _field(record, "url")
    record_id = _field(record, "id")
    source = _field(record, "source")
    if isinstance(source, dict):  # e.g. {"name": "Reuters"}
        source = source.get("name")
    key = str(record_id) if record_id is not None else url or f"{path.resolve()}#{title or text[:200]}"
    try:
        return article_from_text(
            text,
            path=path,
            key=key,
            title=str(title).strip() if title else None,
            source=str(source) if source else None,
            url=str(url) if url else None,
            published=parse_date(str(_field(record, "published") or "")),
        )
    except ArticleError as exc:
        raise ArticleError(path, exc.reason, line) from exc


def load_json_file(path: Path) -> tuple[list[Article], list[ArticleError]]:
    """Articles from JSON Lines (or a JSON array/object); bad lines are returned as errors."""
    text = _read_text(path)
    articles: list[Article] = []
    errors: list[ArticleError] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArticleError(path, f"malformed JSON ({exc.msg})", exc.lineno) from exc
        records = data if isinstance(data, list) else [data]
        for index, record in enumerate(records, start=1):
            try:
                articles.append(article_from_record(record, path=path, line=None))
            except ArticleError as exc:
                errors.append(ArticleError(path, f"item {index}: {exc.reason}"))
        return articles, errors
    for number, line in enumerate(text.split("\n"), start=1):  # only \n ends a JSON line (not U+2028)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(ArticleError(path, f"malformed JSON line ({exc.msg})", number))
            continue
        try:
            articles.append(article_from_record(record, path=path, line=number))
        except ArticleError as exc:
            errors.append(exc)
    return articles, errors


def load_file(path: Path) -> tuple[list[Article], list[ArticleError]]:
    """All articles in one file, and the records that could not be read. Raises for a bad file."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise ArticleError(path, "no such file or directory")
    if suffix not in SUPPORTED_SUFFIXES:
        raise ArticleError(path, f"unsupported file type {suffix or '(none)'}; use {', '.join(SUPPORTED_SUFFIXES)}")
    if suffix in COLLECTION_SUFFIXES:
        return load_json_file(path)
    if suffix in (".html", ".htm"):
        return [load_html_file(path)], []
    return [load_text_file(path)], []
