"""The shared store of feeds, entries, fetched articles, digests and the jobs' schedule: one schema, two databases.

One process keeps it in an SQLite file beside the index (`data_dir/newsbot.sqlite3`, the default); several
replicas of the bot share one PostgreSQL server, named by the setting `database_url`
(`postgresql+psycopg://USER@HOST/DB`). The tables are declared once with SQLAlchemy Core and created when
missing, so a file made before a table existed gains it at the next start and keeps its rows.

Statements are written once, in the SQL both databases read (`INSERT ... ON CONFLICT`, `RETURNING`),
with `?` placeholders (`Session.execute`). On SQLite every transaction begins with `BEGIN IMMEDIATE`: it
takes the file's write lock at once, so two processes never both read and then both write (a claim of
a job is a read and a write, `retrieval/ingest/jobs.py`); on PostgreSQL row locks do that.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url

METADATA = MetaData()

FEEDS = Table(
    "feeds",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False, unique=True),
    Column("title", Text),
    Column("added_at", Text, nullable=False),
    Column("added_by", Text),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_poll_at", Text),
    Column("last_new", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("problems", Text, nullable=False, server_default="[]"),
    sqlite_autoincrement=True,
)
ENTRIES = Table(
    "entries",
    METADATA,
    Column("link", Text, primary_key=True),
    Column("feed_id", Integer),
    Column("kind", Text, nullable=False),
    Column("fingerprint", Text),
    Column("file", Text),
    Column("published", Text),
    Column("fetched_at", Text),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("status", Text, nullable=False),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Index("entries_by_feed", "feed_id"),
)
# What the index still has to do: "ingest" the article named `key` (its file name under data_dir/fetched,
# or, in a file written before the records below, its whole path), "remove" the article whose id is `key`.
PENDING = Table(
    "pending",
    METADATA,
    Column("key", Text, primary_key=True),
    Column("action", Text, nullable=False),
    Column("since", Text, nullable=False),
)
# The article records fetched from feeds and links, by file name: any replica can write the file again
# from here and ingest it, whichever replica fetched it (`Collector.pending`).
ARTICLES = Table(
    "articles",
    METADATA,
    Column("name", Text, primary_key=True),
    Column("record", Text, nullable=False),
    Column("written_at", Text, nullable=False),
)
DIGESTS = Table(
    "digests",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chat_id", BigInteger, nullable=False),  # Telegram's ids pass 2**31 (supergroups: -100...)
    Column("thread_id", BigInteger),
    Column("topic", Text, nullable=False),
    Column("at", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("created_by", BigInteger),
    Column("last_sent", Text),
    Index("digests_by_chat", "chat_id"),
    sqlite_autoincrement=True,
)
DIGEST_QUOTES = Table(
    "digest_quotes",
    METADATA,
    Column("digest_id", Integer, primary_key=True),
    Column("quote_key", Text, primary_key=True),
    Column("vector", LargeBinary),
    Column("sent_at", Text, nullable=False),
)
# The schedule every replica shares: when each job (a feed's poll, a digest) is next due, and who holds its
# lease until when (`retrieval/ingest/jobs.py`). Times in seconds since 1970.
JOBS = Table(
    "jobs",
    METADATA,
    Column("name", Text, primary_key=True),
    Column("due_at", Float, nullable=False),
    Column("owner", Text),
    Column("lease_until", Float),
    Column("last_done", Float),
    Column("runs", Integer, nullable=False, server_default="0"),
)

_PLACEHOLDER = re.compile(r"\?")


def database_url(target: str | Path) -> URL:
    """The SQLAlchemy URL of a database URL or an SQLite file's path."""
    if isinstance(target, Path):
        return URL.create("sqlite", database=str(target))
    url = make_url(target)
    if url.drivername in ("postgresql", "postgres"):  # psycopg 3, the driver installed, rather than psycopg2
        url = url.set(drivername="postgresql+psycopg")
    return url


class Session:
    """One transaction's connection, with `?` placeholders: `execute(sql, (a, b))`, rows read by column name."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        statement, values = _named(sql, params)
        result = self.connection.execute(text(statement), values)
        return result.mappings() if result.returns_rows else result

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if batch:
            statement, _ = _named(sql, batch[0])
            self.connection.execute(text(statement), [_named(sql, row)[1] for row in batch])


def _named(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(params, Mapping):
        return sql, dict(params)
    counter = iter(range(len(params) + 1))
    statement = _PLACEHOLDER.sub(lambda _: f":p{next(counter)}", sql)
    return statement, {f"p{i}": value for i, value in enumerate(params)}


class Database:
    """The shared store: an SQLite file (a path, or `sqlite:///PATH`) or a PostgreSQL server (`postgresql://...`)."""

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.path = Path(self.url.database) if self.sqlite and self.url.database else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = _engine(self.url)
        # The tables missing (a file from before a table existed gains them), in one transaction that replicas
        # starting at once take turns on: SQLite's write lock, a PostgreSQL advisory lock until its end.
        with self.engine.begin() as connection:
            if not self.sqlite:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("schema")})
            METADATA.create_all(connection)

    @property
    def where(self) -> str:
        """The database, for messages (never its password)."""
        return str(self.path) if self.path is not None else self.url.render_as_string(hide_password=True)

    @contextmanager
    def connect(self) -> Iterator[Session]:
        """One transaction (committed at the end, rolled back on an error)."""
        with self.engine.begin() as connection:
            yield Session(connection)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lock `name` across every process using this database, until the block ends.

        PostgreSQL: a session advisory lock on a connection of its own, which the server lets go when
        that connection goes (a replica killed while holding it frees it at once). SQLite: a lock file
        beside the database (the processes that share the file share its folder).
        """
        if self.path is not None:
            with open(self.path.with_name(f"{self.path.name}.{name}.lock"), "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        key = _lock_key(name)
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()

    def close(self) -> None:
        self.engine.dispose()


def _lock_key(name: str) -> int:
    """The 64-bit key of a PostgreSQL advisory lock named `name`."""
    return int.from_bytes(hashlib.sha1(f"newsbot:{name}".encode()).digest()[:8], "big", signed=True)


def _engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver begins nothing itself: `_begin` does
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
