"""Three `newsbot serve` replicas on one PostgreSQL server and one Chroma server: one job runner across them.

Everything is real and on loopback: PostgreSQL from Debian's binaries in a temporary folder
(tests/postgres.py; under CI its absence fails the test), `chroma run` (tests/chroma.py), the Bot API
stand-in (tests/botapi.py), and a website serving four feeds and their pages (tests/websites.py). Each
replica has a data folder of its own (nothing on disk is shared) and answers on a webhook port of its own.

- Every feed is polled once per interval: the requests for each feed at the website equal the polls the
  shared schedule counts (`jobs.runs`), however many replicas look for due jobs every second.
- Every digest is posted once: three digests that fell due while no replica ran are each sent once.
- Every replica answers from what any of them indexed (its search follows the shared index's changes).
- A replica killed with SIGKILL in the middle of a poll (it is waiting for a page that never comes) holds
  the leases of the feeds it was polling; once they run out another replica takes them over and polls
  again, the articles the dead replica had fetched but not indexed are indexed from the shared store, and
  nothing is lost: every story of every feed ends up in the index once, and nothing stays pending.
Intervals and leases are seconds long (settings), so this takes a minute or two; it waits for states,
never asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from bot.digests import DigestBook
from retrieval.index.store import ArticleStore
from retrieval.ingest.articles import doc_id_of
from retrieval.ingest.database import Database
from retrieval.ingest.feeds import Collector
from retrieval.ingest.jobs import JobBook
from tests.botapi import BotAPIServer, User, post_update
from tests.chroma import ChromaServer, free_port
from tests.postgres import PostgresServer, postgres_server
from tests.test_feeds import fetcher, question, story
from tests.websites import Website, article_page, rss

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.model  # each replica loads the embedding model

FEEDS = 4  # the last one is the slow one: the second page of its first poll never comes
STORIES = 2
POLL_SECONDS = 12.0
LEASE_SECONDS = 15.0
GROUPS = (-1001234567801, -1001234567802, -1001234567803)  # supergroup ids pass 2**31


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    yield from postgres_server()


def page_path(feed: int, n: int) -> str:
    return f"/f{feed}/{n}"


def publish(website: Website, *, slow: bool) -> list[str]:
    """The feeds and their pages; with `slow`, the last feed's last page waits ten minutes before answering."""
    links = []
    for feed in range(1, FEEDS + 1):
        items = []
        for n in range(1, STORIES + 1):
            title, paragraphs = story(feed * 10 + n)
            delay = 600.0 if slow and feed == FEEDS and n == STORIES else 0.0
            website.put(
                page_path(feed, n), article_page(title, paragraphs, site=f"Desk {feed}"), etag=f'"p{feed}{n}"', delay=delay
            )
            items.append({"title": title, "link": website.url(page_path(feed, n)), "description": title})
            links.append(website.url(page_path(feed, n)))
        website.put(f"/f{feed}.xml", rss(f"Desk {feed}", items), "application/rss+xml", etag=f'"f{feed}"')
    return links


class Replica:
    """One `newsbot serve` process, its log in a file."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: IO[str], path: Path, port: int) -> None:
        self.name, self.process, self.log, self.log_path, self.port = name, process, log, path, port

    @property
    def webhook(self) -> str:
        return f"http://127.0.0.1:{self.port}/telegram"

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> int | None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), 120)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.log.close()
        return self.process.returncode


async def start_replica(name: str, tmp_path: Path, env: dict[str, str], api: BotAPIServer) -> Replica:
    port = free_port()
    path = tmp_path / f"{name}.log"
    log = path.open("w")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "newsbot",
        "-v",
        "--data-dir",
        str(tmp_path / name / "var"),
        "serve",
        "--webhook",
        f"http://127.0.0.1:{port}/telegram",
        "--listen",
        f"127.0.0.1:{port}",
        "--secret-token",
        "s3cret",
        cwd=ROOT,
        env={**os.environ, **env, "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url},
        stdout=log,
        stderr=log,
    )
    return Replica(name, process, log, path, port)


async def until(predicate: Any, timeout: float, what: str) -> Any:
    """Wait for `predicate()` to be truthy (checked every 0.2 s), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := await asyncio.to_thread(predicate)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return value


