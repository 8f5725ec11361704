"""Feeds, links and digests through the real bot, over real HTTP on loopback.

The bot is the application `newsbot serve` builds, long-polling the stand-in Bot API server
(tests/botapi.py); the feed and its pages come from a web server in the test (tests/websites.py),
which the settings allow by name (fetch_allowed_hosts) since it is on loopback. Digests are posted
by running their jobs directly, never by waiting for a time of day. A restart (a new application
and services on the same data directory) keeps the feeds and the digests, and a digest missed while
the bot was down is sent once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot import jobs
from retrieval.index.embedding import Embedder
from retrieval.service import Services
from tests.botapi import BotAPIServer, Chat, User
from tests.conftest import make_services
from tests.runningbot import RunningBot, start_bot, stop_bot
from tests.test_feeds import NewsSite, question
from tests.websites import Website, article_page

ADMIN = User(9101, "Ada", "ada_admin")
GROUP_ADMIN = User(9102, "Gil")
MEMBER = User(9103, "Mo")
TOPIC = "Port Ellery"


@pytest.fixture(scope="module")
def website() -> Iterator[Website]:
    site = Website().start()
    yield site
    site.stop()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feeds-bot") / "var"


def bot_services(data_dir: Path, embedder: Embedder, **overrides: Any) -> Services:
    options: dict[str, Any] = {
        "admin_ids": [ADMIN.id],
        "fetch_allowed_hosts": "127.0.0.1",
        "fetch_host_pause_seconds": 0,
        "feed_poll_minutes": 0,
        **overrides,
    }
    return make_services(data_dir, embedder, **options)


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[BotAPIServer]:
    server = BotAPIServer()
    await server.start()
    server.private(ADMIN)
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def bot(server: BotAPIServer, data_dir: Path, embedder: Embedder) -> AsyncIterator[RunningBot]:
    running = await start_bot(server, bot_services(data_dir, embedder))
    yield running
    await stop_bot(running)


@pytest.fixture(scope="module")
def site(website: Website) -> NewsSite:
    return NewsSite(website, 3)  # a harbour, a bridge and a school story


async def test_feeds_add_list_and_remove_by_an_admin(bot: RunningBot, site: NewsSite, website: Website) -> None:
    chat = bot.server.private(ADMIN)
    mark = bot.server.mark()
    [progress] = await bot.ask(chat, ADMIN, f"/feeds add {site.feed_url}")
    await bot.server.wait_for(lambda: "last poll" in progress.text)
    assert "Ellery Gazette" in progress.text and "3 new; 3 articles" in progress.text
    asked, figure = question(2)
    [answer] = await bot.ask(chat, ADMIN, asked)
    assert figure in answer.text and "Ellery Gazette" in answer.text

    # A second feed that fails: listed with its error, the first one untouched.
    [failing] = await bot.ask(chat, ADMIN, f"/feeds add {website.url('/no-such-feed.xml')}")
    await bot.server.wait_for(lambda: "last poll" in failing.text)
    assert "the server answered 404" in failing.text
    [listing] = await bot.ask(chat, ADMIN, "/feeds")
    assert re.search(r"1\. Ellery Gazette", listing.text) and "2. http://127.0.0.1" in listing.text
    assert "⚠ the server answered 404 Not Found" in listing.text
    [removed] = await bot.ask(chat, ADMIN, "/feeds remove 2")
    assert removed.text.startswith("Removed feed 2")
    [listing] = await bot.ask(chat, ADMIN, "/feeds")
    assert "2. " not in listing.text and "1. Ellery Gazette" in listing.text
    [again] = await bot.ask(chat, ADMIN, f"/feeds add {site.feed_url}")
    assert again.text.startswith("That feed is already feed 1.")
    [refused] = await bot.ask(chat, ADMIN, "/feeds add file:///etc/passwd")
    assert "only http and https" in refused.text
    assert [(c.method, c.error) for c in bot.server.calls[mark:] if c.error] == []


async def test_feeds_and_links_refused_for_others_and_logged(
    bot: RunningBot, site: NewsSite, caplog: pytest.LogCaptureFixture
) -> None:
    other = User(9200, "Eve")
    chat = bot.server.private(other)
    mark = len(site.website.requests)
    for text in (f"/feeds add {site.feed_url}", "/feeds", f"/add {site.link(1)}", site.link(1)):
        [reply] = await bot.ask(chat, other, text)
        assert reply.text == "Sorry, only the bot's admins can do that.", text
    assert len(site.website.requests) == mark  # nothing was fetched for them
    refusals = [r.getMessage() for r in caplog.records if "refused for user id 9200" in r.getMessage()]
    assert len(refusals) == 4


async def test_a_link_in_a_private_chat_or_with_add_is_ingested(bot: RunningBot, website: Website) -> None:
    chat = bot.server.private(ADMIN)
    title = "Lantern festival returns to Port Ellery"
    paragraphs = [
        "Organisers of the Port Ellery lantern festival released 4,200 paper lanterns over the old harbour on Saturday.",
        "The festival returned after a two-year pause, and the town council said about 9,000 visitors came to watch.",
        "Next year's festival is planned for the first weekend of July, the organisers said.",
    ]
    website.put("/links/one", article_page(title, paragraphs, site="Harbour Weekly", published="2026-11-29"))
    [reply] = await bot.ask(chat, ADMIN, website.url("/links/one"))
    assert reply.text.startswith(f"Added {title} (Harbour Weekly, 2026-11-29)")
    assert 'href="' + website.url("/links/one") in reply.html
    [again] = await bot.ask(chat, ADMIN, f"/add {website.url('/links/one')}")
    assert again.text.startswith(f"Already had {title}")
    website.put("/links/pdf", b"%PDF-1.4\n", "application/pdf")
    [pdf] = await bot.ask(chat, ADMIN, f"/add {website.url('/links/pdf')}")
    assert pdf.text == "I couldn't add that link: not a web page (application/pdf)"
    [private] = await bot.ask(chat, ADMIN, "/add http://169.254.169.254/latest/meta-data/")
    assert "not a public address" in private.text
    [answer] = await bot.ask(chat, ADMIN, "How many paper lanterns did the Port Ellery festival release?")
    assert "4,200" in answer.text and "Harbour Weekly" in answer.text


async def test_a_digest_is_made_by_a_group_admin_and_posted_when_its_job_runs(bot: RunningBot, site: NewsSite) -> None:
    group = bot.server.group(-100900, "Harbour desk")
    bot.server.make_admin(group, GROUP_ADMIN)
    [refused] = await bot.ask(group, MEMBER, f"/digest {TOPIC} at 07:30")
    assert refused.text == "Sorry, only this group's admins (or the bot's) can do that."
    [made] = await bot.ask(group, GROUP_ADMIN, f"/digest {TOPIC} at 07:30")
    match = re.search(r"Digest (\d+): every day at 07:30 UTC", made.text)
    assert match and TOPIC in made.text
    digest_id = int(match.group(1))
    [nothing] = await bot.ask(group, GROUP_ADMIN, "/digest Lunar mining treaty negotiations at 07:45")
    quiet_id = int(re.search(r"Digest (\d+)", nothing.text).group(1))  # type: ignore[union-attr]
    [bad] = await bot.ask(group, GROUP_ADMIN, "/digest harbour at 25:00")
    assert "not a time of day" in bad.text
    [listing] = await bot.ask(group, MEMBER, "/digest")  # anyone may see the list
    assert f"{digest_id}. {TOPIC} at 07:30 UTC (last sent: not yet)" in listing.text

    mark = bot.server.mark()
    await bot.run_job(jobs.digest_job_name(digest_id))
    [posted] = bot.server.sent_since(mark, group.id)
    today = datetime.now(UTC).date().isoformat()
    made_at = bot.runtime.digests.get(digest_id).created_at  # type: ignore[union-attr]
    since = (made_at - timedelta(days=1)).strftime("%Y-%m-%d %H:%M UTC")  # the first: a day before it was made
    assert posted.text.startswith(f"Daily digest: {TOPIC}, new since {since}")
    bullets = [line for line in posted.text.split("\n") if line.startswith("• ")]
    assert bullets and all(b.startswith((f"• {today}", "• 2026-11-29")) for b in bullets)
    # The lantern page, dated a week ago, arrived today (an earlier test added it): new to the chat.
    assert any(b.startswith("• 2026-11-29") and "4,200 paper lanterns" in b for b in bullets)
    assert "Port Ellery" in posted.text and "Ellery Gazette" in posted.text
    print(f"digest posted in the test group:\n{posted.text}")
    await bot.run_job(jobs.digest_job_name(digest_id))  # the same time again: not sent twice
    assert len(bot.server.sent_since(mark, group.id)) == 1

    mark = bot.server.mark()
    await bot.run_job(jobs.digest_job_name(quiet_id))
    [quiet] = bot.server.sent_since(mark, group.id)
    assert re.fullmatch(r"Nothing new on Lunar mining treaty negotiations since \d{4}-\d\d-\d\d \d\d:\d\d UTC\.", quiet.text)
    # With digest_when_empty = "silent", nothing is posted when nothing is new.
    bot.runtime.settings.digest_when_empty = "silent"
    try:
        [silent] = await bot.ask(group, GROUP_ADMIN, "/digest Volcanic ash over the Andes at 07:50")
        silent_id = int(re.search(r"Digest (\d+)", silent.text).group(1))  # type: ignore[union-attr]
        mark = bot.server.mark()
        await bot.run_job(jobs.digest_job_name(silent_id))
        assert bot.server.sent_since(mark, group.id) == []
        assert bot.runtime.digests.get(silent_id).last_sent is not None  # type: ignore[union-attr]
    finally:
        bot.runtime.settings.digest_when_empty = "say"
    await bot.ask(group, GROUP_ADMIN, f"/digest stop {silent_id}")
    [stopped] = await bot.ask(group, GROUP_ADMIN, f"/digest stop {quiet_id}")
    assert stopped.text.startswith(f"Stopped digest {quiet_id}")
    assert not bot.application.job_queue.get_jobs_by_name(jobs.digest_job_name(quiet_id)) or all(
        j.removed for j in bot.application.job_queue.get_jobs_by_name(jobs.digest_job_name(quiet_id))
    )
    [other] = await bot.ask(bot.server.group(-100901, "Elsewhere"), ADMIN, f"/digest stop {digest_id}")
    assert "This chat has no digest" in other.text  # another chat's digest cannot be stopped from here


FERRY = "the Port Ellery ferry strike"
WIRE = "Ferry crews in Port Ellery walked out on Monday over pay, halting all 46 daily crossings to the islands."


def ferry_page(title: str, outlet: str, lines: list[str]) -> str:
    return article_page(title, lines, site=outlet, published=datetime.now(UTC).date().isoformat())


async def test_a_digest_posts_what_arrived_since_its_last_post_one_bullet_a_story_never_twice(
    bot: RunningBot, website: Website
) -> None:
    """Arrival, not publication date, decides what is new; the same story from two outlets is one bullet;
    a story posted before is not posted again (a third outlet's copy of it), unless it has news."""
    group = bot.server.group(-100904, "Ferry desk")
    admin = bot.server.private(ADMIN)
    book = bot.runtime.digests
    at = (datetime.now(UTC) - timedelta(hours=1)).strftime("%H:%M")
    [made] = await bot.ask(group, ADMIN, f"/digest {FERRY} at {at}")
    digest_id = int(re.search(r"Digest (\d+)", made.text).group(1))  # type: ignore[union-attr]

    async def post() -> str:
        """The digest's next post: the one due an hour ago, as if the last one were the day before's."""
        digest = book.get(digest_id)
        assert digest is not None
        due = digest.last_due(ZoneInfo("UTC"), datetime.now(UTC))
        if digest.last_sent is not None:  # the last post was a day earlier: what came since is new
            book.mark_sent(digest_id, due - timedelta(days=1))
        mark = bot.server.mark()
        await bot.run_job(jobs.digest_job_name(digest_id))
        [posted] = bot.server.sent_since(mark, group.id)
        return posted.text

    first_lines = [WIRE, "The ferry company said talks with the crews' union would resume on Thursday."]
    for path, title, outlet in (
        ("/ferry/weekly", "Ferry crews strike in Port Ellery", "Harbour Weekly"),
        ("/ferry/gazette", "Port Ellery ferries halted by strike", "Ellery Gazette"),
    ):
        website.put(path, ferry_page(title, outlet, first_lines))
        [added] = await bot.ask(admin, ADMIN, f"/add {website.url(path)}")
        assert added.text.startswith("Added"), added.text
    first = await post()
    print(f"first post:\n{first}")
    ferry = [line for line in first.split("\n") if line.startswith("• ") and "46 daily crossings" in line]
    assert len(ferry) == 1 and re.search(r"islands \[\d+\]\[\d+\]\.$", ferry[0])  # one bullet, both outlets
    assert "Harbour Weekly" in first and "Ellery Gazette" in first

    # A day on: what arrived tells the story posted in other words (another outlet): no news.
    retold = "Port Ellery ferry workers walked out over pay on Monday, halting the 46 daily island crossings."
    website.put("/ferry/retold", ferry_page("Island crossings halted", "Coast Radio", [retold]))
    [added] = await bot.ask(admin, ADMIN, f"/add {website.url('/ferry/retold')}")
    assert added.text.startswith("Added"), added.text
    second = await post()
    assert second.startswith(f"Nothing new on {FERRY} since"), second

    # A third outlet's copy of the same story is no news; the strike's end is.
    website.put("/ferry/post", ferry_page("Strike stops Port Ellery ferries", "Island Post", first_lines))
    news = (
        "The Port Ellery ferry strike ended on Wednesday when crews accepted a 6 percent pay rise, and all 46 crossings resumed."
    )
    website.put("/ferry/end", ferry_page("Port Ellery ferry strike ends with pay deal", "Harbour Weekly", [news, WIRE]))
    for path in ("/ferry/post", "/ferry/end"):
        [added] = await bot.ask(admin, ADMIN, f"/add {website.url(path)}")
        assert added.text.startswith("Added"), added.text
    third = await post()
    print(f"third post:\n{third}")
    bullets = [line for line in third.split("\n") if line.startswith("• ")]
    assert any("6 percent" in line for line in bullets)
    assert not any("walked out" in line and "6 percent" not in line for line in bullets)  # the old story alone
    # And that news, once posted, is not posted again either.
    fourth = await post()
    assert fourth.startswith(f"Nothing new on {FERRY} since"), fourth


async def test_an_anonymous_group_admin_makes_and_stops_digests_and_a_channel_may_not(bot: RunningBot) -> None:
    group = bot.server.group(-100902, "Anonymous desk")
    channel = Chat(-100903, "channel", title="A linked channel")
    # An anonymous admin's message is sent on behalf of the group (sender_chat is the group itself).
    [made] = await bot.ask(group, MEMBER, "/digest Harbour lanterns at 06:15", sender_chat=group)
    match = re.search(r"Digest (\d+): every day at 06:15 UTC", made.text)
    assert match, made.text
    digest = bot.runtime.digests.get(int(match.group(1)))
    assert digest is not None and digest.chat_id == group.id and digest.created_by is None
    # A message on behalf of another chat (a channel posting in its discussion group) is no admin's.
    [refused] = await bot.ask(group, MEMBER, f"/digest stop {digest.id}", sender_chat=channel)
    assert refused.text == "Sorry, only this group's admins (or the bot's) can do that."
    [stopped] = await bot.ask(group, MEMBER, f"/digest stop {digest.id}", sender_chat=group)
    assert stopped.text.startswith(f"Stopped digest {digest.id}")
    assert bot.runtime.digests.get(digest.id) is None


async def test_restart_keeps_feeds_and_digests_and_sends_a_missed_digest_once(
    bot: RunningBot, server: BotAPIServer, data_dir: Path, embedder: Embedder, site: NewsSite
) -> None:
    group = server.group(-100900, "Harbour desk")
    book = bot.runtime.digests
    [digest] = book.for_chat(group.id)
    schedule = bot.runtime.services.jobs
    await stop_bot(bot)
    # Down for three days: the digest fell due three times (last sent three days ago, due since then).
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    book.mark_sent(digest.id, three_days_ago)
    schedule.set_due(jobs.digest_job_name(digest.id), three_days_ago.timestamp())
    site.add(4)
    site.publish()
    mark = server.mark()
    restarted = await start_bot(server, bot_services(data_dir, embedder, feed_poll_minutes=30))
    try:
        [caught_up] = await server.replies(mark, group.id, timeout=120)
        assert caught_up.text.startswith((f"Daily digest: {TOPIC}, new since", f"Nothing new on {TOPIC} since"))
        [listing] = await restarted.ask(group, GROUP_ADMIN, "/digest")
        assert f"{digest.id}. {TOPIC} at 07:30 UTC" in listing.text
        posts = [s for s in server.sent_since(mark, group.id) if s.text.startswith(("Daily digest", "Nothing new"))]
        assert len(posts) == 1  # once, not three times
        [feeds] = await restarted.ask(server.private(ADMIN), ADMIN, "/feeds")
        assert "1. Ellery Gazette" in feeds.text
        # The scheduled poll of each feed, in the shared schedule: due at once (the feeds were not polled on a
        # schedule before), done by the first look at it, then due again 30 minutes on.
        schedule = restarted.runtime.services.jobs  # the same store, opened again
        [feed_job] = schedule.all(jobs.FEED_JOB)
        for _ in range(600):
            polled = schedule.get(feed_job.name)
            if polled is not None and polled.runs:
                break
            await asyncio.sleep(0.2)
        assert polled is not None and polled.runs == 1 and polled.owner is None
        assert polled.due_at - (polled.last_done or 0) <= timedelta(minutes=30).total_seconds()
        assert polled.due_at > datetime.now(UTC).timestamp() + timedelta(minutes=25).total_seconds()
        asked, figure = question(4)
        [answer] = await restarted.ask(server.private(ADMIN), ADMIN, asked)
        assert figure in answer.text
    finally:
        await stop_bot(restarted)
