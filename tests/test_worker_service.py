"""Answer workers as services of their own (setting answer_workers): real `newsbot worker` processes on
loopback, each loading the real models and reading the sample collection from a real Chroma server (as
docker-compose.yml deploys them), and the real bot, over HTTP to the loopback Bot API server, asking them.

A worker killed with a question in hand hands the question to the other; with none left the user is
told so; a worker that cannot load its index says why in its health, and the bot's readiness and its
reply follow.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot import health
from bot.handlers.errors import NO_WORKERS
from retrieval.answer.types import Answer
from retrieval.index.embedding import Embedder
from retrieval.remote.client import RemoteWorkers, WorkersUnavailable
from retrieval.remote.wire import WireError
from retrieval.service import Services
from tests.botapi import BotAPIServer, User
from tests.chroma import ChromaServer, free_port
from tests.conftest import ARTICLES, make_services
from tests.processes import ServerProcess
from tests.runningbot import RunningBot, start_bot, stop_bot

ROOT = Path(__file__).resolve().parent.parent
# Workers load the embedding model themselves, in their own processes.
pytestmark = pytest.mark.model

TROOPS = "How many additional troops did Ash Carter announce for Iraq in July 2016?"
QUESTIONS = [
    "How many troops did the US send in July 2016?",
    "How much can coalition-supported sorties cost per day?",
    "Who announced the deployment in Baghdad?",
    "What is the capital of Mongolia?",
]
ADMIN = User(4242, "Ada")
LANTERNS = (
    "---\ntitle: Lantern festival returns to Port Ellery\nsource: Ellery Gazette\npublished: 2016-07-20\n---\n"
    "Organisers of the Port Ellery lantern festival released 4,200 paper lanterns over the harbour.\n\n"
    "The festival returned on Saturday after a two-year pause.\n"
)
LANTERN_QUESTION = "How many paper lanterns did the Port Ellery festival organisers release?"


class WorkerService(ServerProcess):
    """`newsbot worker --listen 127.0.0.1:PORT` on `data_dir`, with settings from `env` as in production."""

    def __init__(self, log_path: Path, data_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(log_path)
        self.data_dir = data_dir
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pid = 0

    def start(self) -> None:
        env = {**os.environ, **self.env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
        argv = [sys.executable, "-m", "newsbot", "--data-dir", str(self.data_dir), "worker", "--listen", f"127.0.0.1:{self.port}"]
        self.pid = self.launch(argv, cwd=ROOT, env=env).pid

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET `path`: the status and the JSON (0 and {} while nothing listens)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), json.loads(exc.read())
        except OSError:
            return 0, {}

    def wait_until(self, path: str, accept: Any, timeout: float = 240.0) -> dict[str, Any]:
        """Poll `path` until `accept(status, body)`; fail with the log when it never does."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.get(path)
            if accept(status, body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url}{path}: {status} {body}\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def wait_ready(self) -> dict[str, Any]:
        return self.wait_until("/health", lambda status, body: status == 200)


def start_pair(root: Path, chroma: ChromaServer) -> list[WorkerService]:
    workers = [WorkerService(root / f"worker-{n}.log", root / f"var-{n}", env_of(on(chroma))) for n in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready()
    return workers


def same(a: Answer, b: Answer) -> bool:
    """Equal in every field but the timings."""
    a.timings_ms = b.timings_ms = {}
    return a == b


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """The index in a real `chroma run` server, shared by the bot and the workers as docker-compose.yml deploys them."""
    server = ChromaServer(tmp_path_factory.mktemp("chroma") / "data")
    server.start()
    yield server
    server.stop()


def on(chroma: ChromaServer) -> dict[str, Any]:
    return {"chroma_mode": "http", "chroma_host": "127.0.0.1", "chroma_port": chroma.port}


def env_of(options: dict[str, Any]) -> dict[str, str]:
    return {f"NEWSBOT_{name.upper()}": str(value) for name, value in options.items()}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, chroma: ChromaServer) -> Services:
    """The sample articles in their own folder, ingested into the Chroma server."""
    root = tmp_path_factory.mktemp("worker-service")
    articles = root / "articles"
    shutil.copytree(ARTICLES, articles)
    services = make_services(root / "var", embedder, articles_dir=str(articles), **on(chroma))
    assert services.ingestor.ingest([articles]).ok
    return services


