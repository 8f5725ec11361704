"""Articles from the web: RSS and Atom feeds polled on a schedule, and single links an admin sends.

Feeds are polled side by side (`fetch_concurrency`), each host getting `fetch_per_host` requests at once
with its pause between two. Each new entry's page is fetched (`retrieval/ingest/fetch.py`) and its text extracted as `.html`
files are; the article is written as a JSON record under one folder (`data_dir/fetched/`, named
after its link), which the ordinary ingest then reads: the stable id comes from the link, the content
hash from the text, so an unchanged page embeds nothing and an edited one replaces its article. The
feeds, and what is known of each entry (its fingerprint in the feed, the page's ETag and
Last-Modified), are kept in SQLite (`data_dir/newsbot.sqlite3`), so they survive a restart.

An entry is fetched when it is new, and again only when the feed shows it changed (its date, title
or summary); an entry that failed is tried again at the next polls, up to `_ATTEMPTS` times. A
feed answering 304 to the conditional request costs that one request. Entries that leave the feed
keep their articles; with a retention of N days, articles older than that are removed.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from retrieval.ingest.articles import Article, ArticleError, article_from_html, doc_id_of
from retrieval.ingest.database import Database
from retrieval.ingest.fetch import Fetched, Fetcher, FetchError, check_url

logger = logging.getLogger(__name__)

FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
_PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")
_ATTEMPTS = 3  # tries of an entry whose page failed, before it waits for the feed to change it
_PROBLEMS_KEPT = 20  # per feed, from its last poll
_PENDING_UPSERT = " ON CONFLICT (key) DO UPDATE SET action = excluded.action, since = excluded.since"

# `pending` (retrieval/ingest/database.py): what the index still has to do, written with the change to the
# articles and cleared when the index did it (`Collector.settle`), so a crash between the two loses nothing:
# "ingest" an article written, "remove" the article of an entry that expired. Its rows and the article records
# are in the shared store, so any replica finishes what another left.


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Feed:
    """A subscribed feed and how its last poll went."""

    id: int
    url: str
    title: str | None
    added_at: str
    last_poll_at: str | None
    last_new: int  # articles new or changed at the last poll
    last_error: str | None  # why the last poll failed as a whole
    problems: list[str]  # entries the last poll could not read, with the reason
    articles: int  # articles from this feed in the collection

    @property
    def name(self) -> str:
        return self.title or self.url


@dataclass(frozen=True)
class Entry:
    """One item of a feed."""

    link: str
    title: str | None
    published: date | None
    fingerprint: str


@dataclass
class FeedPoll:
    """What polling one feed did."""

    feed: Feed
    not_modified: bool = False
    entries: int = 0
    new: list[Path] = field(default_factory=list)  # article files written (new or changed pages)
    error: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class PollResult:
    """What one poll of the feeds did: the files to ingest, and whether retention removed any."""

    feeds: list[FeedPoll] = field(default_factory=list)
    changed: list[Path] = field(default_factory=list)  # to ingest (with what an interrupted ingest left)
    expired: list[Path] = field(default_factory=list)  # files retention removed at this poll
    expired_ids: list[str] = field(default_factory=list)  # articles to remove from the index (and left before)
    requests: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        failed = sum(1 for f in self.feeds if f.error)
        unchanged = sum(1 for f in self.feeds if f.not_modified)
        problems = sum(len(f.problems) for f in self.feeds)
        parts = [f"{len(self.feeds)} feeds polled", f"{len(self.changed)} new or changed articles"]
        if unchanged:
            parts.append(f"{unchanged} unchanged (304)")
        if failed:
            parts.append(f"{failed} failed")
        if problems:
            parts.append(f"{problems} entries not read")
        if self.expired:
            parts.append(f"{len(self.expired)} expired")
        return ", ".join(parts) + f" ({self.requests} requests in {self.seconds:.1f}s)"


class FeedParseError(ValueError):
    """A response that is not a feed newsbot can read."""


def parse_feed(content: bytes, url: str, content_type: str = "") -> tuple[str | None, list[Entry], list[str]]:
    """(feed title, entries, problems) of an RSS or Atom document. Raises FeedParseError when it is not one.

    XML that is malformed part of the way is read as far as feedparser can, with the fault among the problems.
    """
    import feedparser

    # Bytes in, so feedparser parses them and never fetches anything itself.
    parsed = feedparser.parse(content, response_headers={"content-type": content_type or "", "content-location": url})
    fault = parsed.get("bozo_exception")
    if not parsed.get("version"):
        kind = content_type.split(";")[0].strip() or "an unknown type"
        if kind.startswith("text/html") or content.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
            raise FeedParseError("not an RSS or Atom feed (the server sent an HTML page)")
        raise FeedParseError(f"not an RSS or Atom feed ({kind}{f': {fault}' if fault else ''})")
    problems: list[str] = []
    if parsed.get("bozo") and fault is not None:
        if not parsed.entries:
            raise FeedParseError(f"malformed feed ({fault})")
        problems.append(f"malformed XML ({fault}); read the {len(parsed.entries)} entries before it")
    entries: list[Entry] = []
    for index, item in enumerate(parsed.entries, start=1):
        title = (item.get("title") or "").strip() or None
        link = (item.get("link") or "").strip()
        if not link:
            problems.append(f"entry {index} ({title or 'untitled'}) has no link")
            continue
        stamp = item.get("published_parsed") or item.get("updated_parsed")
        published = datetime.fromtimestamp(calendar.timegm(stamp), UTC).date() if stamp else None
        changed = item.get("updated") or item.get("published") or ""
        fingerprint = hashlib.sha1("\x1f".join([changed, title or "", item.get("summary") or ""]).encode()).hexdigest()[:16]
        entries.append(Entry(link, title, published, fingerprint))
    if fault is not None and parsed.get("bozo") and not entries:
        raise FeedParseError(f"malformed feed ({fault})")
    return (parsed.feed.get("title") or "").strip() or None, entries, problems


def article_file(folder: Path, link: str) -> Path:
    """Where the article of `link` is kept: a name made from the link, never from the page."""
    return folder / f"{hashlib.sha1(link.encode()).hexdigest()[:16]}.json"


def page_article(fetched: Fetched, link: str, path: Path, entry: Entry | None = None) -> Article:
    """The article on a fetched page; the feed entry's title, link and date stand in for what the page lacks."""
    kind = fetched.content_type.split(";")[0].strip().lower()
    if kind not in _PAGE_TYPES:
        raise ArticleError(path, f"not a web page ({kind})")
    head = fetched.content[:16]
    if head.startswith(b"%PDF") or b"\x00" in fetched.content[:1024] or head.startswith(b"\x89PNG"):
        raise ArticleError(path, "not a web page (binary content)")
    return article_from_html(
        fetched.content,
        path=path,
        key=link,
        title=entry.title if entry else None,
        url=fetched.url or link,
        published=entry.published if entry else None,
    )


