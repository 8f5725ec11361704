"""Benchmark: one poll of a 50-entry feed served on loopback, then a second poll of the unchanged feed.

    .venv/bin/python bench/feeds.py [--entries 50] [--pause 0] [--workdir DIR]

A web server on 127.0.0.1 (tests/websites.py) serves an RSS feed of `--entries` distinct stories and
each story's page; the index is empty, in a temporary directory. The first poll fetches the feed
(and robots.txt) and every page, extracts the articles and ingests them (the real model, embedded
Chroma); the second sends one conditional request, which the server answers 304. Prints the time,
requests and articles of each; with `--pause`, the per-host pause between requests (the default
setting is 1 s, which alone makes a 50-page poll of one host take about 50 s). Asserts nothing.
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
from retrieval.service import FeedRefresh, Services  # noqa: E402
from tests.test_feeds import NewsSite  # noqa: E402
from tests.websites import Website  # noqa: E402


def describe(name: str, result: FeedRefresh, seconds: float) -> None:
    poll, report = result.poll, result.report
    ingest = report.summary() if report is not None else "nothing to ingest (no chunk embedded, no index swap)"
    print(f"{name}: {seconds:.2f} s in all; poll {poll.seconds:.2f} s, {poll.requests} HTTP requests; {poll.summary()}")
    print(f"  ingest: {ingest}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--pause", type=float, default=0.0, help="fetch_host_pause_seconds (default 0 here)")
    parser.add_argument("--workdir", type=Path, help="keep the index here instead of a temporary directory")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="newsbot-feeds-"))
    website = Website().start()
    try:
        site = NewsSite(website, args.entries)
        settings = load_settings(
            data_dir=str(workdir / "var"), fetch_allowed_hosts="127.0.0.1", fetch_host_pause_seconds=args.pause
        )
        services = Services(settings)
        services.warm_up()  # the model is loaded before the clock starts
        services.collector.add_feed(site.feed_url)
        started = time.perf_counter()
        first = services.refresh_feeds()
        describe(f"first poll of a {args.entries}-entry feed", first, time.perf_counter() - started)
        articles = len(services.store.articles())
        print(f"  articles in the index: {articles}")
        started = time.perf_counter()
        second = services.refresh_feeds()
        describe("second poll, feed unchanged", second, time.perf_counter() - started)
        statuses = [r.status for r in website.requests[-second.poll.requests :]] if second.poll.requests else []
        print(f"  server answered: {statuses}; articles in the index: {len(services.store.articles())}")
        services.close()
    finally:
        website.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
