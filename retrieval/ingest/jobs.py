"""Leases on scheduled jobs in the shared store, so that of several replicas exactly one does each job when due.

Each job (`feed:ID`, a feed's poll; `digest:ID`, a digest's post) is one row of `jobs`: when it is next due,
and who holds its lease until when. A replica claims the due jobs nobody holds (or whose holder let the
lease run out: it died, or hangs) by writing its name and an expiry into them; on PostgreSQL the candidates
are read with `SELECT ... FOR UPDATE SKIP LOCKED`, so replicas claiming at once take different rows and
never wait for each other; on SQLite the claim's transaction holds the file's write lock
(`retrieval/ingest/database.py`). The claim is a conditional UPDATE either way, so a row is claimed by
one replica only. The holder renews the lease while it works (`renew`) and, done, moves the job to its
next due time and lets the lease go (`done`), both only while the lease is still its own. A holder that
dies leaves the job due: once its lease has run out, the next replica that looks claims it and does it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import or_, select, update

from retrieval.ingest.database import JOBS, Database

logger = logging.getLogger(__name__)


FEED_JOB = "feed:"  # a feed's poll: feed:ID
DIGEST_JOB = "digest:"  # a digest's post: digest:ID


def feed_job_name(feed_id: int) -> str:
    return f"{FEED_JOB}{feed_id}"


def digest_job_name(digest_id: int) -> str:
    return f"{DIGEST_JOB}{digest_id}"


def replica_name() -> str:
    """This process's name in the leases it holds: host, process id and a random part (a restarted process
    with a reused id is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Claim:
    """A job this replica holds the lease of, until `until` unless renewed."""

    name: str
    due_at: float
    until: float


@dataclass(frozen=True)
class Job:
    """One row of the schedule."""

    name: str
    due_at: float
    owner: str | None
    lease_until: float | None
    last_done: float | None
    runs: int


