"""Feeds and links over real HTTP: a web server on loopback (tests/websites.py) serves a feed and its pages.

The fetcher's safety (no loopback, private or metadata addresses unless allowed by name, checked
after DNS and on every redirect), its limits (timeout, size cap, redirects, robots.txt), feeds that
fail in every way the issue lists, and polls that change between runs: a new entry, an edited page,
a removed entry, a 304 for an unchanged feed. The tests that ingest use the real model and Chroma.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retrieval.index.embedding import Embedder
from retrieval.ingest.articles import Article, ArticleError
from retrieval.ingest.feeds import Collector, Database, parse_feed
from retrieval.ingest.fetch import Fetcher, FetchError, FetchPolicy, system_resolver
from retrieval.ingest.jobs import FEED_JOB, JobBook, feed_job_name
from retrieval.service import Services
from tests.conftest import make_services
from tests.websites import ForwardProxy, Website, article_page, rss

LOOPBACK = frozenset({"127.0.0.1"})
TODAY = datetime.now(UTC).date()


# Five kinds of local story, so that a feed of many is many distinct stories: (title, paragraphs, question).
_STORIES = [
    (
        "{town} harbour handles a record {count:,} containers",
        [
            "The harbour authority of {town} said on Monday that {count:,} containers passed through its quays last week, "
            "the most in any week since the port opened.",
            "Officials in {town} credited two new cranes installed in the spring and a longer night shift for the increase.",
        ],
        "How many containers did the {town} harbour handle last week?",
    ),
    (
        "{town} council approves a new bridge over the river",
        [
            "The council of {town} voted on Tuesday to build a new road bridge over the river, "
            "at a cost of {count:,} thousand pounds.",
            "Work on the bridge in {town} is due to start in the spring and take two years, the council's engineers said.",
        ],
        "How much will the new bridge in {town} cost?",
    ),
    (
        "New school opens in {town}",
        [
            "A new primary school opened in {town} on Wednesday with {count:,} pupils on its first day.",
            "The head teacher said the school in {town} had been built in eleven months on the site of an old bus depot.",
        ],
        "How many pupils did the new school in {town} have on its first day?",
    ),
    (
        "Ferry to {town} carries more passengers than ever",
        [
            "The ferry between the mainland and {town} carried {count:,} passengers in November, its operator said on Thursday.",
            "The operator added a second crossing each evening in {town} after complaints about crowded boats.",
        ],
        "How many passengers did the ferry to {town} carry in November?",
    ),
    (
        "Storm floods homes in {town}",
        [
            "Heavy rain flooded {count:,} homes in {town} overnight on Friday, the fire service said.",
            "Volunteers in {town} filled sandbags at the town hall while the river stayed above its banks.",
        ],
        "How many homes were flooded in {town}?",
    ),
]


def story(n: int, *, edited: bool = False) -> tuple[str, list[str]]:
    """Local news story number `n` (title, paragraphs): one of five kinds, in town `n`, with its own figure."""
    town, count = f"Port Ellery {n}", 1000 + n * 37
    title, paragraphs, _ = _STORIES[n % len(_STORIES)]
    texts = [p.format(town=town, count=count) for p in paragraphs]
    if edited:
        texts.append(f"Correction: an earlier version of this story gave the wrong figure for the night shift in {town}.")
    return title.format(town=town, count=count), texts


def question(n: int) -> tuple[str, str]:
    """A question story `n` answers, and the figure in the answer."""
    return _STORIES[n % len(_STORIES)][2].format(town=f"Port Ellery {n}"), f"{1000 + n * 37:,}"


class NewsSite:
    """A feed of `count` stories on the website, each with its page; a test edits, adds and removes them."""

    def __init__(self, website: Website, count: int, *, day: date = TODAY) -> None:
        self.website = website
        self.stories: dict[int, dict[str, Any]] = {}
        self.version = 0
        for n in range(1, count + 1):
            self.add(n, day=day)
        self.publish()

    def add(self, n: int, *, day: date = TODAY, edited: bool = False) -> None:
        title, paragraphs = story(n, edited=edited)
        stamp = datetime.combine(day, datetime.min.time(), UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        self.stories[n] = {"title": title, "day": day, "stamp": stamp, "edited": edited}
        self.website.put(
            f"/news/{n}",
            article_page(title, paragraphs, site="Ellery Gazette", published=day.isoformat()),
            etag=f'"p{n}{edited}"',
        )

    def edit(self, n: int) -> None:
        """A new version of story `n`'s page, and its entry's date moves on (as a feed shows an update)."""
        day = self.stories[n]["day"]
        self.add(n, day=day, edited=True)
        self.stories[n]["stamp"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")

    def remove(self, n: int) -> None:
        del self.stories[n]

    def publish(self) -> None:
        """Serve the feed as it now is, with a new ETag (the old one now gets a 200, the new one a 304)."""
        self.version += 1
        items = [
            {"title": s["title"], "link": self.link(n), "pubDate": s["stamp"], "description": s["title"]}
            for n, s in sorted(self.stories.items())
        ]
        self.website.put(
            "/feed.xml", rss("Ellery Gazette", items), "application/rss+xml; charset=utf-8", etag=f'"f{self.version}"'
        )

    def link(self, n: int) -> str:
        return self.website.url(f"/news/{n}")

    @property
    def feed_url(self) -> str:
        return self.website.url("/feed.xml")


def fetcher(**policy: Any) -> Fetcher:
    return Fetcher(FetchPolicy(**{"host_pause": 0.0, "timeout": 2.0, "allowed_hosts": LOOPBACK, **policy}))


def collector(tmp_path: Path, **policy: Any) -> Collector:
    return Collector(Database(tmp_path / "state.sqlite3"), fetcher(**policy), tmp_path / "fetched")


# -- fetching side by side, and through a proxy ----------------------------------------------


def test_feeds_of_two_hosts_are_fetched_side_by_side_and_each_host_one_request_at_a_time(tmp_path: Path) -> None:
    """Host A answers only once host B has been asked something: a poll that fetched one feed after the other
    would get A's 503 after 30 s. Two feeds on host A still get one request at a time (fetch_per_host = 1)."""
    a, b = Website().start(address="127.0.0.1"), Website().start(address="127.0.0.2")
    try:
        for site, name, gate in ((a, "a1", b.arrived), (a, "a2", b.arrived), (b, "b1", None)):
            items = []
            for n in (1, 2):
                title, paragraphs = story(n)
                site.put(f"/{name}/{n}", article_page(f"{title} ({name})", paragraphs, site=name), gate=gate)
                items.append({"title": f"{title} ({name})", "link": site.url(f"/{name}/{n}")})
            site.put(f"/{name}.xml", rss(name, items), "application/rss+xml", gate=gate)
        policy = FetchPolicy(host_pause=0.0, timeout=60.0, allowed_hosts=frozenset({"127.0.0.1", "127.0.0.2"}))
        assert policy.concurrency > 1 and policy.per_host == 1  # the defaults
        collector = Collector(Database(tmp_path / "state.sqlite3"), Fetcher(policy), tmp_path / "fetched")
        for site, name in ((a, "a1"), (a, "a2"), (b, "b1")):
            collector.add_feed(site.url(f"/{name}.xml"))
        result = collector.poll()
        assert [f.error for f in result.feeds] == [None, None, None] and [len(f.new) for f in result.feeds] == [2, 2, 2]
        assert a.most_in_flight == 1  # the two feeds of host A and their pages: one request at a time
        assert all(r.status in (200, 404) for r in a.requests + b.requests)  # 404: no robots.txt
    finally:
        a.stop()
        b.stop()


