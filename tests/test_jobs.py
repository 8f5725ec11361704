"""Leases on the shared schedule (retrieval/ingest/jobs.py) and the shared store (retrieval/ingest/database.py),
on SQLite and on a real PostgreSQL server the test starts (tests/postgres.py).

Claims race from several processes with connections of their own, as replicas do; a lease that runs out is
taken over (a clock passed in stands for the time: nothing waits for it); a replica that fetched articles
and died before the index took them leaves them to another replica, whose own folder never held them; an
SQLite file made before the shared schedule existed opens with its rows and gains the new tables.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import SettingsError, load_settings
from retrieval.ingest.articles import load_file
from retrieval.ingest.database import Database
from retrieval.ingest.feeds import Collector
from retrieval.ingest.jobs import JobBook, next_interval
from tests.postgres import PostgresServer, postgres_server
from tests.test_feeds import NewsSite, fetcher
from tests.websites import Website


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    yield from postgres_server()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'newsbot.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    database = Database(server.url)
    with database.connect() as db:  # each test its own empty tables
        for table in ("jobs", "pending", "articles", "entries", "feeds", "digest_quotes", "digests"):
            db.execute(f"DELETE FROM {table}")
    database.close()
    return server.url


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _claim_all(url: str, owner: str, start: Any, out: Any) -> None:
    book = JobBook(Database(url), owner, lease_seconds=300)
    start.wait()
    names: list[str] = []
    for _ in range(20):  # one claim at a time, so that the replicas interleave
        names += [claim.name for claim in book.claim_due(limit=1)]
    out.put((owner, names))


def test_of_replicas_claiming_at_once_each_due_job_goes_to_exactly_one(database_url: str) -> None:
    book = JobBook(Database(database_url), "setup")
    book.ensure_many({f"feed:{n}": 0.0 for n in range(30)})
    book.ensure("digest:1", 4.0e9)  # not due: nobody claims it
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [context.Process(target=_claim_all, args=(database_url, f"replica-{i}", start, out)) for i in range(3)]
    for worker in workers:
        worker.start()
    start.set()
    results = dict(out.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    claimed = [name for names in results.values() for name in names]
    assert sorted(claimed) == sorted(f"feed:{n}" for n in range(30))  # every due job once, none twice
    print({owner: len(names) for owner, names in results.items()})
    holders = {job.name: job.owner for job in book.all("feed:")}
    assert all(holders[name] == owner for owner, names in results.items() for name in names)
    assert book.get("digest:1").owner is None  # type: ignore[union-attr]


def test_a_lease_that_runs_out_is_taken_over_and_the_late_holder_changes_nothing(database_url: str) -> None:
    clock = Clock()
    database = Database(database_url)
    first = JobBook(database, "first", lease_seconds=10, clock=clock)
    second = JobBook(database, "second", lease_seconds=10, clock=clock)
    first.ensure("feed:1", clock.now)
    [held] = first.claim_due()
    assert second.claim_due() == [] and second.claim("feed:1") is None  # held: not even by hand
    clock.now += 8
    held = first.renew(held)  # type: ignore[assignment]
    assert held is not None
    clock.now += 8  # 16 s after the claim, 8 after the renewal: still held
    assert second.claim_due() == []
    clock.now += 3  # the holder died: its lease ran out
    [taken] = second.claim_due()
    assert taken.name == "feed:1" and taken.due_at == held.due_at  # still due: the job was never done
    assert first.renew(held) is None and first.done(held, clock.now + 60) is False  # the late holder changes nothing
    assert second.done(taken, next_interval(taken.due_at, 60, clock.now)) is True
    job = second.get("feed:1")
    assert job is not None and job.owner is None and job.runs == 1 and job.due_at == clock.now + 60
    assert first.claim_due() == [] and second.claim_due() == []  # not due again until then
    clock.now = job.due_at
    assert [c.name for c in first.claim_due()] == ["feed:1"]


def test_the_next_run_is_an_interval_after_the_last_and_a_late_replica_does_a_missed_job_once() -> None:
    assert next_interval(100.0, 30.0, 90.0) == 130.0  # done early (by hand): an interval after the time it was due
    assert next_interval(100.0, 30.0, 105.0) == 135.0
    assert next_interval(100.0, 30.0, 200.0) == 230.0  # three intervals missed: done once, next an interval on
    with pytest.raises(ValueError):
        next_interval(100.0, 0.0, 105.0)


def test_the_shared_lock_is_held_by_one_process_at_a_time(database_url: str, tmp_path: Path) -> None:
    first, second = Database(database_url), Database(database_url)
    order: list[str] = []
    context = multiprocessing.get_context("spawn")
    with first.lock("index-writer"):
        child = context.Process(target=_take_lock, args=(database_url, str(tmp_path / "took")))
        child.start()
        child.join(3)
        assert child.is_alive() and not (tmp_path / "took").exists()  # waits for the holder
        order.append("released")
    child.join(60)
    assert child.exitcode == 0 and (tmp_path / "took").exists()
    with second.lock("index-writer"):  # free again
        order.append("second")
    assert order == ["released", "second"]


def _take_lock(url: str, mark: str) -> None:
    with Database(url).lock("index-writer"):
        Path(mark).touch()


def test_articles_one_replica_fetched_before_it_died_are_ingested_by_another(database_url: str, tmp_path: Path) -> None:
    """The replica that polled wrote the articles to the shared store and its own folder, then died before the
    index took them: another replica, whose folder never held them, finds them pending and writes them again."""
    website = Website().start()
    try:
        site = NewsSite(website, 3)
        polling = Collector(Database(database_url), fetcher(), tmp_path / "one" / "fetched")
        polling.add_feed(site.website.url("/feed.xml"))
        polled = polling.poll()
        assert len(polled.changed) == 3
        # ... and it dies here, before its ingest settles them. Another replica:
        other = Collector(Database(database_url), fetcher(), tmp_path / "two" / "fetched")
        files, removed = other.pending()
        assert removed == [] and len(files) == 3
        assert all(path.parent == tmp_path / "two" / "fetched" and path.exists() for path in files)
        titles = sorted(load_file(path)[0][0].title for path in files)
        assert titles == sorted(load_file(path)[0][0].title for path in polled.changed)
        other.settle(files, [])
        assert other.pending() == ([], []) and polling.pending() == ([], [])
        requests = website.mark()
        assert other.poll().changed == []
        asked = [(r.path, r.status) for r in website.since(requests) if r.path != "/robots.txt"]
        assert asked == [("/feed.xml", 304)]  # the feed is unchanged since the first replica polled it: nothing pends
    finally:
        website.stop()


OLD_SCHEMA = """
CREATE TABLE feeds (id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL UNIQUE, title TEXT, added_at TEXT NOT NULL,
    added_by TEXT, etag TEXT, last_modified TEXT, last_poll_at TEXT, last_new INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    problems TEXT NOT NULL DEFAULT '[]');
