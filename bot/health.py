"""The running bot's heartbeat file, and the health check that reads it (`python -m bot.health`, the container's HEALTHCHECK).

The bot writes `DATA_DIR/heartbeat` every HEARTBEAT_SECONDS while its event loop runs: the time,
whether its index answered and how many chunks the live collection holds. Two checks read it:
readiness (the default) is healthy while the file is fresh, the index answered, the collection
holds chunks and, with answer worker services (setting answer_workers), one of them is ready, so a
bot with an empty or unreachable index, or no worker to answer, is not taken for one that can answer;
liveness (`--live`) only while the file is fresh, i.e. the bot's event loop turns. It imports nothing
but the standard library, so a check every half minute costs little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
FILE_NAME = "heartbeat"


class Heartbeat:
    """Writes the heartbeat file now and then; `probe` says whether the index answers (it may block: run in a thread)."""

    def __init__(
        self,
        path: Path,
        probe: Callable[[], object],
        workers: Callable[[], str] | None = None,
        interval: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.path = path
        self.probe = probe
        self.workers = workers  # why no answer worker service is ready ("" when one is), if the bot has them
        self.interval = interval

    async def beat(self) -> bool:
        """Probe the index and write the file once; True when the index answered."""
        chunks: int | None = None
        try:
            counted = await asyncio.to_thread(self.probe)
            chunks = counted if isinstance(counted, int) else None
            index_ok, problem = True, ""
        except Exception as exc:  # whatever the store raises, the check must report it, not die of it
            index_ok, problem = False, f"{type(exc).__name__}: {exc}"
        status = {"time": time.time(), "pid": os.getpid(), "index_ok": index_ok, "chunks": chunks, "problem": problem}
        if self.workers is not None:
            try:
                status["workers_problem"] = await asyncio.to_thread(self.workers)
            except Exception as exc:  # as for the index: reported, never the end of the heartbeat
                status["workers_problem"] = f"the answer workers could not be asked: {type(exc).__name__}: {exc}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(status))
        partial.replace(self.path)  # readers never see half a file
        return index_ok

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            try:
                await self.beat()
            except OSError as exc:  # a full or read-only disk: the check will report the stale file
                logger.warning("could not write the heartbeat %s: %s", self.path, exc)
            await asyncio.sleep(self.interval)


def check(path: Path, max_age: float, now: float | None = None, *, live: bool = False) -> tuple[bool, str]:
    """Ready (or with `live`, alive) or not, and why."""
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return False, f"no heartbeat at {path} ({exc})"
    age = (now if now is not None else time.time()) - float(status.get("time", 0))
    if age > max_age:
        return False, f"the heartbeat is {age:.0f} s old (the bot's event loop is stuck or it has stopped)"
    if live:
        return True, f"alive ({age:.0f} s ago)"
    if not status.get("index_ok"):
        return False, f"the index does not answer: {status.get('problem') or 'unknown'}"
    if status.get("workers_problem"):
        return False, str(status["workers_problem"])
    if status.get("chunks") == 0:
        return False, "the collection is empty: nothing is ingested (newsbot ingest, or /reload)"
    chunks = status.get("chunks")
    return True, f"ok ({age:.0f} s ago" + (f", {chunks} chunks)" if chunks is not None else ")")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.health", description="Is the running bot healthy?")
    parser.add_argument("--data-dir", default=os.environ.get("NEWSBOT_DATA_DIR", "var"))
    parser.add_argument("--max-age", type=float, default=3 * HEARTBEAT_SECONDS, help="seconds (default: 90)")
    parser.add_argument("--live", action="store_true", help="only whether the bot runs, not whether it can answer")
    args = parser.parse_args(argv)
    healthy, reason = check(Path(args.data_dir) / FILE_NAME, args.max_age, live=args.live)
    print(reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
