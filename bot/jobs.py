"""What the bot does on its own, on python-telegram-bot's JobQueue: poll the feeds, post the digests.

`start` runs in post_init: it schedules the feed poll (every feed_poll_minutes), every stored
digest at its time of day, and, for a digest that fell due while the bot was down, one catch-up run
now (however many days it missed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from telegram.error import TelegramError
from telegram.ext import Application, JobQueue

from bot.digests import Digest
from bot.formatting import format_digest, split_message
from bot.runtime import RUNTIME_KEY, BotContext, Runtime
from retrieval.answer.briefing import sentence_key

logger = logging.getLogger(__name__)

FEEDS_JOB = "feeds"
FIRST_POLL_S = 10.0  # after start, so the bot answers before it fetches

NOTHING_NEW = "Nothing new on <b>{topic}</b> since {since}."
SINCE_FORMAT = "%Y-%m-%d %H:%M %Z"  # in the timezone setting


def digest_job_name(digest_id: int) -> str:
    return f"digest:{digest_id}"


def start(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Schedule the feed poll and every digest; send the digests missed while the bot was down, once."""
    queue = application.job_queue
    if queue is None:
        raise RuntimeError("the JobQueue is missing: install python-telegram-bot[job-queue] (pip install -e .)")
    runtime: Runtime = application.bot_data[RUNTIME_KEY]
    minutes = runtime.settings.feed_poll_minutes
    if minutes:
        queue.run_repeating(poll_feeds, interval=minutes * 60, first=FIRST_POLL_S, name=FEEDS_JOB)
    zone = ZoneInfo(runtime.settings.timezone)
    now = datetime.now(UTC)
    for digest in runtime.digests.all():
        schedule(queue, digest, zone)
        if digest.missed(zone, now):
            logger.info("digest %s (chat id %s) was due while the bot was down: sending it now", digest.id, digest.chat_id)
            queue.run_once(send_digest, when=0, data=digest.id, name=f"{digest_job_name(digest.id)}:missed")


def schedule(queue: JobQueue[Any], digest: Digest, zone: ZoneInfo) -> None:
    """Run `digest` every day at its time in the time zone setting."""
    queue.run_daily(
        send_digest,
        time=digest.at.replace(tzinfo=zone),
        data=digest.id,
        name=digest_job_name(digest.id),
        chat_id=digest.chat_id,
    )


def unschedule(queue: JobQueue[Any], digest_id: int) -> None:
    for job in queue.get_jobs_by_name(digest_job_name(digest_id)):
        job.schedule_removal()


async def poll_feeds(context: BotContext) -> None:
    """The scheduled poll: every feed, then one ingest of what was new. Failures are in /feeds and the log."""
    result = await context.runtime.refresh_feeds()
    if result.report is not None:
        logger.info("scheduled feed poll: %s; %s", result.poll.summary(), result.report.summary())


async def send_digest(context: BotContext) -> None:
    """A digest's job: post its briefing, unless it was stopped or already sent for this time."""
    job = context.job
    assert job is not None
    runtime = context.runtime
    digest = runtime.digests.get(int(job.data))  # type: ignore[call-overload]
    if digest is None:  # stopped meanwhile
        job.schedule_removal()
        return
    await deliver(context, runtime, digest)


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
