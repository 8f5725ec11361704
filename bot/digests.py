"""Scheduled briefings: which chat gets which topic at what time, kept in the shared store (retrieval/ingest/database.py).

A digest posts, every day at its time, the briefing on its topic of the articles that arrived (were
ingested) since its last post, one bullet a story; a story whose every quoted sentence it posted before
is left out (`digest_quotes` remembers them for `QUOTES_KEPT_DAYS`). When it was due while the bot was
down, it is sent once when the bot comes back (`missed`), however many days it missed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from retrieval.ingest.feeds import Database

# How long a digest remembers the sentences it posted (a story told again after that is posted again).
QUOTES_KEPT_DAYS = 30
# What the first digest covers: the articles that arrived this long before it was made, and since.
FIRST_DIGEST_COVERS = timedelta(days=1)

_REQUEST = re.compile(r"^(?P<topic>.+?)\s+at\s+(?P<hour>\d{1,2})[:.h](?P<minute>\d{2})\s*$", re.I | re.S)


class DigestRequestError(ValueError):
    """The /digest arguments cannot be understood; the message says how to write them."""


@dataclass(frozen=True)
class Digest:
    """One chat's daily briefing on a topic."""

    id: int
    chat_id: int
    thread_id: int | None
    topic: str
    at: time  # in the timezone setting
    created_at: datetime  # UTC
    created_by: int | None
    last_sent: datetime | None  # UTC

    def last_due(self, zone: ZoneInfo, now: datetime) -> datetime:
        """The latest time at or before `now` that this digest was due."""
        local = now.astimezone(zone)
        due = datetime.combine(local.date(), self.at, zone)
        return due if due <= local else datetime.combine(local.date() - timedelta(days=1), self.at, zone)

    def next_due(self, zone: ZoneInfo, now: datetime) -> datetime:
        """The first time after `now` that this digest is due."""
        return self.last_due(zone, now) + timedelta(days=1)

    def missed(self, zone: ZoneInfo, now: datetime) -> bool:
        """Due since it was last sent (or made) and not sent: the bot was down at that time."""
        return self.last_due(zone, now) > (self.last_sent or self.created_at)

    def since(self) -> datetime:
        """When the articles the next post covers began to arrive: the last post's time (the first post:
        a day before the digest was made). UTC."""
        return self.last_sent or self.created_at - FIRST_DIGEST_COVERS


def parse_request(text: str) -> tuple[str, time]:
    """`TOPIC at HH:MM` → (topic, time)."""
    match = _REQUEST.match(text.strip())
    if not match:
        raise DigestRequestError("Tell me a topic and a time: /digest TOPIC at HH:MM, e.g. /digest Mosul at 08:00")
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise DigestRequestError(f"{match['hour']}:{match['minute']} is not a time of day; use HH:MM from 00:00 to 23:59.")
    topic = " ".join(match["topic"].split())
    return topic, time(hour, minute)


class DigestBook:
    """The digests of every chat (table `digests` of the shared store)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, chat_id: int, thread_id: int | None, topic: str, at: time, created_by: int | None) -> Digest:
        with self.database.connect() as db:
            digest_id = db.execute(
                "INSERT INTO digests (chat_id, thread_id, topic, at, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (chat_id, thread_id, topic, at.strftime("%H:%M"), _stamp(datetime.now(UTC)), created_by),
            ).one()["id"]
        found = self.get(digest_id)
        assert found is not None
        return found

    def get(self, digest_id: int) -> Digest | None:
        return next(iter(self._select("WHERE id = ?", (digest_id,))), None)

    def for_chat(self, chat_id: int) -> list[Digest]:
        return self._select("WHERE chat_id = ? ORDER BY id", (chat_id,))

    def all(self) -> list[Digest]:
        return self._select("ORDER BY id", ())

    def stop(self, chat_id: int, digest_id: int) -> Digest | None:
        """End one of this chat's digests (another chat's number stops nothing)."""
        digest = self.get(digest_id)
        if digest is None or digest.chat_id != chat_id:
            return None
        with self.database.connect() as db:
            db.execute("DELETE FROM digests WHERE id = ?", (digest_id,))
            db.execute("DELETE FROM digest_quotes WHERE digest_id = ?", (digest_id,))
        return digest

    def mark_sent(self, digest_id: int, when: datetime, quotes: Iterable[tuple[str, np.ndarray | None]] = ()) -> None:
        """The digest was posted (or stayed silent) for the time `when`, quoting `quotes`: each sentence's
        `sentence_key` and its embedding."""
        with self.database.connect() as db:
            db.execute("UPDATE digests SET last_sent = ? WHERE id = ?", (_stamp(when), digest_id))
            db.executemany(
                "INSERT INTO digest_quotes (digest_id, quote_key, vector, sent_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (digest_id, quote_key) DO UPDATE SET vector = excluded.vector, sent_at = excluded.sent_at",
                [
                    (digest_id, key, None if vector is None else np.asarray(vector, dtype=np.float16).tobytes(), _stamp(when))
                    for key, vector in dict(quotes).items()
                ],
            )
            db.execute(
                "DELETE FROM digest_quotes WHERE digest_id = ? AND sent_at < ?",
                (digest_id, _stamp(when - timedelta(days=QUOTES_KEPT_DAYS))),
            )

    def sent_quotes(self, digest_id: int) -> tuple[frozenset[str], np.ndarray]:
        """The sentences this digest posted in the last `QUOTES_KEPT_DAYS` days: their `sentence_key`s, and
        their embeddings (one row each, those known)."""
        with self.database.connect() as db:
            rows = db.execute("SELECT quote_key, vector FROM digest_quotes WHERE digest_id = ?", (digest_id,)).fetchall()
        vectors = [np.frombuffer(bytes(row["vector"]), dtype=np.float16) for row in rows if row["vector"]]
        matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), dtype=np.float32)
        return frozenset(row["quote_key"] for row in rows), matrix

    def _select(self, where: str, params: tuple[object, ...]) -> list[Digest]:
        with self.database.connect() as db:
            rows = db.execute(f"SELECT * FROM digests {where}", params).fetchall()
        return [
            Digest(
                id=int(row["id"]),
                chat_id=int(row["chat_id"]),
                thread_id=row["thread_id"],
                topic=row["topic"],
                at=time.fromisoformat(row["at"]),
                created_at=datetime.fromisoformat(row["created_at"]),
                created_by=row["created_by"],
                last_sent=datetime.fromisoformat(row["last_sent"]) if row["last_sent"] else None,
            )
            for row in rows
        ]


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")
