"""Questions answered in worker processes (setting answer_processes): real spawned processes, each
loading the real models and opening the real Chroma on disk, and the real bot over HTTP in front of them."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.answer.types import Answer
from retrieval.index.embedding import Embedder
from retrieval.service import Services
from retrieval.workers import AnswerWorkers, WorkerError
from tests.conftest import ARTICLES, make_services

# Workers load the embedding model themselves, in their own processes.
pytestmark = pytest.mark.model

QUESTIONS = [
    "How many troops did the US send in July 2016?",
    "How much can coalition-supported sorties cost per day?",
    "Who announced the deployment in Baghdad?",
    "What is the capital of Mongolia?",
]
LANTERNS = (
    "---\ntitle: Lantern festival returns to Port Ellery\nsource: Ellery Gazette\npublished: 2016-07-20\n---\n"
    "Organisers of the Port Ellery lantern festival released 4,200 paper lanterns over the harbour.\n\n"
    "The festival returned on Saturday after a two-year pause.\n"
)


def same(a: Answer, b: Answer) -> bool:
    return (a.text, a.refused, [c.doc_id for c in a.citations]) == (b.text, b.refused, [c.doc_id for c in b.citations])


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Services:
    """The sample articles in their own folder and index (a test adds an article to both)."""
    root = tmp_path_factory.mktemp("workers")
    articles = root / "articles"
    shutil.copytree(ARTICLES, articles)
    services = make_services(root / "var", embedder, articles_dir=str(articles))
    assert services.ingestor.ingest([articles]).ok
    return services


@pytest.fixture(scope="module")
def workers(seeded: Services) -> Iterator[AnswerWorkers]:
    workers = AnswerWorkers(seeded.settings, 2)
    workers.start()
    yield workers
    workers.close()


def test_workers_answer_and_brief_as_this_process_does(seeded: Services, workers: AnswerWorkers) -> None:
    for question in QUESTIONS:
        here, there = seeded.answerer.answer(question), workers.answer(question)
        assert same(here, there), (here.text, there.text)
    assert "560" in workers.answer(QUESTIONS[0]).text
    assert workers.answer(QUESTIONS[3]).refused
    assert workers.brief("Mosul") == seeded.briefer.brief("Mosul")
    assert len(set(workers.pids()) - {os.getpid()}) == 2  # two processes, neither this one


async def test_questions_at_once_each_get_their_own_answer(seeded: Services, workers: AnswerWorkers) -> None:
    expected = [seeded.answerer.answer(question) for question in QUESTIONS]
    answers = await asyncio.gather(*(workers.aanswer(question) for question in QUESTIONS * 2))
    assert all(same(answer, expected[i % len(QUESTIONS)]) for i, answer in enumerate(answers))


def test_a_worker_that_dies_is_replaced_and_what_it_held_asked_again(workers: AnswerWorkers) -> None:
    before = workers.pids()
    os.kill(before[0], signal.SIGKILL)
    answers = [workers.answer(QUESTIONS[0]) for _ in range(3)]  # the first goes to the dead one
    assert all("560" in answer.text for answer in answers)
    after = workers.pids()
    assert after[0] != before[0] and after[1] == before[1]
    os.kill(after[1], signal.SIGKILL)  # found dead by a call to every worker, not by a question
    workers.refresh()
    last = workers.pids()
    assert last[0] == after[0] and last[1] != after[1]
    assert "560" in workers.answer(QUESTIONS[0]).text


def test_workers_follow_a_reload(seeded: Services, workers: AnswerWorkers) -> None:
    articles = seeded.settings.articles_dir
    assert articles is not None
    (articles / "lanterns.md").write_text(LANTERNS, encoding="utf-8")
    try:
        assert seeded.ingestor.ingest([articles], rebuild=True, prune=True).added  # a new collection goes live
        workers.refresh()
        answer = workers.answer("How many paper lanterns did the Port Ellery festival organisers release?")
        assert "4,200" in answer.text and answer.citations[0].title.startswith("Lantern festival")
    finally:
        (articles / "lanterns.md").unlink()
        seeded.ingestor.ingest([articles], rebuild=True, prune=True)
        workers.refresh()


def test_a_worker_that_cannot_load_its_model_fails_start_with_a_clear_error(seeded: Services, tmp_path: Path) -> None:
    broken = seeded.settings.model_copy(update={"embedding_model": str(tmp_path / "no-such-model")})
    workers = AnswerWorkers(broken, 1)
    with pytest.raises(WorkerError, match="answer worker 1 of 1 did not start"):
        workers.start()
    with pytest.raises(WorkerError, match="closed"):
        workers.answer(QUESTIONS[0])


async def test_the_bot_answers_briefs_and_reloads_through_workers(seeded: Services, tmp_path: Path) -> None:
    """The real application with answer_processes = 2, over HTTP to the loopback Bot API server."""
    from bot.app import build_application
    from bot.runtime import RUNTIME_KEY
    from tests.botapi import BotAPIServer, User

    admin = User(4242, "Ada")
    articles = tmp_path / "articles"
    shutil.copytree(ARTICLES, articles)
    services = make_services(
        tmp_path / "var", seeded.embedder, articles_dir=str(articles), admin_ids=[admin.id], answer_processes=2
    )
    settings = services.settings
    assert services.ingestor.ingest([articles]).ok
    server = BotAPIServer()
    await server.start()
    application = build_application(settings, server.token, base_url=server.base_url, services=services)
    await application.initialize()
    assert application.post_init is not None and application.post_shutdown is not None
    await application.post_init(application)
    runtime = application.bot_data[RUNTIME_KEY]
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0.0, timeout=5)
    try:
        assert runtime.workers is not None and runtime.workers.processes == 2
        assert services._answerer is None  # this process answers nothing: it loaded no answer path
        chat = server.private(admin)

        async def ask(text: str) -> str:
            mark = server.mark()
            await server.send(chat, admin, text)
            [reply] = await server.replies(mark, chat.id, 1)
            return reply.text

        answer = await ask(QUESTIONS[0])
        assert "560" in answer and "[1]" in answer
        assert "Mosul" in await ask("/brief Mosul")
        assert "Answering: in 2 worker processes" in await ask("/stats")
        (articles / "lanterns.md").write_text(LANTERNS, encoding="utf-8")
        mark = server.mark()
        await server.send(chat, admin, "/reload")
        [progress] = await server.replies(mark, chat.id, 1)
        await server.wait_for(lambda: any("Reload finished" in edit for edit in progress.edits))
        assert "4,200" in await ask("How many paper lanterns did the Port Ellery festival organisers release?")
    finally:
        await application.updater.stop()
        await application.stop()
        await application.post_shutdown(application)
        await application.shutdown()
        await server.stop()
    assert runtime.workers.processes == 0  # closed with the bot


def test_workers_answer_from_a_chroma_server(tmp_path: Path, embedder: Embedder) -> None:
    """As docker-compose deploys it: the index in a real `chroma run` server, two workers reading it."""
    from tests.chroma import ChromaServer

    server = ChromaServer(tmp_path / "chroma-data")
    server.start()
    try:
        options = {"chroma_mode": "http", "chroma_host": "127.0.0.1", "chroma_port": server.port}
        services = make_services(tmp_path / "var", embedder, **options)
        assert services.ingestor.ingest([ARTICLES]).ok
        workers = AnswerWorkers(services.settings, 2)
        workers.start()
        try:
            answers = [workers.answer(QUESTIONS[1]) for _ in range(2)]
            assert all("$250,000" in answer.text and answer.citations for answer in answers)
            assert same(answers[0], services.answerer.answer(QUESTIONS[1]))
        finally:
            workers.close()
    finally:
        server.stop()