@pytest.fixture(scope="module")
def pair(seeded: Services, chroma: ChromaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerService]]:
    """Two worker services on the sample collection, for the tests that do not stop them."""
    workers = start_pair(tmp_path_factory.mktemp("pair"), chroma)
    yield workers
    for worker in workers:
        worker.stop()


@pytest.fixture
async def api() -> AsyncIterator[BotAPIServer]:
    server = BotAPIServer()
    await server.start()
    yield server
    await server.stop()


async def bot_with(api: BotAPIServer, seeded: Services, urls: list[str]) -> RunningBot:
    """The real bot on the sample collection (for its own index: stats, the heartbeat), answering through `urls`."""
    settings = seeded.settings
    services = make_services(
        settings.data_dir,
        seeded.embedder,
        articles_dir=str(settings.articles_dir),
        chroma_mode=settings.chroma_mode,
        chroma_host=settings.chroma_host,
        chroma_port=settings.chroma_port,
        answer_workers=urls,
        admin_ids=[ADMIN.id],
    )
    return await start_bot(api, services)


async def ask(bot: RunningBot, text: str, user: User = ADMIN) -> str:
    [reply] = await bot.ask(bot.server.private(user), user, text)
    return reply.text


async def readiness(bot: RunningBot) -> tuple[bool, str]:
    """Beat the heartbeat now, then read it as the container's health check does."""
    data_dir = bot.runtime.settings.data_dir
    workers = bot.runtime.workers
    assert isinstance(workers, RemoteWorkers)
    await health.Heartbeat(data_dir / health.FILE_NAME, bot.runtime.services.store.count, workers.problem).beat()
    return health.check(data_dir / health.FILE_NAME, max_age=60)


def test_worker_services_answer_and_brief_as_this_process_does(seeded: Services, pair: list[WorkerService]) -> None:
    assert all(worker.get("/health")[1]["chunks"] == 29 for worker in pair)
    workers = RemoteWorkers([worker.url for worker in pair], 120)
    try:
        for question in QUESTIONS:
            here = seeded.answerer.answer(question, as_of=date(2016, 8, 1))
            there = workers.answer(question, as_of=date(2016, 8, 1))
            assert same(here, there), (here.text, there.text)  # citations, passages, refusal, evidence, all of it
        assert "560" in workers.answer(QUESTIONS[0]).text
        assert workers.answer(QUESTIONS[3]).refused
        here_brief, there_brief = seeded.briefer.brief("Mosul"), workers.brief("Mosul")
        assert there_brief == here_brief and there_brief.points
        assert len(there_brief.quote_vectors) == len(here_brief.quote_vectors) > 0
        for a, b in zip(there_brief.quote_vectors, here_brief.quote_vectors, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        # A digest's briefing: what was sent before (words and vectors) crosses too, and is left out.
        sent = frozenset({source.quote for source in here_brief.sources})
        vectors = np.stack(here_brief.quote_vectors)
        again_here = seeded.briefer.brief("Mosul", sent=sent, sent_vectors=vectors)
        assert workers.brief("Mosul", sent=sent, sent_vectors=vectors) == again_here
        # Questions one after another go to both, in turn.
        assert all(worker.get("/health")[1]["answered"] > 0 for worker in pair)
        workers.refresh()  # both already answer from the live collection
        with pytest.raises(WireError, match="unknown options"):
            workers.answer(QUESTIONS[0], not_an_option=1)
    finally:
        workers.close()


async def test_the_bot_answers_through_worker_services(seeded: Services, pair: list[WorkerService], api: BotAPIServer) -> None:
    bot = await bot_with(api, seeded, [worker.url for worker in pair])
    try:
        assert bot.runtime.services._answerer is None  # the bot's process loaded no answer path
        answer = await ask(bot, TROOPS)
        assert "560" in answer and "[1]" in answer and "Sources" in answer
        assert "Mosul" in await ask(bot, "/brief Mosul")
        assert "Answering: by 2 worker services" in await ask(bot, "/stats")
        # A reload through the bot: both workers build the new collection's index and answer from it.
        articles = bot.runtime.settings.articles_dir
        assert articles is not None
        (articles / "lanterns.md").write_text(LANTERNS, encoding="utf-8")
        try:
            mark = api.mark()
            await api.send(api.private(ADMIN), ADMIN, "/reload")
            [progress] = await api.replies(mark, ADMIN.id)
            await api.wait_for(lambda: any("Reload finished" in edit for edit in progress.edits), timeout=240)
            for _ in pair:  # in turn: each worker answers one
                assert "4,200" in await ask(bot, LANTERN_QUESTION)
        finally:
            (articles / "lanterns.md").unlink()
        ready, why = await readiness(bot)
        assert ready, why
    finally:
        await stop_bot(bot)


async def test_a_worker_killed_with_a_question_in_hand(
    seeded: Services, chroma: ChromaServer, api: BotAPIServer, tmp_path: Path
) -> None:
    """Worker 1 stopped, then killed, while it holds a question: the other answers it; with neither, the user is told."""
    first, second = start_pair(tmp_path, chroma)
    bot = await bot_with(api, seeded, [first.url, second.url])
    try:
        workers = bot.runtime.workers
        assert isinstance(workers, RemoteWorkers)
        os.kill(first.pid, signal.SIGSTOP)  # it takes the connection (the kernel does) but answers nothing
        users = [User(71, "Ann"), User(72, "Ben")]
        chats = [api.private(user) for user in users]
        mark = api.mark()
        for chat, user in zip(chats, users, strict=True):
            await api.send(chat, user, TROOPS)
        while workers.in_hand()[0] == 0:  # two questions: in turn, or the other being busy, one goes to worker 1
            await asyncio.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)  # mid-way: the request sent, no reply
        for chat in chats:
            [reply] = await api.replies(mark, chat.id)
            assert "560" in reply.text and "[1]" in reply.text
        assert "560" in await ask(bot, TROOPS)  # worker 1 refuses connections now: worker 2 answers
        second.stop()
        assert await ask(bot, TROOPS) == NO_WORKERS
        ready, why = await readiness(bot)
        assert not ready and why.startswith("no answer worker is ready") and first.url in why and second.url in why
        with pytest.raises(WorkersUnavailable, match="no answer worker answered"):
            await workers.aanswer(TROOPS)
    finally:
        await stop_bot(bot)
        first.stop()
        second.stop()