def test_requests_go_through_the_proxy_to_the_checked_address_and_refused_targets_never_reach_it(
    website: Website,
) -> None:
    proxy = ForwardProxy().start()
    try:
        website.put("/page", article_page(*story(1)))
        names = {"news.test": ["127.0.0.1"], "intranet.test": ["10.0.0.5"]}
        through = Fetcher(
            FetchPolicy(host_pause=0.0, timeout=5.0, allowed_hosts=frozenset({"news.test"}), proxy=proxy.url),
            resolver=lambda host, port: names.get(host) or system_resolver(host, port),
        )
        fetched = through.get(website.url("/page", host="news.test"))
        assert fetched.status == 200 and b"Port Ellery" in fetched.content
        # The proxy was asked for the address newsbot resolved and checked, with the name only in Host.
        assert [url for url, _ in proxy.asked] == [website.url("/robots.txt"), website.url("/page")]
        assert {host for _, host in proxy.asked} == {f"news.test:{website.port}"}
        assert [r.path for r in website.requests] == ["/robots.txt", "/page"]
        for refused in ("http://intranet.test/feed.xml", "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/"):
            with pytest.raises(FetchError, match="not a public address"):
                through.get(refused)
        assert len(proxy.asked) == 2  # nothing refused was sent to the proxy
    finally:
        proxy.stop()


