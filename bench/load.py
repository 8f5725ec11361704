"""Load benchmark: simulated users asking the real bot through the loopback Bot API server.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/load.py                     # 50 users x 5 questions
    HF_HUB_OFFLINE=1 .venv/bin/python bench/load.py --users 10 --questions 3 --workdir /tmp/load

The sample articles are indexed into a temporary directory (or `--workdir`, reused when it holds an
index), then `newsbot serve` runs as its own process with the default settings, long-polling
`tests/botapi.py` exactly as it would poll Telegram. Each user opens a private chat and asks the
seed dev questions one after another, each as soon as the previous one was answered (a closed
loop: at most one question per user waits, so up to `--users` wait at once). Latency is from the
moment the message is queued for getUpdates to the moment the bot's reply reaches the server.

When every user is done it waits `--settle` seconds more and counts the replies in each chat:
every question must get exactly one answer. Errors are missing answers (a timeout), extra
replies, and replies that are not answers ("busy", "slow down", "something went wrong").
This prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.settings import BUNDLED_ARTICLES  # noqa: E402
from tests.botapi import BotAPIServer, Chat, User  # noqa: E402

SEED = ROOT / "tests" / "data" / "seed_qa_dev.jsonl"
NOT_ANSWERS = (
    "I'm answering a lot of questions",
    "Slow down a little",
    "Sorry, something went wrong",
    "I can't reach my article index",
)


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    timeouts: int = 0
    not_answers: dict[str, int] = field(default_factory=dict)
    extra_replies: int = 0


def questions() -> list[str]:
    return [json.loads(line)["question"] for line in SEED.read_text().splitlines() if line.strip()]


def environment(data_dir: Path, server: BotAPIServer) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "TELEGRAM_BOT_TOKEN": server.token,
        "TELEGRAM_API_BASE_URL": server.base_url,
        "NEWSBOT_DATA_DIR": str(data_dir / "var"),
        "NEWSBOT_ARTICLES_DIR": str(data_dir / "articles"),
    }


async def user(server: BotAPIServer, person: User, chat: Chat, asked: list[str], results: Results, timeout: float) -> None:
    """Ask each question as soon as the previous one was answered."""
    for question in asked:
        mark = server.mark()
        started = time.perf_counter()
        await server.send(chat, person, question)
        try:
            [reply] = await server.replies(mark, chat.id, timeout=timeout)
        except TimeoutError:
            results.timeouts += 1
            continue
        results.latencies.append(time.perf_counter() - started)
        for prefix in NOT_ANSWERS:
            if reply.text.startswith(prefix):
                results.not_answers[prefix] = results.not_answers.get(prefix, 0) + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, workdir: Path) -> int:
    server = BotAPIServer()
    await server.start()
    env = environment(workdir, server)
    log = (workdir / "serve.log").open("w")
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "newsbot", "-v", "serve", cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        await server.wait_for(lambda: server.commands, timeout=600)  # post_init done: model and index loaded
        pool = questions()
        people = [User(100_000 + i, f"user{i}") for i in range(args.users)]
        chats = [server.private(person) for person in people]
        results = Results()
        mark = server.mark()
        started = time.perf_counter()
        await asyncio.gather(
            *[
                user(server, person, chat, [pool[(i + j) % len(pool)] for j in range(args.questions)], results, args.timeout)
                for i, (person, chat) in enumerate(zip(people, chats))
            ]
        )
        elapsed = time.perf_counter() - started
        await asyncio.sleep(args.settle)  # anything sent twice would arrive by now
        for chat in chats:
            results.extra_replies += max(0, len(server.sent_since(mark, chat.id)) - args.questions)
    finally:
        bot.terminate()
        await bot.wait()
        log.close()
        await server.stop()

    asked = args.users * args.questions
    answered = len(results.latencies) - sum(results.not_answers.values())
    errors = results.timeouts + results.extra_replies + sum(results.not_answers.values())
    print(
        f"users {args.users} x questions {args.questions} = {asked} questions in {elapsed:.1f} s "
        f"({asked / elapsed:.2f} questions/s)"
    )
    print(f"answered exactly once: {answered} of {asked}")
    if results.latencies:
        print(
            f"latency p50 {percentile(results.latencies, 50):.2f} s, p95 {percentile(results.latencies, 95):.2f} s, "
            f"max {max(results.latencies):.2f} s, mean {statistics.mean(results.latencies):.2f} s"
        )
    print(
        f"errors {errors}: timeouts {results.timeouts}, extra replies {results.extra_replies}, "
        f"not answers {results.not_answers or 0}"
    )
    print(f"bot log: {workdir / 'serve.log'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--questions", type=int, default=5, help="questions per user")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one answer")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait for stray replies at the end")
    parser.add_argument("--workdir", type=Path, help="keep the index and the bot's log here (reused)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="newsbot-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "articles").exists():
        shutil.copytree(BUNDLED_ARTICLES, workdir / "articles")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    subprocess.run(
        [sys.executable, "-m", "newsbot", "--data-dir", str(workdir / "var"), "ingest", str(workdir / "articles")],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return asyncio.run(run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