CREATE TABLE entries (link TEXT PRIMARY KEY, feed_id INTEGER, kind TEXT NOT NULL, fingerprint TEXT, file TEXT, published TEXT,
    fetched_at TEXT, etag TEXT, last_modified TEXT, status TEXT NOT NULL, error TEXT, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX entries_by_feed ON entries (feed_id);
CREATE TABLE pending (key TEXT PRIMARY KEY, action TEXT NOT NULL, since TEXT NOT NULL);
CREATE TABLE digests (id INTEGER PRIMARY KEY AUTOINCREMENT, chat_id INTEGER NOT NULL, thread_id INTEGER, topic TEXT NOT NULL,
    at TEXT NOT NULL, created_at TEXT NOT NULL, created_by INTEGER, last_sent TEXT);
CREATE INDEX digests_by_chat ON digests (chat_id);
CREATE TABLE digest_quotes (digest_id INTEGER NOT NULL, quote_key TEXT NOT NULL, vector BLOB, sent_at TEXT NOT NULL,
    PRIMARY KEY (digest_id, quote_key));
"""


def test_an_sqlite_file_from_before_the_shared_schedule_keeps_its_rows_and_gains_the_new_tables(tmp_path: Path) -> None:
    path = tmp_path / "var" / "newsbot.sqlite3"
    path.parent.mkdir()
    fetched = tmp_path / "var" / "fetched"
    fetched.mkdir()
    old_file = fetched / "0123456789abcdef.json"
    old_file.write_text('{"id": "http://example.org/a", "title": "Old", "text": "An article written before."}\n')
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO feeds (url, added_at) VALUES ('http://example.org/feed.xml', '2026-11-01T00:00:00+00:00')")
        db.execute("INSERT INTO pending (key, action, since) VALUES (?, 'ingest', '2026-11-01T00:00:00+00:00')", (str(old_file),))
        db.execute(
            "INSERT INTO digests (chat_id, topic, at, created_at) VALUES (-100, 'harbour', '07:30', '2026-11-01T00:00:00+00:00')"
        )
    database = Database(path)
    collector = Collector(database, fetcher(), fetched)
    [feed] = collector.feeds()
    assert feed.url == "http://example.org/feed.xml" and feed.id == 1
    assert collector.add_feed("http://example.org/other.xml").id == 2
    assert collector.pending() == ([old_file], [])  # pending before: a file with no record, read as it is
    collector.settle([old_file], [])
    assert collector.pending() == ([], [])
    with database.connect() as db:
        tables = {row["name"] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        assert {"jobs", "articles", "digests"} <= tables
        assert db.execute("SELECT topic FROM digests").fetchone()["topic"] == "harbour"
    book = JobBook(database, "only")
    book.ensure("digest:1", 0.0)
    assert [c.name for c in book.claim_due()] == ["digest:1"]


def test_a_database_url_of_another_kind_is_refused_at_start_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"database_url \(NEWSBOT_DATABASE_URL\).*postgresql://"):
        load_settings(data_dir=tmp_path, database_url="mysql://newsbot@db/newsbot")
    assert load_settings(data_dir=tmp_path).database == tmp_path / "newsbot.sqlite3"  # the default: one process's file
    assert load_settings(data_dir=tmp_path, database_url="postgresql://u@h/d").database == "postgresql://u@h/d"


def _open(url: str) -> None:
    Database(url).close()


def test_replicas_starting_at_once_on_an_empty_database_make_the_tables_once(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("postgresql"):
        with Database(database_url).connect() as db:  # empty again: no tables at all
            db.execute("DROP TABLE jobs, pending, articles, entries, feeds, digest_quotes, digests")
    else:
        database_url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    context = multiprocessing.get_context("spawn")
    starting = [context.Process(target=_open, args=(database_url,)) for _ in range(4)]
    for process in starting:
        process.start()
    for process in starting:
        process.join(120)
    assert [p.exitcode for p in starting] == [0, 0, 0, 0]
    book = JobBook(Database(database_url), "after")
    book.ensure("feed:1", 0.0)
    assert [c.name for c in book.claim_due()] == ["feed:1"]


def _hold_lock(url: str, mark: str) -> None:
    with Database(url).lock("index-writer"):
        Path(mark).touch()
        time.sleep(600)  # killed before it lets go


def test_a_lock_whose_holder_is_killed_is_free_at_once(database_url: str, tmp_path: Path) -> None:
    """A replica killed with SIGKILL while it writes the index: PostgreSQL ends its session and with it the
    advisory lock (SQLite: the kernel drops the dead process's file lock); the next writer goes on."""
    context = multiprocessing.get_context("spawn")
    holder = context.Process(target=_hold_lock, args=(database_url, str(tmp_path / "held")))
    holder.start()
    for _ in range(600):
        if (tmp_path / "held").exists():
            break
        time.sleep(0.1)
    assert (tmp_path / "held").exists()
    os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
    holder.join(60)
    taker = context.Process(target=_take_lock, args=(database_url, str(tmp_path / "took")))
    taker.start()
    taker.join(120)
    assert taker.exitcode == 0 and (tmp_path / "took").exists()
