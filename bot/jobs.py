"""What the bot does on its own: poll the feeds, post the digests, on the schedule in the shared store.

Each feed's poll (`feed:ID`, every feed_poll_minutes) and each digest (`digest:ID`, every day at its time)
is a job in the shared store (retrieval/ingest/jobs.py) with its next due time. Every job_check_seconds,
each replica (python-telegram-bot's JobQueue runs `check_jobs`) claims the due jobs that no other
replica holds a lease of (feeds: up to fetch_concurrency, and none while it is polling), does them while
renewing their leases, and moves each to its next due time. So
with several replicas on one PostgreSQL database every feed is polled once per interval and every digest
posted once, and a replica that dies mid-job leaves its jobs to whichever replica looks next once their
leases have run out. A digest that fell due while every replica was down is due still: it is sent once
at the next look, however many days it missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
from telegram.error import TelegramError
from telegram.ext import Application

from bot.digests import Digest
from bot.formatting import format_digest, split_message
from bot.runtime import RUNTIME_KEY, BotContext, Runtime
from retrieval.answer.briefing import sentence_key
from retrieval.ingest.jobs import DIGEST_JOB, FEED_JOB, Claim, digest_job_name, feed_job_name, next_interval

if TYPE_CHECKING:
    from retrieval.service import FeedRefresh

logger = logging.getLogger(__name__)

CHECK_JOB = "jobs"  # the JobQueue's repeating look at the shared schedule
FIRST_CHECK_S = 10.0  # after start, so the bot answers before it fetches

NOTHING_NEW = "Nothing new on <b>{topic}</b> since {since}."
SINCE_FORMAT = "%Y-%m-%d %H:%M %Z"  # in the timezone setting


def start(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Look at the shared schedule every job_check_seconds (the first look soon after start)."""
    queue = application.job_queue
    if queue is None:
        raise RuntimeError("the JobQueue is missing: install python-telegram-bot[job-queue] (pip install -e .)")
    runtime: Runtime = application.bot_data[RUNTIME_KEY]
    every = runtime.settings.job_check_seconds
    sync(runtime)
    queue.run_repeating(check_jobs, interval=every, first=min(FIRST_CHECK_S, every), name=CHECK_JOB)


def sync(runtime: Runtime) -> None:
    """Give every feed (when feeds are polled) and every digest its job, and end the jobs of those gone.

    A new feed is due at once; a digest at its next time, or at once when it fell due since it was last sent
    (missed while the bot was down). Jobs already scheduled keep their times: a restart polls nothing early."""
    settings = runtime.settings
    book = runtime.services.jobs
    now = datetime.now(UTC)
    zone = ZoneInfo(settings.timezone)
    wanted: dict[str, float] = {}
    if settings.feed_poll_minutes:
        wanted |= {feed_job_name(feed.id): now.timestamp() for feed in runtime.services.collector.feeds()}
    for digest in runtime.digests.all():
        due = digest.last_due(zone, now) if digest.missed(zone, now) else digest.next_due(zone, now)
        wanted[digest_job_name(digest.id)] = due.timestamp()
    book.ensure_many(wanted)
    stale = [job.name for job in book.all() if job.name.startswith((FEED_JOB, DIGEST_JOB)) and job.name not in wanted]
    for name in stale:
        book.remove(name)


async def poll_feed_now(runtime: Runtime, feed_id: int) -> FeedRefresh:
    """Poll one feed now (a feed just added), holding its lease when its polls are scheduled, so that no other
    replica polls it at the same time; its next scheduled poll is then an interval from now."""
    book = runtime.services.jobs
    every = runtime.settings.feed_poll_minutes * 60
    claimed = await asyncio.to_thread(book.claim, feed_job_name(feed_id)) if every else None
    try:
        with book.renewing([claimed] if claimed else []):
            result = await runtime.refresh_feeds(feed_id)
    except BaseException:
        if claimed is not None:
            await asyncio.to_thread(book.release, claimed)
        raise
    if claimed is not None:
        await asyncio.to_thread(book.done, claimed, time.time() + every)
    return result


def schedule(runtime: Runtime, digest: Digest) -> None:
    """Post `digest` every day at its time in the time zone setting, from its next time on."""
    zone = ZoneInfo(runtime.settings.timezone)
    runtime.services.jobs.set_due(digest_job_name(digest.id), digest.next_due(zone, datetime.now(UTC)).timestamp())


def unschedule(runtime: Runtime, digest_id: int) -> None:
    runtime.services.jobs.remove(digest_job_name(digest_id))


async def check_jobs(context: BotContext) -> None:
    """The repeating look: claim the due jobs no other replica holds, and do them (each in a task of its own)."""
    runtime = context.runtime

    def claim() -> list[Claim]:
        sync(runtime)
        book = runtime.services.jobs
        claims = book.claim_due(DIGEST_JOB)
        # Feeds: as many as one poll fetches at once, and none while this replica is still polling, so that
        # the feeds due spread over the replicas that are free.
        if not runtime.poll_lock.locked():
            claims += book.claim_due(FEED_JOB, limit=runtime.settings.fetch_concurrency)
        return claims

    claims = await asyncio.to_thread(claim)
    feeds = [c for c in claims if c.name.startswith(FEED_JOB)]
    if feeds:
        context.application.create_task(run_feeds(runtime, feeds), name="feed polls")
    for claimed in claims:
        if claimed.name.startswith(DIGEST_JOB):
            context.application.create_task(run_digest(context, runtime, claimed), name=claimed.name)


