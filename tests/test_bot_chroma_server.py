"""The bot on a real `chroma run` server: two bot processes sharing it, and the server restarted under a running bot.

As behind a load balancer in webhook mode, two `newsbot serve` processes answer from one Chroma
server: a /reload done through one is answered from by the other, without a restart. And when
the Chroma server goes away and comes back, questions in between get "try again shortly" and the
bot answers again afterwards, without a restart.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_application
from bot.handlers.errors import UNAVAILABLE
from retrieval.index.embedding import Embedder
from tests.botapi import BotAPIServer, User, post_update
from tests.chroma import ChromaServer, free_port
from tests.conftest import ARTICLES, make_services
from tests.test_bot_serve import USER, listening, running, serve

TROOPS = "How many additional troops did Ash Carter announce for Iraq in July 2016?"
HARBOUR = "How much will the Port Ellery harbour crossing cost?"
HARBOUR_ARTICLE = (
    "---\ntitle: Harbour crossing plan approved\nsource: Ellery Courier\npublished: 2016-08-02\n---\n"
    "Port Ellery council approved the harbour bridge and tunnel plan on Tuesday.\n\n"
    "The council said the harbour crossing would cost 37 million dollars and open in 2019.\n"
)


@pytest.fixture
async def api() -> AsyncIterator[BotAPIServer]:
    server = BotAPIServer(token="987654:SERVE-secret_token_value")
    await server.start()
    yield server
    await server.stop()


def http_options(chroma: ChromaServer) -> dict[str, Any]:
    return {"chroma_mode": "http", "chroma_host": "127.0.0.1", "chroma_port": chroma.port}


async def test_chroma_server_restart_while_the_bot_runs(
    chroma: ChromaServer, api: BotAPIServer, tmp_path: Path, embedder: Embedder
) -> None:
    services = make_services(tmp_path / "var", embedder, **http_options(chroma))
    assert services.ingestor.ingest([ARTICLES]).ok
    application = build_application(services.settings, api.token, base_url=api.base_url, services=services)
    await application.initialize()
    assert application.post_init is not None and application.updater is not None
    await application.post_init(application)
    await application.start()
    await application.updater.start_polling(poll_interval=0.0, timeout=2)
    try:
        user = User(61, "Rae")
        chat = api.private(user)

        async def ask() -> str:
            mark = api.mark()
            await api.send(chat, user, TROOPS)
            [reply] = await api.replies(mark, chat.id)
            return reply.text

        assert "560" in await ask()
        await asyncio.to_thread(chroma.stop)
        assert await ask() == UNAVAILABLE
        assert await ask() == UNAVAILABLE
        await asyncio.to_thread(chroma.start)
        assert "560" in await ask()  # the same bot, not restarted
    finally:
        await application.updater.stop()
        await application.stop()
        assert application.post_shutdown is not None
        await application.post_shutdown(application)
        await application.shutdown()


async def test_two_bot_processes_share_one_chroma_server(
    chroma: ChromaServer, api: BotAPIServer, tmp_path: Path, embedder: Embedder
) -> None:
    articles = tmp_path / "articles"
    shutil.copytree(ARTICLES, articles)
    assert make_services(tmp_path / "seed", embedder, **http_options(chroma)).ingestor.ingest([articles]).ok
    env = {
        "NEWSBOT_CHROMA_MODE": "http",
        "NEWSBOT_CHROMA_HOST": "127.0.0.1",
        "NEWSBOT_CHROMA_PORT": str(chroma.port),
        "NEWSBOT_ARTICLES_DIR": str(articles),
    }
    ports = free_port(), free_port()
    urls = [f"http://127.0.0.1:{port}/telegram" for port in ports]
    admin_chat = api.private(USER)
    reader = User(62, "Kit")
    reader_chat = api.private(reader)
    update_ids = iter(range(1, 100))

    async def ask(url: str, user: User, text: str, count: int = 1) -> list[Any]:
        chat = admin_chat if user is USER else reader_chat
        mark = api.mark()
        update = {"update_id": next(update_ids), "message": api.new_message(chat, user, text)}
        assert await asyncio.to_thread(post_update, url, update, "s3cret") == 200
        return await api.replies(mark, chat.id, count, timeout=120)

    def process(name: str, index: int) -> Any:
        args = ("--webhook", urls[index], "--listen", f"127.0.0.1:{ports[index]}", "--secret-token", "s3cret")
        return serve(api, tmp_path / name, *args, env=env)

    async with running(await process("one", 0)), running(await process("two", 1)):
        await asyncio.gather(listening(ports[0], 240), listening(ports[1], 240))
        assert "560" in (await ask(urls[1], reader, TROOPS))[0].text
        assert "37 million" not in (await ask(urls[1], reader, HARBOUR))[0].text

        (articles / "harbour.md").write_text(HARBOUR_ARTICLE)
        [progress] = await ask(urls[0], USER, "/reload")  # through the first process
        await api.wait_for(lambda: "Reload finished" in progress.text, timeout=240)
        assert "Added: 1" in progress.text

        [answer] = await ask(urls[1], reader, HARBOUR)  # answered by the second, never restarted
        assert "37 million" in answer.text and "Harbour crossing plan approved" in answer.text