class JobBook:
    """The schedule of jobs and their leases, for one replica (`owner`)."""

    def __init__(
        self, database: Database, owner: str | None = None, lease_seconds: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.database = database
        self.owner = owner or replica_name()
        self.lease_seconds = lease_seconds
        self.clock = clock

    # -- the schedule -----------------------------------------------------------------------------

    def ensure(self, name: str, due_at: float) -> None:
        """Schedule `name` at `due_at` unless it is scheduled already."""
        with self.database.connect() as db:
            db.execute("INSERT INTO jobs (name, due_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (name, due_at))

    def ensure_many(self, due: dict[str, float]) -> None:
        """`ensure` each job of `due` (name: due time) in one transaction."""
        with self.database.connect() as db:
            db.executemany(
                "INSERT INTO jobs (name, due_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [(n, t) for n, t in due.items()]
            )

    def set_due(self, name: str, due_at: float) -> None:
        """Schedule `name` at `due_at` (scheduled or not before; a lease held on it stays)."""
        with self.database.connect() as db:
            db.execute(
                "INSERT INTO jobs (name, due_at) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET due_at = excluded.due_at",
                (name, due_at),
            )

    def remove(self, name: str) -> None:
        with self.database.connect() as db:
            db.execute("DELETE FROM jobs WHERE name = ?", (name,))

    def get(self, name: str) -> Job | None:
        return next(iter(self.all(name)), None)

    def all(self, prefix: str = "") -> list[Job]:
        """The jobs whose names start with `prefix` (all of them: "")."""
        with self.database.connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE name LIKE ? ORDER BY name", (prefix.replace("%", r"\%") + "%",)
            ).fetchall()
        return [Job(r["name"], r["due_at"], r["owner"], r["lease_until"], r["last_done"], int(r["runs"])) for r in rows]

    # -- leases -----------------------------------------------------------------------------------

    def claim_due(self, prefix: str = "", limit: int = 100) -> list[Claim]:
        """Claim up to `limit` jobs (named `prefix`...) that are due and that nobody holds a live lease of."""
        now = self.clock()
        free = or_(JOBS.c.lease_until.is_(None), JOBS.c.lease_until < now)
        candidates = (
            select(JOBS.c.name, JOBS.c.due_at)
            .where(JOBS.c.due_at <= now, free, JOBS.c.name.startswith(prefix, autoescape=True))
            .order_by(JOBS.c.due_at, JOBS.c.name)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL: rows another replica is claiming are skipped
        )
        claims: list[Claim] = []
        until = now + self.lease_seconds
        with self.database.connect() as db:
            for name, due_at in db.connection.execute(candidates).all():
                taken = db.connection.execute(
                    update(JOBS)
                    .where(JOBS.c.name == name, JOBS.c.due_at <= now, free)
                    .values(owner=self.owner, lease_until=until)
                )
                if taken.rowcount == 1:
                    claims.append(Claim(name, due_at, until))
        for claim in claims:
            logger.debug("job %s claimed by %s until %.0f", claim.name, self.owner, claim.until)
        return claims

    def claim(self, name: str) -> Claim | None:
        """Claim `name` now, due or not (a job run by hand), unless another replica holds a live lease of it."""
        now = self.clock()
        until = now + self.lease_seconds
        with self.database.connect() as db:
            db.execute("INSERT INTO jobs (name, due_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (name, now))
            taken = db.connection.execute(
                update(JOBS)
                .where(
                    JOBS.c.name == name,
                    or_(JOBS.c.lease_until.is_(None), JOBS.c.lease_until < now, JOBS.c.owner == self.owner),
                )
                .values(owner=self.owner, lease_until=until)
                .returning(JOBS.c.due_at)
            ).all()
        return Claim(name, float(taken[0][0]), until) if taken else None

    def renew(self, claim: Claim) -> Claim | None:
        """Extend the lease of a job still being done; None when it is no longer this replica's (it ran out and
        another replica took the job over)."""
        until = self.clock() + self.lease_seconds
        with self.database.connect() as db:
            renewed = db.connection.execute(
                update(JOBS).where(JOBS.c.name == claim.name, JOBS.c.owner == self.owner).values(lease_until=until)
            )
        if renewed.rowcount != 1:
            logger.warning("job %s: the lease is no longer %s's", claim.name, self.owner)
            return None
        return Claim(claim.name, claim.due_at, until)

    def done(self, claim: Claim, next_due: float | None) -> bool:
        """The job was done: due next at `next_due` (None: never again, the row goes), and the lease let go.
        False when the lease was no longer this replica's (nothing is changed then)."""
        now = self.clock()
        with self.database.connect() as db:
            if next_due is None:
                finished = db.execute("DELETE FROM jobs WHERE name = ? AND owner = ?", (claim.name, self.owner))
            else:
                finished = db.connection.execute(
                    update(JOBS)
                    .where(JOBS.c.name == claim.name, JOBS.c.owner == self.owner)
                    .values(due_at=next_due, owner=None, lease_until=None, last_done=now, runs=JOBS.c.runs + 1)
                )
        if finished.rowcount != 1:
            logger.warning("job %s was done by %s after its lease ran out; another replica holds it", claim.name, self.owner)
            return False
        return True

    @contextmanager
    def renewing(self, claims: list[Claim]) -> Iterator[None]:
        """Renew the leases of `claims` every third of the lease while the block runs (in a thread of its own, so
        a block that keeps the event loop or the interpreter busy does not lose them)."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_seconds / 3):
                for claim in claims:
                    try:
                        self.renew(claim)
                    except Exception:  # the database is away for a moment: the next renewal tries again
                        logger.warning("job %s: the lease could not be renewed", claim.name, exc_info=True)

        thread = threading.Thread(target=renew, name="lease renewal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release(self, claim: Claim) -> None:
        """Let the lease go without doing the job: it stays due, for any replica."""
        with self.database.connect() as db:
            db.execute("UPDATE jobs SET owner = NULL, lease_until = NULL WHERE name = ? AND owner = ?", (claim.name, self.owner))


def next_interval(due_at: float, every: float, now: float) -> float:
    """The next due time of a job due every `every` seconds, done at `now` for the time `due_at`: an interval
    after it was done (so two runs are never closer than that, however late this one was; a replica late by
    several intervals does the job once, not once for each), or after the time it was due for, if later."""
    if every <= 0:
        raise ValueError("an interval must be positive")
    return max(due_at, now) + every