async def run_now(application: Application[Any, Any, Any, Any, Any, Any], name: str) -> None:
    """Do the job `name` now, due or not (unless another replica holds it), as its schedule would."""
    runtime: Runtime = application.bot_data[RUNTIME_KEY]
    claimed = await asyncio.to_thread(runtime.services.jobs.claim, name)
    if claimed is None:
        logger.info("job %s is being done by another replica", name)
        return
    if name.startswith(FEED_JOB):
        await run_feeds(runtime, [claimed])
    else:
        await run_digest(BotContext(application), runtime, claimed)


async def run_feeds(runtime: Runtime, claims: list[Claim]) -> None:
    """Poll the feeds of `claims` and ingest what they brought, then schedule each feed's next poll."""
    book = runtime.services.jobs
    every = runtime.settings.feed_poll_minutes * 60
    ids = [int(c.name.removeprefix(FEED_JOB)) for c in claims]
    try:
        with book.renewing(claims):
            result = await runtime.refresh_feeds(feed_ids=ids)
    except Exception:  # the store or the index failed: the feeds stay due, for any replica to poll again
        logger.exception("feed poll of feeds %s failed; they stay due", ids)
        for claimed in claims:
            await asyncio.to_thread(book.release, claimed)
        return
    if result.report is not None:
        logger.info("scheduled feed poll: %s; %s", result.poll.summary(), result.report.summary())
    now = time.time()
    for claimed in claims:
        await asyncio.to_thread(book.done, claimed, next_interval(claimed.due_at, every, now) if every else None)


async def run_digest(context: BotContext, runtime: Runtime, claimed: Claim) -> None:
    """Post a digest whose job this replica holds, then schedule its next day (a digest stopped meanwhile: none)."""
    book = runtime.services.jobs
    digest = runtime.digests.get(int(claimed.name.removeprefix(DIGEST_JOB)))
    if digest is None:  # stopped meanwhile
        await asyncio.to_thread(book.done, claimed, None)
        return
    try:
        with book.renewing([claimed]):
            await deliver(context, runtime, digest)
    except Exception:
        logger.exception("digest %s could not be made; it stays due", digest.id)
        await asyncio.to_thread(book.release, claimed)
        return
    zone = ZoneInfo(runtime.settings.timezone)
    await asyncio.to_thread(book.done, claimed, digest.next_due(zone, datetime.now(UTC)).timestamp())


async def deliver(context: BotContext, runtime: Runtime, digest: Digest) -> str | None:
    """Post `digest` now (the text sent, or None when it stayed silent or was already sent for this time)."""
    zone = ZoneInfo(runtime.settings.timezone)
    now = datetime.now(UTC)
    if digest.last_sent is not None and digest.last_sent >= digest.last_due(zone, now):
        return None  # a catch-up and the daily run for the same time: one message
    since = digest.since()
    # What arrived since the last post; `now` is taken before the briefing, so an article ingested while it
    # is made is in the next post too (and left out there if this one quoted it: `sent_quotes`).
    sent, sent_vectors = runtime.digests.sent_quotes(digest.id)
    briefing = await runtime.briefer.abrief(
        digest.topic, arrived_after=int(since.timestamp()), sent=sent, sent_vectors=sent_vectors
    )
    runtime.usage.briefings += 1
    shown = since.astimezone(zone).strftime(SINCE_FORMAT)
    if briefing.repeats:
        logger.info("digest %s: %d stories left out, posted before", digest.id, briefing.repeats)
    if briefing.empty:
        if runtime.settings.digest_when_empty == "silent":
            runtime.digests.mark_sent(digest.id, now)
            return None
        text = NOTHING_NEW.format(topic=escape(digest.topic, quote=False), since=escape(shown))
    else:
        text = format_digest(digest.topic, shown, briefing)
    try:
        for piece in split_message(text):
            await context.bot.send_message(digest.chat_id, piece, message_thread_id=digest.thread_id)
    except TelegramError as exc:  # removed from the group, say: logged, and tried again tomorrow
        logger.warning("digest %s could not be posted to chat id %s: %s", digest.id, digest.chat_id, exc)
        return None
    vectors: list[np.ndarray | None] = list(briefing.quote_vectors)
    if len(vectors) != len(briefing.sources):  # a briefer that keeps none: the words alone are remembered
        vectors = [None] * len(briefing.sources)
    quoted = zip(briefing.sources, vectors, strict=True)
    runtime.digests.mark_sent(digest.id, now, ((sentence_key(source.quote), vector) for source, vector in quoted))
    logger.info("digest %s posted to chat id %s", digest.id, digest.chat_id)
    return text
