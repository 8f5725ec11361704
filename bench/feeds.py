"""Benchmark: polls of feeds served on loopback, the first (everything new) and a second (nothing changed).

    .venv/bin/python bench/feeds.py [--entries 50] [--pause 0] [--workdir DIR]
    .venv/bin/python bench/feeds.py --feeds 50 --hosts 50 --entries 3 --pause 1 --latency 0.05 --poll-only \\
        --concurrency 1,8,50

Web servers on loopback (tests/websites.py), one per host: host N is 127.0.0.N (every 127.x address is
this machine's), so 50 hosts are 50 names to the fetcher's per-host limit and pause. Each serves
`--feeds / --hosts` RSS feeds of `--entries` distinct stories and each story's page, every answer after
`--latency` seconds (a real site's time to answer). The index is empty, in a temporary directory. The
first poll fetches each host's robots.txt, every feed and every page, extracts the articles and (unless
`--poll-only`) ingests them (the real model, embedded Chroma); the second sends one conditional request a
feed, answered 304. Prints the time, requests and articles of each, for each `--concurrency` (setting
fetch_concurrency; 1 fetches one feed after the other, as polls did before it). `--pause` is
fetch_host_pause_seconds (the default setting is 1 s; 0 here unless given). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import load_settings  # noqa: E402
from retrieval.ingest.feeds import Collector, Database  # noqa: E402
from retrieval.ingest.fetch import Fetcher, FetchPolicy  # noqa: E402
from retrieval.service import FeedRefresh, Services  # noqa: E402
from tests.test_feeds import story  # noqa: E402
from tests.websites import Website, article_page, rss  # noqa: E402


def describe(name: str, result: FeedRefresh, seconds: float) -> None:
    poll, report = result.poll, result.report
    ingest = report.summary() if report is not None else "nothing to ingest (no chunk embedded, nothing written)"
    print(f"{name}: {seconds:.2f} s in all; poll {poll.seconds:.2f} s, {poll.requests} HTTP requests; {poll.summary()}")
    print(f"  ingest: {ingest}")


def serve(feeds: int, hosts: int, entries: int, latency: float) -> tuple[list[Website], list[str]]:
    """`hosts` web servers (127.0.0.1, .2, ...) serving `feeds` feeds of `entries` stories each, in turn."""
    sites = [Website().start(address=f"127.0.0.{n + 1}") for n in range(hosts)]
    urls = []
    for number in range(feeds):
        site = sites[number % len(sites)]
        items = []
        for entry in range(entries):
            n = number * entries + entry + 1
            title, paragraphs = story(n)
            path = f"/feed{number}/{entry}"
            site.put(path, article_page(title, paragraphs, site=f"Outlet {number}"), etag=f'"p{n}"', delay=latency)
            items.append({"title": title, "link": site.url(path), "description": title})
        site.put(f"/feed{number}.xml", rss(f"Outlet {number}", items), "application/rss+xml", etag=f'"f{number}"', delay=latency)
        urls.append(site.url(f"/feed{number}.xml"))
    return sites, urls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=50, help="entries a feed")
    parser.add_argument("--feeds", type=int, default=1)
    parser.add_argument("--hosts", type=int, default=1, help="loopback hosts the feeds are spread over (at most 250)")
    parser.add_argument("--pause", type=float, default=0.0, help="fetch_host_pause_seconds (default 0 here)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer takes")
    parser.add_argument("--concurrency", default="8", help="fetch_concurrency values to measure, comma-separated")
    parser.add_argument("--poll-only", action="store_true", help="fetch and extract, ingest nothing (no model)")
    parser.add_argument("--workdir", type=Path, help="keep the index here instead of a temporary directory")
    args = parser.parse_args()
    sites, urls = serve(args.feeds, args.hosts, args.entries, args.latency)
    allowed = ",".join(site.address for site in sites)
    try:
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="newsbot-feeds-"))) / f"c{concurrency}"
            print(f"\nfetch_concurrency = {concurrency}: {args.feeds} feeds of {args.entries} entries on {args.hosts} hosts")
            settings = load_settings(
                data_dir=str(workdir / "var"),
                fetch_allowed_hosts=allowed,
                fetch_host_pause_seconds=args.pause,
                fetch_concurrency=concurrency,
            )
            if args.poll_only:
                collector = Collector(
                    Database(settings.state_path), Fetcher(FetchPolicy.from_settings(settings)), settings.fetched_dir
                )
                for url in urls:
                    collector.add_feed(url)
                for name in ("first poll", "second poll, feeds unchanged"):
                    started = time.perf_counter()
                    poll = collector.poll()
                    collector.settle(poll.changed, poll.expired_ids)  # nothing is ingested here: nothing pends
                    print(f"{name}: {time.perf_counter() - started:.2f} s, {poll.requests} HTTP requests; {poll.summary()}")
                collector.fetcher.close()
                continue
            services = Services(settings)
            services.warm_up()  # the model is loaded before the clock starts
            for url in urls:
                services.collector.add_feed(url)
            started = time.perf_counter()
            first = services.refresh_feeds()
            describe("first poll", first, time.perf_counter() - started)
            print(f"  articles in the index: {len(services.store.articles())}")
            started = time.perf_counter()
            second = services.refresh_feeds()
            describe("second poll, feeds unchanged", second, time.perf_counter() - started)
            services.close()
    finally:
        for site in sites:
            site.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