async def test_three_replicas_poll_each_feed_once_per_interval_post_each_digest_once_and_survive_a_kill(
    postgres: PostgresServer, chroma: ChromaServer, website: Website, tmp_path: Path
) -> None:
    api = BotAPIServer(token="987654:REPLICAS-secret_token_value")
    await api.start()
    replicas: list[Replica] = []
    try:
        links = publish(website, slow=True)
        database = Database(postgres.url)
        collector = Collector(database, fetcher(), tmp_path / "setup")
        feeds = [collector.add_feed(website.url(f"/f{feed}.xml")) for feed in range(1, FEEDS + 1)]
        slow_job = f"feed:{feeds[-1].id}"
        digests = DigestBook(database)
        for chat_id in GROUPS:
            api.group(chat_id, f"Desk {chat_id}")
            made = digests.add(chat_id, None, "Port Ellery", datetime.now(UTC).time().replace(second=0, microsecond=0), None)
            with database.connect() as db:  # made two days ago, and never sent: due while no replica ran
                db.execute(
                    "UPDATE digests SET created_at = ? WHERE id = ?",
                    ((datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="seconds"), made.id),
                )
        env = {
            "NEWSBOT_DATABASE_URL": postgres.url,
            "NEWSBOT_CHROMA_MODE": "http",
            "NEWSBOT_CHROMA_HOST": "127.0.0.1",
            "NEWSBOT_CHROMA_PORT": str(chroma.port),
            "NEWSBOT_FETCH_ALLOWED_HOSTS": "127.0.0.1",
            "NEWSBOT_FETCH_HOST_PAUSE_SECONDS": "0",
            "NEWSBOT_FETCH_PER_HOST": "8",
            "NEWSBOT_FETCH_CONCURRENCY": "2",  # two feeds a replica at a time: the feeds spread over the replicas
            "NEWSBOT_FETCH_TIMEOUT_SECONDS": "300",
            "NEWSBOT_FEED_POLL_MINUTES": str(POLL_SECONDS / 60),
            "NEWSBOT_JOB_CHECK_SECONDS": "1",
            "NEWSBOT_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
        }
        for name in ("one", "two", "three"):
            replicas.append(await start_replica(name, tmp_path, env, api))
        schedule = JobBook(database, "test")

        def digest_posts(chat_id: int) -> list[str]:
            texts = [sent.text for sent in api.sent_since(0, chat_id)]
            return [text for text in texts if text.startswith(("Daily digest", "Nothing new"))]

        # The slow page is being fetched, and the three overdue digests are out: kill the replica polling.
        await until(lambda: website.hits(page_path(FEEDS, STORIES)), 600, "the slow page to be asked for")
        await until(
            lambda: (
                all(digest_posts(chat) for chat in GROUPS)
                and all(job.runs and job.owner is None for job in schedule.all("digest:"))
            ),
            300,
            "the digests to be posted and their jobs done",
        )
        holding = schedule.get(slow_job)
        assert holding is not None and holding.owner is not None
        [victim] = [r for r in replicas if f":{r.pid}:" in holding.owner]
        held = {job.name for job in schedule.all() if job.owner == holding.owner}
        assert all(name.startswith("feed:") for name in held)
        requests_before_kill = {feed.id: len(website.hits(f"/f{n}.xml")) for n, feed in enumerate(feeds, start=1)}
        os.kill(victim.pid, signal.SIGKILL)
        await victim.process.wait()
        print(f"killed replica {victim.name} (pid {victim.pid}) polling {sorted(held)}; requests then: {requests_before_kill}")
        publish(website, slow=False)  # the page answers now, to whoever asks next

        store = ArticleStore(__import__("chromadb").HttpClient(host="127.0.0.1", port=chroma.port), "articles")
        wanted = {doc_id_of(link) for link in links}

        def settled() -> bool:
            jobs = {job.name: job for job in schedule.all("feed:")}
            with database.connect() as db:
                pending = db.execute("SELECT COUNT(*) AS n FROM pending").fetchone()["n"]
            return (
                all(jobs[f"feed:{feed.id}"].runs >= 3 for feed in feeds)
                and pending == 0
                and set(store.stored(sorted(wanted))) == wanted
            )

        await until(settled, 600, "every feed to be polled three times, and every story indexed")

        def snapshot() -> tuple[dict[str, Any], dict[int, int]] | None:
            """The schedule and the feed requests at one moment when no replica holds a feed's lease."""
            before = {job.name: (job.runs, job.owner) for job in schedule.all("feed:")}
            if any(owner for _, owner in before.values()):
                return None
            requests = {feed.id: len(website.hits(f"/f{n}.xml")) for n, feed in enumerate(feeds, start=1)}
            after = {job.name: (job.runs, job.owner) for job in schedule.all("feed:")}
            return (after, requests) if after == before else None

        jobs, requests = await until(snapshot, 120, "a moment with no feed lease held")
        runs = {feed.id: jobs[f"feed:{feed.id}"][0] for feed in feeds}
        print(f"feed polls done (shared schedule): {runs}; feed requests at the website: {requests}")
        for feed in feeds:
            extra = requests[feed.id] - runs[feed.id]
            if f"feed:{feed.id}" in held:  # the killed replica's poll: asked for, never done
                assert extra in (0, 1), (feed.id, extra)
            else:
                assert extra == 0, (feed.id, extra)
        assert requests[feeds[-1].id] - runs[feeds[-1].id] == 1  # the slow feed's poll died with its replica
        posts = {chat: digest_posts(chat) for chat in GROUPS}
        print(f"digest posts per chat: { {chat: len(texts) for chat, texts in posts.items()} }")
        assert all(len(texts) == 1 for texts in posts.values())
        # Nothing lost, nothing twice: every story indexed once, as one article.
        stored = store.stored(sorted(wanted))
        assert set(stored) == wanted and len(store.articles()) == len(wanted)
        for replica in replicas:
            log = replica.log_path.read_text()
            polls, posted = log.count("retrieval.ingest.feeds: feeds: "), log.count("bot.jobs: digest ")
            print(
                f"replica {replica.name}: {polls} polls done, {posted} digests posted{' (killed)' if replica is victim else ''}"
            )
        # Each survivor's search caught up with what the others indexed: asked through its own webhook, each answers
        # from the story the dead replica never indexed (the slow feed's), whichever replica indexed it.
        survivors = [r for r in replicas if r is not victim]
        asked, figure = question(FEEDS * 10 + STORIES)
        reader = User(7201, "Ria")
        chat = api.private(reader)
        for number, replica in enumerate(survivors, start=1):
            mark = api.mark()
            update = {"update_id": number, "message": api.new_message(chat, reader, asked)}
            assert await asyncio.to_thread(post_update, replica.webhook, update, "s3cret") == 200
            [answer] = await api.replies(mark, chat.id, timeout=120)
            assert figure in answer.text, (replica.name, answer.text)
        for replica in survivors:
            assert await replica.stop() == 0, replica.log_path.read_text()[-3000:]
    except BaseException:
        for replica in replicas:
            if replica.process.returncode is None:
                replica.process.kill()
            print(f"--- {replica.name} log:\n{replica.log_path.read_text()[-4000:]}")
        raise
    finally:
        for replica in replicas:
            if replica.process.returncode is None:
                replica.process.kill()
                await replica.process.wait()
        await api.stop()