async def test_a_worker_that_cannot_load_its_index_is_not_ready_until_it_can(
    seeded: Services, api: BotAPIServer, tmp_path: Path
) -> None:
    """A worker whose Chroma server is not there: it runs, says why in its health, and the bot's readiness and
    reply follow; once the server is there (and holds the articles), the worker loads and the bot answers."""
    nowhere = free_port()
    worker = WorkerService(
        tmp_path / "worker.log",
        tmp_path / "var",
        env={"NEWSBOT_CHROMA_MODE": "http", "NEWSBOT_CHROMA_HOST": "127.0.0.1", "NEWSBOT_CHROMA_PORT": str(nowhere)},
    )
    worker.start()
    try:
        assert worker.wait_until("/live", lambda status, body: status == 200)["live"]
        problem = worker.wait_until("/health", lambda status, body: status == 503 and "Chroma" in body.get("problem", ""))
        assert not problem["ready"] and f"127.0.0.1:{nowhere}" in problem["problem"]
        bot = await bot_with(api, seeded, [worker.url])
        try:
            ready, why = await readiness(bot)
            assert not ready and why.startswith("no answer worker is ready") and "Chroma" in why
            assert await ask(bot, TROOPS) == NO_WORKERS
            late = ChromaServer(tmp_path / "late-chroma", port=nowhere)
            late.start()
            try:
                options = {"chroma_mode": "http", "chroma_host": "127.0.0.1", "chroma_port": nowhere}
                assert make_services(tmp_path / "late", seeded.embedder, **options).ingestor.ingest([ARTICLES]).ok
                await asyncio.to_thread(worker.wait_ready)  # it kept trying, and loads now: no restart
                ready, why = await readiness(bot)
                assert ready, why
                assert "560" in await ask(bot, TROOPS)
            finally:
                late.stop()
        finally:
            await stop_bot(bot)
    finally:
        worker.stop()