def article_record(article: Article, key: str) -> str:
    """The JSON record the loaders read of `article`, its id made from `key` (the link it was found under)."""
    record = {
        "id": key,
        "title": article.title,
        "text": article.text,
        "url": article.url,
        "published": article.published.isoformat() if article.published else None,
        "source": article.source,
    }
    return json.dumps(record, ensure_ascii=False, indent=1) + "\n"


def write_file(path: Path, data: str) -> bool:
    """Write `data` to `path` whole (a temporary file renamed over it); False when it says exactly that already."""
    try:
        if path.read_text(encoding="utf-8") == data:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(data, encoding="utf-8")
    temporary.replace(path)
    return True


class Collector:
    """Subscribes feeds, polls them and fetches links, writing article files for the ingest to read."""

    def __init__(self, database: Database, fetcher: Fetcher, folder: Path, *, retention_days: int = 0) -> None:
        self.database = database
        self.fetcher = fetcher
        self.folder = folder
        self.retention_days = retention_days

    # -- feeds ------------------------------------------------------------------------------

    def add_feed(self, url: str, added_by: str | None = None) -> Feed:
        """Subscribe to `url` (checked, not fetched); the same URL twice is one feed."""
        url = str(check_url(url.strip(), self.fetcher.policy.allowed_hosts))
        with self.database.connect() as db:
            db.execute(
                "INSERT INTO feeds (url, added_at, added_by) VALUES (?, ?, ?) ON CONFLICT (url) DO NOTHING",
                (url, _now(), added_by),
            )
            row = db.execute("SELECT id FROM feeds WHERE url = ?", (url,)).fetchone()
        feed = self.feed(int(row["id"]))
        assert feed is not None
        return feed

    def remove_feed(self, feed_id: int) -> Feed | None:
        """Unsubscribe; the feed's articles stay in the collection (retention ages them out)."""
        feed = self.feed(feed_id)
        if feed is None:
            return None
        with self.database.connect() as db:
            db.execute("UPDATE entries SET feed_id = NULL WHERE feed_id = ?", (feed_id,))
            db.execute("DELETE FROM feeds WHERE id = ?", (feed_id,))
        return feed

    def feeds(self) -> list[Feed]:
        with self.database.connect() as db:
            rows = db.execute(
                "SELECT feeds.*, (SELECT COUNT(*) FROM entries WHERE entries.feed_id = feeds.id AND status = 'ok') AS articles"
                " FROM feeds ORDER BY id"
            ).fetchall()
        return [_feed(row) for row in rows]

    def feed(self, feed_id: int) -> Feed | None:
        return next((feed for feed in self.feeds() if feed.id == feed_id), None)

    def poll(self, feed_id: int | None = None, *, feed_ids: list[int] | None = None) -> PollResult:
        """Poll every feed (or one, or those of `feed_ids`: the ones whose leases this replica holds): fetch
        new and changed entries, write their articles, apply retention."""
        started = time.perf_counter()
        requests = self.fetcher.requests
        result = PollResult()
        wanted = set(feed_ids) if feed_ids is not None else None if feed_id is None else {feed_id}
        chosen = [feed for feed in self.feeds() if wanted is None or feed.id in wanted]
        # Feeds side by side (`fetch_concurrency` at once); the fetcher keeps each host to `fetch_per_host`
        # requests at once and its pause between two, however many feeds it serves.
        workers = max(1, min(self.fetcher.policy.concurrency, len(chosen)))
        with ThreadPoolExecutor(workers, thread_name_prefix="poll") as pool:
            for outcome in pool.map(self._poll_feed, chosen):
                result.feeds.append(outcome)
                result.changed += outcome.new
        result.expired = self._expire()
        left = self.pending()
        result.changed = list(dict.fromkeys([*result.changed, *left[0]]))
        result.expired_ids = left[1]
        result.requests = self.fetcher.requests - requests
        result.seconds = time.perf_counter() - started
        logger.info("feeds: %s", result.summary())
        return result

    def _poll_feed(self, feed: Feed) -> FeedPoll:
        outcome = FeedPoll(feed)
        with self.database.connect() as db:
            row = db.execute("SELECT etag, last_modified FROM feeds WHERE id = ?", (feed.id,)).fetchone()
        title: str | None = None
        fetched: Fetched | None = None
        try:
            fetched = self.fetcher.get(feed.url, etag=row["etag"], last_modified=row["last_modified"], accept=FEED_ACCEPT)
            if fetched.not_modified:
                outcome.not_modified = True
            else:
                title, entries, outcome.problems = parse_feed(fetched.content, fetched.url, fetched.content_type)
                outcome.entries = len(entries)
                for entry in entries:
                    self._entry(feed, entry, outcome)
        except (FetchError, FeedParseError) as exc:
            outcome.error = exc.reason if isinstance(exc, FetchError) else str(exc)
            logger.warning("feed %s: %s", feed.url, outcome.error)
        except Exception as exc:  # a parser's bug must cost this feed's poll, not every feed's
            logger.error("feed %s: poll failed", feed.url, exc_info=True)
            outcome.error = f"could not be read ({type(exc).__name__}: {exc})"
        for problem in outcome.problems:
            logger.warning("feed %s: %s", feed.url, problem)
        with self.database.connect() as db:
            values: dict[str, Any] = {
                "last_poll_at": _now(),
                "last_new": len(outcome.new),
                "last_error": outcome.error,
                "problems": json.dumps(outcome.problems[:_PROBLEMS_KEPT]),
            }
            if fetched is not None and outcome.error is None and not outcome.not_modified:
                values.update(title=title or feed.title, etag=fetched.etag, last_modified=fetched.last_modified)
            if outcome.not_modified:  # nothing new to say about the entries: keep the last poll's problems
                del values["problems"]
                values["last_new"] = 0
            assignments = ", ".join(f"{key} = :{key}" for key in values)
            db.execute(f"UPDATE feeds SET {assignments} WHERE id = :id", {**values, "id": feed.id})
        return outcome

    def _entry(self, feed: Feed, entry: Entry, outcome: FeedPoll) -> None:
        """Fetch an entry's page if it is new, changed in the feed, or failed before (a few times at most)."""
        with self.database.connect() as db:
            known = db.execute("SELECT * FROM entries WHERE link = ?", (entry.link,)).fetchone()
        if known is not None:
            if known["status"] == "expired":
                return
            same = known["fingerprint"] == entry.fingerprint
            if same and (known["status"] == "ok" or known["attempts"] >= _ATTEMPTS):
                if known["feed_id"] is None:  # an article a link added first now comes from this feed
                    with self.database.connect() as db:
                        db.execute("UPDATE entries SET feed_id = ?, kind = 'feed' WHERE link = ?", (feed.id, entry.link))
                return
        if self.retention_days and entry.published and entry.published < _cutoff(self.retention_days):
            return  # it would only be removed again
        path = article_file(self.folder, entry.link)
        attempts = (known["attempts"] if known is not None and known["fingerprint"] == entry.fingerprint else 0) + 1
        conditional = known is not None and known["status"] == "ok" and path.exists()
        try:
            fetched = self.fetcher.get(
                entry.link,
                etag=known["etag"] if conditional else None,
                last_modified=known["last_modified"] if conditional else None,
                accept=PAGE_ACCEPT,
            )
            if not fetched.not_modified:
                article = page_article(fetched, entry.link, path, entry)
                if self._keep(article, path, entry.link):
                    outcome.new.append(path)
                published = article.published
            else:
                published = date.fromisoformat(known["published"]) if known["published"] else entry.published
        except Exception as exc:
            if isinstance(exc, FetchError | ArticleError):
                reason = exc.reason
            else:  # an extractor's bug must cost one entry, not the feed
                logger.warning("entry %s of feed %s could not be read", entry.link, feed.url, exc_info=True)
                reason = f"could not be read ({type(exc).__name__}: {exc})"
            outcome.problems.append(f"{entry.title or entry.link}: {reason}")
            self._record(entry.link, feed.id, entry.fingerprint, "failed", error=reason, attempts=attempts)
            return
        self._record(
            entry.link,
            feed.id,
            entry.fingerprint,
            "ok",
            file=str(path),
            published=published,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
        )

    def _record(
        self,
        link: str,
        feed_id: int | None,
        fingerprint: str | None,
        status: str,
        *,
        file: str | None = None,
        published: date | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        error: str | None = None,
        attempts: int = 0,
    ) -> None:
        kind = "feed" if feed_id is not None else "link"
        with self.database.connect() as db:
            if kind == "link":  # a link an admin sends does not take an article away from its feed
                row = db.execute("SELECT feed_id, kind FROM entries WHERE link = ?", (link,)).fetchone()
                if row is not None:
                    feed_id, kind = row["feed_id"], row["kind"]
            db.execute(
                "INSERT INTO entries"
                " (link, feed_id, kind, fingerprint, file, published, fetched_at, etag, last_modified, status, error, attempts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (link) DO UPDATE SET"
                " feed_id = excluded.feed_id, kind = excluded.kind, fingerprint = excluded.fingerprint, file = excluded.file,"
                " published = excluded.published, fetched_at = excluded.fetched_at, etag = excluded.etag,"
                " last_modified = excluded.last_modified, status = excluded.status, error = excluded.error,"
                " attempts = excluded.attempts",
                (
                    link,
                    feed_id,
                    kind,
                    fingerprint,
                    file,
                    published.isoformat() if published else None,
                    _now(),
                    etag,
                    last_modified,
                    status,
                    error,
                    attempts,
                ),
            )

    def _expire(self) -> list[Path]:
        """Remove the files of feed articles older than the retention (by date, else by when they were fetched)."""
        if not self.retention_days:
            return []
        cutoff = _cutoff(self.retention_days)
        removed: list[Path] = []
        with self.database.connect() as db:
            rows = db.execute(
                "SELECT link, file, published, fetched_at FROM entries WHERE kind = 'feed' AND status = 'ok'"
            ).fetchall()
            for row in rows:
                day = (
                    date.fromisoformat(row["published"]) if row["published"] else datetime.fromisoformat(row["fetched_at"]).date()
                )
                if day >= cutoff:
                    continue
                path = self.folder / Path(row["file"]).name
                path.unlink(missing_ok=True)
                removed.append(path)
                db.execute("DELETE FROM articles WHERE name = ?", (path.name,))
                # Kept as expired, so the feed's copy of the entry is not fetched again.
                db.execute("UPDATE entries SET status = 'expired', file = NULL WHERE link = ?", (row["link"],))
                db.execute(
                    "INSERT INTO pending (key, action, since) VALUES (?, 'remove', ?)" + _PENDING_UPSERT,
                    (doc_id_of(row["link"]), _now()),
                )
        if removed:
            logger.info("feeds: %d articles older than %d days removed", len(removed), self.retention_days)
        return removed

    # -- what the index has still to do ---------------------------------------------------------

    def _keep(self, article: Article, path: Path, key: str) -> bool:
        """Keep `article` (found under the link `key`) in the shared store and as the file `path`, and have the index
        ingest it; False when the store held exactly that already (nothing for the index to do)."""
        data = article_record(article, key)
        with self.database.connect() as db:
            row = db.execute("SELECT record FROM articles WHERE name = ?", (path.name,)).fetchone()
            changed = row is None or row["record"] != data
            if changed:
                db.execute(
                    "INSERT INTO articles (name, record, written_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET record = excluded.record, written_at = excluded.written_at",
                    (path.name, data, _now()),
                )
                db.execute(
                    "INSERT INTO pending (key, action, since) VALUES (?, 'ingest', ?)" + _PENDING_UPSERT, (path.name, _now())
                )
        write_file(path, data)
        return changed

    def pending(self) -> tuple[list[Path], list[str]]:
        """The article files to ingest and the article ids to remove that the index has not done yet, whichever
        replica wrote them: each article's file is written again here from its record in the shared store."""
        with self.database.connect() as db:
            rows = db.execute("SELECT key, action FROM pending ORDER BY since, key").fetchall()
            names = [Path(row["key"]).name for row in rows if row["action"] == "ingest"]
            records = {
                row["name"]: row["record"]
                for start in range(0, len(names), 500)
                for row in db.execute(
                    "SELECT name, record FROM articles WHERE name IN ({})".format(
                        ", ".join("?" * len(names[start : start + 500]))
                    ),
                    names[start : start + 500],
                ).fetchall()
            }
        files: list[Path] = []
        gone: list[str] = []
        for row in rows:
            if row["action"] != "ingest":
                continue
            path = self.folder / Path(row["key"]).name
            if path.name in records:
                write_file(path, records[path.name])
            if path.exists():  # a file from before the records were kept has no record, and is read as it is
                files.append(path)
            else:
                gone.append(row["key"])  # expired meanwhile
        if gone:
            with self.database.connect() as db:
                db.executemany("DELETE FROM pending WHERE key = ?", [(key,) for key in gone])
        return list(dict.fromkeys(files)), [row["key"] for row in rows if row["action"] == "remove"]

    def settle(self, files: list[Path], removed: list[str]) -> None:
        """The index ingested `files` and removed the articles `removed`: nothing pends for them."""
        keys = [key for path in files for key in (path.name, str(path))] + list(removed)
        with self.database.connect() as db:
            db.executemany("DELETE FROM pending WHERE key = ?", [(key,) for key in keys])

    # -- links ------------------------------------------------------------------------------

    def fetch_link(self, url: str) -> tuple[Article, Path]:
        """Fetch one page an admin sent and write its article; raises FetchError or ArticleError saying why not."""
        url = str(check_url(url.strip(), self.fetcher.policy.allowed_hosts))
        path = article_file(self.folder, url)
        fetched = self.fetcher.get(url, accept=PAGE_ACCEPT)
        article = page_article(fetched, url, path)
        self._keep(article, path, url)
        self._record(
            url,
            None,
            None,
            "ok",
            file=str(path),
            published=article.published,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
        )
        return article, path


def _cutoff(days: int) -> date:
    """The first day a retention of `days` keeps."""
    return datetime.now(UTC).date() - timedelta(days=days)


def _feed(row: Mapping[str, Any]) -> Feed:
    return Feed(
        id=int(row["id"]),
        url=row["url"],
        title=row["title"],
        added_at=row["added_at"],
        last_poll_at=row["last_poll_at"],
        last_new=int(row["last_new"]),
        last_error=row["last_error"],
        problems=list(json.loads(row["problems"] or "[]")),
        articles=int(row["articles"]),
    )