# -- the fetcher: safety ------------------------------------------------------------------


def test_loopback_is_refused_without_the_allowance(website: Website) -> None:
    website.put("/page", article_page(*story(1)))
    default = Fetcher(FetchPolicy(host_pause=0.0))
    for url in (website.url("/page"), website.url("/page", host="localhost"), f"http://[::1]:{website.port}/page"):
        with pytest.raises(FetchError, match="not a public address"):
            default.get(url)
    assert website.requests == []  # refused before anything was sent
    # With the allowance by name, the same server answers.
    assert fetcher().get(website.url("/page")).status == 200


def test_a_name_that_resolves_to_loopback_is_refused_after_dns(website: Website) -> None:
    name = socket.gethostname()
    if not name or name == "localhost" or socket.gethostbyname(name) != "127.0.0.1":
        pytest.skip("this machine's host name does not resolve to loopback")
    with pytest.raises(FetchError, match="resolves to 127.0.0.1, which is not a public address"):
        Fetcher(FetchPolicy(host_pause=0.0)).get(website.url("/", host=name))
    assert website.requests == []


def test_private_metadata_and_other_schemes_are_refused() -> None:
    default = Fetcher(FetchPolicy(host_pause=0.0))
    for url, reason in [
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("http://10.0.0.8/feed", "not a public address"),
        ("http://192.168.1.1/", "not a public address"),
        ("http://[fd00:ec2::254]/", "not a public address"),
        ("http://[::ffff:127.0.0.1]/", "not a public address"),
        ("http://[64:ff9b::a9fe:a9fe]/", "not a public address"),  # NAT64 of 169.254.169.254
        ("http://[2002:7f00:1::]/", "not a public address"),  # 6to4 of 127.0.0.1
        ("http://0.0.0.0/", "not a public address"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.org/feed", "only http and https"),
        ("gopher://example.org/", "only http and https"),
        ("http://user:secret@example.org/", "user name or password"),
    ]:
        with pytest.raises(FetchError, match=reason):
            default.get(url)


def test_a_redirect_to_a_host_not_allowed_is_refused(website: Website) -> None:
    website.put("/page", article_page(*story(1)))
    website.put("/go", b"", location=website.url("/page", host="localhost"), status=302)
    with pytest.raises(FetchError, match="localhost is not a public address"):
        fetcher().get(website.url("/go"))
    assert [r.path for r in website.requests if r.path != "/robots.txt"] == ["/go"]  # the target was never asked


def test_https_connects_to_the_checked_address_and_verifies_the_host_name(tmp_path: Path) -> None:
    """The request goes to the address that was checked, while TLS still names (and verifies) the URL's host."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    website = Website().start(tls=server_side)
    try:
        website.put("/page", article_page(*story(1)))
        trusted = ssl.create_default_context(cafile=str(cert))
        by_name = Fetcher(FetchPolicy(host_pause=0.0, allowed_hosts=frozenset({"localhost"})), verify=trusted)
        fetched = by_name.get(website.url("/page", host="localhost"))
        assert fetched.status == 200 and b"Port Ellery 1" in fetched.content
        assert website.hits("/page")[0].headers["host"] == f"localhost:{website.port}"
        # Through a proxy: a tunnel to the checked host name (TLS names and verifies it), robots.txt too.
        proxy = ForwardProxy().start()
        try:
            policy = FetchPolicy(host_pause=0.0, allowed_hosts=frozenset({"localhost"}), proxy=proxy.url)
            tunnelled = Fetcher(policy, verify=trusted).get(website.url("/page", host="localhost"))
            assert tunnelled.status == 200 and b"Port Ellery 1" in tunnelled.content
            assert {asked for asked, _ in proxy.asked} == {f"CONNECT localhost:{website.port}"}
            with pytest.raises(FetchError, match="not a public address"):  # checked before the proxy is asked
                Fetcher(policy, verify=trusted).get("https://192.168.1.10/feed.xml")
            assert {asked for asked, _ in proxy.asked} == {f"CONNECT localhost:{website.port}"}
        finally:
            proxy.stop()
        # The same server by its address: the certificate does not name 127.0.0.1, so it is refused.
        by_address = Fetcher(FetchPolicy(host_pause=0.0, allowed_hosts=LOOPBACK), verify=trusted)
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            by_address.get(website.url("/page"))
    finally:
        website.stop()


# -- the fetcher: limits and politeness ---------------------------------------------------


def test_statuses_timeouts_sizes_and_redirects_are_errors_with_reasons(website: Website) -> None:
    website.put("/missing", b"gone", status=404)
    website.put("/broken", b"oops", status=500)
    website.put("/slow", b"late", delay=5.0)
    website.put("/loop-a", b"", location="/loop-b", status=302)
    website.put("/loop-b", b"", location="/loop-a", status=301)
    for n in range(8):
        website.put(f"/hop{n}", b"", location=f"/hop{n + 1}", status=307)
    website.put("/huge", b"", stream_bytes=50_000_000)  # 50 MB with no Content-Length: stopped at the cap
    website.put("/declared", b"x" * 2_000_000)  # refused on its Content-Length
    get = fetcher(timeout=1.0, max_bytes=1_000_000, max_redirects=5).get
    cases = [
        ("/missing", "the server answered 404"),
        ("/broken", "the server answered 500"),
        ("/slow", "timed out after 1 s"),
        ("/loop-a", "redirect loop"),
        ("/hop0", "too many redirects"),
        ("/huge", "larger than 1.0 MB"),
        ("/declared", r"larger than 1.0 MB \(2.0 MB\)"),
    ]
    for path, reason in cases:
        with pytest.raises(FetchError, match=reason):
            get(website.url(path))
    assert len(website.hits("/hop5")) == 1 and not website.hits("/hop6")


def test_user_agent_robots_txt_and_conditional_requests(website: Website) -> None:
    website.put("/robots.txt", "User-agent: *\nDisallow: /private/\n\nUser-agent: newsbot\nDisallow: /no-bots/\n", "text/plain")
    website.put("/open", b"<p>hello</p>", etag='"v1"', last_modified="Mon, 30 Nov 2026 08:00:00 GMT")
    website.put("/no-bots/page", b"<p>secret</p>")
    get = fetcher(user_agent="newsbot/9 (test)").get
    first = get(website.url("/open"))
    assert first.status == 200 and first.etag == '"v1"'
    with pytest.raises(FetchError, match="robots.txt does not allow"):
        get(website.url("/no-bots/page"))
    assert not website.hits("/no-bots/page")
    again = get(website.url("/open"), etag=first.etag, last_modified=first.last_modified)
    assert again.not_modified
    [_, conditional] = website.hits("/open")
    assert conditional.headers["if-none-match"] == '"v1"' and conditional.status == 304
    assert conditional.headers["user-agent"] == "newsbot/9 (test)"
    assert len(website.hits("/robots.txt")) == 1  # read once per host


class Clock:
    """Time that passes only when the fetcher waits (or a test says so): pauses without waiting for them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds


def test_requests_to_one_host_are_spaced_by_the_pause_or_its_crawl_delay(website: Website) -> None:
    website.put("/a", b"<p>a</p>")
    hosts = frozenset({"127.0.0.1", "localhost"})
    clock = Clock()
    polite = Fetcher(FetchPolicy(host_pause=3.0, allowed_hosts=hosts), clock=lambda: clock.now, sleep=clock.sleep)
    polite.get(website.url("/a"))  # robots.txt (404: no rules), then /a, 3 s later
    polite.get(website.url("/a", host="localhost"))  # another host name: no wait for its robots.txt, 3 s for /a
    clock.now += 1.0
    polite.get(website.url("/a"))  # 4 s since the last request to 127.0.0.1: no wait
    assert clock.waits == [3.0, 3.0]
    website.put("/robots.txt", "User-agent: newsbot\nCrawl-delay: 7\n", "text/plain")
    slower = Fetcher(FetchPolicy(host_pause=3.0, allowed_hosts=hosts), clock=lambda: clock.now, sleep=clock.sleep)
    clock.waits.clear()
    slower.get(website.url("/a"))
    slower.get(website.url("/a"))
    assert clock.waits == [7.0, 7.0]  # the host's robots.txt asks for 7 s


def test_a_page_without_metadata_takes_the_feed_entrys(website: Website, tmp_path: Path) -> None:
    body = " ".join(story(5)[1])
    website.put("/bare", f"<html><body><article><p>{body}</p><p>{body}</p></article></body></html>")
    entry = {
        "title": "Storm floods homes in Port Ellery 5",
        "link": website.url("/bare"),
        "pubDate": "Sat, 28 Nov 2026 09:00:00 GMT",
    }
    website.put("/feed.xml", rss("Bare", [entry]), "application/rss+xml")
    feeds = collector(tmp_path)
    feeds.add_feed(website.url("/feed.xml"))
    [path] = feeds.poll().changed
    record = json.loads(path.read_text())
    assert record["title"] == "Storm floods homes in Port Ellery 5" and record["published"] == "2026-11-28"
    assert record["url"] == website.url("/bare") and record["id"] == website.url("/bare")


def test_an_unreachable_robots_txt_allows_nothing(website: Website) -> None:
    website.put("/robots.txt", b"down", status=503)
    website.put("/page", b"<p>hello</p>")
    with pytest.raises(FetchError, match="robots.txt cannot be read"):
        fetcher().get(website.url("/page"))
    assert not website.hits("/page")


# -- feeds that fail ------------------------------------------------------------------------


def test_every_kind_of_bad_feed_and_entry_is_reported_and_the_rest_is_read(website: Website, tmp_path: Path) -> None:
    good = NewsSite(website, 2)
    # A feed with bad entries among good ones.
    website.put("/empty-page", "<html><body><nav>Home</nav></body></html>")
    website.put("/report.pdf", b"%PDF-1.4\n%binary\n", "application/pdf")
    website.put("/photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png")
    website.put("/huge", b"", stream_bytes=50_000_000)
    website.put("/loop", b"", location="/loop", status=302)
    items = [
        {"title": "Good one", "link": good.link(1)},
        {"title": "No link at all"},
        {"title": "Nothing to read", "link": website.url("/empty-page")},
        {"title": "A PDF", "link": website.url("/report.pdf")},
        {"title": "An image", "link": website.url("/photo.png")},
        {"title": "Fifty megabytes", "link": website.url("/huge")},
        {"title": "Round and round", "link": website.url("/loop")},
        {"title": "Gone", "link": website.url("/nowhere")},
        {"title": "Good two", "link": good.link(2)},
    ]
    website.put("/mixed.xml", rss("Mixed", items), "application/rss+xml")
    website.put("/html.xml", "<!doctype html><html><body><p>Our feed moved.</p></body></html>")
    website.put("/broken.xml", b"<?xml version='1.0'?><rss version='2.0'><channel><title>B</title><item><title>A", "text/xml")
    website.put("/error.xml", b"no", status=500)
    website.put("/slow.xml", b"", delay=5.0)
    feeds = collector(tmp_path, timeout=1.0, max_bytes=2_000_000)
    for path in ("/mixed.xml", "/html.xml", "/broken.xml", "/error.xml", "/slow.xml", "/missing.xml"):
        feeds.add_feed(website.url(path))
    result = feeds.poll()
    by_url = {f.url: f for f in feeds.feeds()}
    mixed = by_url[website.url("/mixed.xml")]
    assert mixed.last_error is None and mixed.last_new == 2 and mixed.articles == 2
    problems = "\n".join(mixed.problems)
    for expected in (
        "entry 2 (No link at all) has no link",
        "Nothing to read: no article text",
        "A PDF: not a web page (application/pdf)",
        "An image: not a web page (image/png)",
        "Fifty megabytes: the response is larger than 2.0 MB",
        "Round and round: redirect loop",
        "Gone: the server answered 404",
    ):
        assert expected in problems
    assert "HTML page" in (by_url[website.url("/html.xml")].last_error or "")
    assert "malformed feed" in (by_url[website.url("/broken.xml")].last_error or "")
    assert "answered 500" in (by_url[website.url("/error.xml")].last_error or "")
    assert "timed out" in (by_url[website.url("/slow.xml")].last_error or "")
    assert "answered 404" in (by_url[website.url("/missing.xml")].last_error or "")
    assert sorted(p.name for p in result.changed) == sorted(p.name for p in (tmp_path / "fetched").glob("*.json"))
    records = [json.loads(p.read_text()) for p in result.changed]
    assert {r["id"] for r in records} == {good.link(1), good.link(2)}
    # Entries that failed are tried again at the next polls, up to three times in all; then left alone.
    for _ in range(3):
        good.publish()
        feeds.poll()
    assert len(website.hits("/report.pdf")) == 3


def test_malformed_xml_after_some_entries_keeps_those_entries() -> None:
    content = (
        b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
        b"<item><title>A</title><link>http://news.example/a</link></item><item><title>B</title><link>http://news"
    )
    title, entries, problems = parse_feed(content, "http://news.example/feed", "application/rss+xml")
    assert title == "T" and [e.link for e in entries][:1] == ["http://news.example/a"]
    assert problems and problems[0].startswith("malformed XML")


# -- polls that change, ingested with the real model ----------------------------------------


@pytest.fixture
def feed_services(tmp_path: Path, embedder: Embedder) -> Services:
    return make_services(tmp_path / "var", embedder, fetch_allowed_hosts="127.0.0.1", fetch_host_pause_seconds=0)


def doc_id_of(services: Services, link: str) -> str | None:
    return next((a.doc_id for a in services.store.articles().values() if a.url == link), None)


def test_polls_ingest_new_and_edited_entries_and_an_unchanged_feed_costs_one_request(
    website: Website, feed_services: Services
) -> None:
    site = NewsSite(website, 5)
    feed = feed_services.collector.add_feed(site.feed_url)
    first = feed_services.refresh_feeds()
    assert first.report is not None and len(first.report.added) == 5 and not first.report.skipped
    stored = feed_services.store.articles()
    one = stored[doc_id_of(feed_services, site.link(1)) or ""]
    assert one.title == story(1)[0] and one.source == "Ellery Gazette" and one.published == TODAY.isoformat()
    asked, figure = question(3)
    answer = feed_services.answerer.answer(asked)
    assert figure in answer.text and not answer.refused

    # Unchanged: one conditional request, answered 304, and nothing embedded.
    mark = website.mark()
    second = feed_services.refresh_feeds()
    assert second.report is None and second.poll.requests == 1
    [request] = website.since(mark)
    assert request.path == "/feed.xml" and request.status == 304 and request.headers["if-none-match"] == '"f1"'
    live = feed_services.store.live_name

    # A new entry, an edited page, a removed entry.
    site.add(6)
    site.edit(2)
    site.remove(4)
    site.publish()
    mark = website.mark()
    third = feed_services.refresh_feeds()
    assert third.report is not None
    assert third.report.added == [doc_id_of(feed_services, site.link(6))]
    assert third.report.updated == [doc_id_of(feed_services, site.link(2))]
    assert feed_services.store.live_name == live  # changed in place, not copied into a new collection
    fetched = sorted(r.path for r in website.since(mark))
    assert fetched == ["/feed.xml", "/news/2", "/news/6"]  # the unchanged entries' pages were not asked for
    stored = feed_services.store.articles()
    assert len(stored) == 6  # the removed entry's article stays
    assert doc_id_of(feed_services, site.link(4)) is not None
    edited = feed_services.answerer.answer("What did the correction about Port Ellery 2 say was wrong?")
    assert "night shift" in edited.text
    [polled] = feed_services.collector.feeds()
    assert polled.id == feed.id and polled.last_new == 2 and polled.articles == 6 and polled.last_error is None


def test_articles_a_failed_ingest_left_are_ingested_by_the_next_poll(
    website: Website, feed_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll wrote its files, then the ingest failed (the process could as well have died): the next poll,
    though the feed is unchanged (304), ingests them; nothing is lost, nothing fetched twice."""
    site = NewsSite(website, 2)
    feed_services.collector.add_feed(site.feed_url)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(feed_services.ingestor, "ingest", broken)
    with pytest.raises(RuntimeError):
        feed_services.refresh_feeds()
    assert feed_services.store.articles() == {}
    monkeypatch.undo()
    mark = website.mark()
    again = feed_services.refresh_feeds()
    assert [r.status for r in website.since(mark)] == [304]
    assert again.report is not None and len(again.report.added) == 2
    assert sorted(a.url or "" for a in feed_services.store.articles().values()) == sorted([site.link(1), site.link(2)])
    assert feed_services.collector.pending() == ([], [])
    assert feed_services.refresh_feeds().report is None  # done: nothing pends any more


def test_retention_removes_old_feed_articles_in_place(website: Website, tmp_path: Path, embedder: Embedder) -> None:
    site = NewsSite(website, 2)
    site.add(3, day=TODAY - timedelta(days=90))  # an old story, still in the feed
    site.publish()
    keep_all = make_services(tmp_path / "var", embedder, fetch_allowed_hosts="127.0.0.1", fetch_host_pause_seconds=0)
    keep_all.collector.add_feed(site.feed_url)
    assert len(keep_all.refresh_feeds().report.added) == 3  # type: ignore[union-attr]
    old = Article.build(title="", text="", path=Path(), key=site.link(3)).doc_id
    assert old in keep_all.store.articles()
    # The same bot, restarted with a retention of 30 days: the old article goes at the next poll.
    services = make_services(
        tmp_path / "var", embedder, fetch_allowed_hosts="127.0.0.1", fetch_host_pause_seconds=0, feed_retention_days=30
    )
    live = services.store.live_name
    site.publish()
    result = services.refresh_feeds()
    assert result.report is not None and result.report.removed == [old]
    assert services.store.live_name == live  # removed in place
    assert sorted(a.url or "" for a in services.store.articles().values()) == sorted([site.link(1), site.link(2)])
    # The expired entry is not fetched again while it stays in the feed.
    site.publish()
    mark = website.mark()
    services.refresh_feeds()
    assert "/news/3" not in [r.path for r in website.since(mark)]


def test_a_link_is_fetched_extracted_and_ingested(website: Website, feed_services: Services) -> None:
    title, paragraphs = story(7)
    website.put("/story", article_page(title, paragraphs, site="Ellery Gazette", published="2026-11-30"))
    result = feed_services.add_link(website.url("/story"))
    assert result.article.title == title and result.article.source == "Ellery Gazette"
    assert result.article.published == date(2026, 11, 30)
    assert len(result.report.added) == 1
    assert feed_services.add_link(website.url("/story")).report.unchanged  # the same page again: nothing embedded
    website.put("/nothing", "<html><body><nav>Home</nav></body></html>")
    with pytest.raises(ArticleError, match="no article text"):
        feed_services.add_link(website.url("/nothing"))


def test_a_refresh_by_hand_leaves_a_feed_another_replica_is_polling_to_it(website: Website, feed_services: Services) -> None:
    """`newsbot refresh` takes each feed's lease in the shared schedule, as a replica's scheduled poll does."""
    site = NewsSite(website, 2)
    title, paragraphs = story(7)
    website.put("/other/7", article_page(title, paragraphs, site="Harbour Weekly"))
    other_items = [{"title": title, "link": website.url("/other/7")}]
    website.put("/other.xml", rss("Harbour Weekly", other_items), "application/rss+xml")
    polled = feed_services.collector.add_feed(site.feed_url)
    held = feed_services.collector.add_feed(website.url("/other.xml"))
    # A running replica (its own name in the same store) is polling the second feed now.
    replica = JobBook(feed_services.database, owner="replica-two", lease_seconds=600)
    assert replica.claim(feed_job_name(held.id)) is not None

    started = time.time()
    result = feed_services.refresh_feeds_now()
    assert result.busy == [held.id] and [p.feed.id for p in result.poll.feeds] == [polled.id]
    assert result.report is not None and len(result.report.added) == 2
    assert "/other.xml" not in [r.path for r in website.requests]
    # The feed polled by hand is next due a poll interval on, its lease let go; the replica's lease stands.
    jobs = {job.name: job for job in feed_services.jobs.all(FEED_JOB)}
    done = jobs[feed_job_name(polled.id)]
    interval = feed_services.settings.feed_poll_minutes * 60
    assert done.owner is None and done.runs == 1 and started + interval <= done.due_at <= time.time() + interval
    assert jobs[feed_job_name(held.id)].owner == "replica-two"
    # Once the replica let it go, the next refresh by hand polls it.
    assert feed_services.refresh_feeds_now().busy == [held.id]
    replica.release(replica.claim(feed_job_name(held.id)))  # type: ignore[arg-type]
    again = feed_services.refresh_feeds_now()
    assert again.busy == [] and again.report is not None and len(again.report.added) == 1


@pytest.mark.model
def test_the_command_line_adds_refreshes_lists_and_removes_feeds(
    website: Website, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsbot.cli import main

    site = NewsSite(website, 2)
    title, paragraphs = story(9)
    website.put("/single", article_page(title, paragraphs, site="Harbour Weekly", published="2026-11-28"))
    where = ["--data-dir", str(tmp_path / "var")]
    # Without the allowance, the loopback server is refused.
    assert main([*where, "feeds", "add", site.feed_url]) == 2
    assert "not a public address" in capsys.readouterr().err
    monkeypatch.setenv("NEWSBOT_FETCH_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("NEWSBOT_FETCH_HOST_PAUSE_SECONDS", "0")
    assert main([*where, "feeds", "add", site.feed_url]) == 0
    assert capsys.readouterr().out.startswith("feed 1: ")
    assert main([*where, "refresh", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ingest"]["added"] == 2 and report["feeds"][0]["new"] == 2
    assert main([*where, "refresh"]) == 0
    assert "1 unchanged (304)" in capsys.readouterr().out
    assert main([*where, "add", website.url("/single")]) == 0
    assert capsys.readouterr().out.startswith(f"{title} (Harbour Weekly, 2026-11-28); ingest: 1 added")
    assert main([*where, "feeds"]) == 0
    listing = capsys.readouterr().out
    assert "1. Ellery Gazette <" in listing and "0 new; 2 articles" in listing
    assert main([*where, "feeds", "remove", "1"]) == 0
    assert main([*where, "feeds", "remove", "1"]) == 2
    assert "removed feed 1" in capsys.readouterr().out
    assert main([*where, "feeds", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
