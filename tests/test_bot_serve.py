"""`newsbot serve` itself, as a separate process, against the loopback Bot API server.

Telegram cannot be reached from here, so `tests/botapi.py` stands in for it; the command reads
TELEGRAM_BOT_TOKEN and TELEGRAM_API_BASE_URL exactly as in production. One run long-polls, the
other runs PTB's webhook server; both must start, register their commands, answer /start, stop
cleanly on SIGINT, and never write the token to their logs. The index is empty here (the point
is the wiring; answers are covered by test_bot_e2e.py), except for the run that answers in worker
processes, which must answer through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.botapi import BotAPIServer, Fault, User, post_update

ROOT = Path(__file__).resolve().parent.parent
USER = User(55, "Sam")
# A real `newsbot serve` process loads the embedding model and opens Chroma at start.
pytestmark = pytest.mark.model


@pytest.fixture
async def server() -> AsyncIterator[BotAPIServer]:
    server = BotAPIServer(token="987654:SERVE-secret_token_value")
    await server.start()
    yield server
    await server.stop()


async def serve(
    server: BotAPIServer, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """`newsbot -v serve ARGS` with its token and Bot API URL from the environment, as in production."""
    env = {
        **os.environ,
        **(env or {}),
        "TELEGRAM_BOT_TOKEN": server.token,
        "TELEGRAM_API_BASE_URL": server.base_url,
        "NEWSBOT_ADMIN_IDS": str(USER.id),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "newsbot",
        "-v",
        "--data-dir",
        str(tmp_path / "var"),
        "serve",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop(process: asyncio.subprocess.Process) -> tuple[int | None, str]:
    """Ctrl-C, as a user would; the exit status and everything the bot logged."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 120)
    except TimeoutError:
        process.kill()
        raise
    return process.returncode, stderr.decode()


@contextlib.asynccontextmanager
async def running(process: asyncio.subprocess.Process) -> AsyncIterator[list[str]]:
    """Stop the bot after the block; it must exit 0. If the block failed, its log is printed for the report."""
    logs: list[str] = []
    try:
        yield logs
    except BaseException:
        _, log = await stop(process)
        print(f"newsbot serve log:\n{log[-5000:]}")
        raise
    status, log = await stop(process)
    logs.append(log)
    assert status == 0, f"exit status {status}; log ends:\n{log[-3000:]}"


async def test_serve_long_polling(server: BotAPIServer, tmp_path: Path) -> None:
    async with running(await serve(server, tmp_path)) as logs:
        await server.wait_for(lambda: server.commands, timeout=240)
        chat = server.private(USER)
        mark = server.mark()
        await server.send(chat, USER, "/start")
        [reply] = await server.replies(mark, chat.id, timeout=60)
        assert "news articles" in reply.text
    assert server.calls_to("getUpdates") and server.calls_to("deleteWebhook")
    assert "ready" in logs[0]
    assert server.token not in logs[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def listening(port: int, timeout: float = 60.0) -> None:
    """Wait until the webhook server accepts connections: PTB sets the webhook before it starts serving."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, f"nothing listens on port {port}"
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def test_serve_webhook(server: BotAPIServer, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    process = await serve(server, tmp_path, "--webhook", url, "--listen", f"127.0.0.1:{port}", "--secret-token", "s3cret")
    async with running(process) as logs:
        await server.wait_for(lambda: server.webhook and server.commands, timeout=240)
        assert server.webhook is not None
        assert server.webhook["url"] == url and server.webhook["secret_token"] == "s3cret"
        await listening(port)
        chat = server.private(USER)
        update = {"update_id": 1, "message": server.new_message(chat, USER, "/start")}
        assert await asyncio.to_thread(post_update, url, update, "wrong") == 403
        mark = server.mark()
        assert await asyncio.to_thread(post_update, url, update, "s3cret") == 200
        [reply] = await server.replies(mark, chat.id, timeout=60)
        assert "news articles" in reply.text
    assert not server.calls_to("getUpdates")
    assert server.token not in logs[0]


async def test_token_never_in_logs_or_messages_through_faults_and_errors(server: BotAPIServer, tmp_path: Path) -> None:
    """Every path that could carry the token (its URLs fail, a handler raises with a traceback) at DEBUG level."""
    secret = server.token.split(":", 1)[1]
    async with running(await serve(server, tmp_path)) as logs:
        await server.wait_for(lambda: server.commands, timeout=240)
        chat = server.private(USER)
        stranger = User(56, "Eve")
        stranger_chat = server.private(stranger)
        server.fail("getUpdates", Fault.drop(), Fault.server_error(502))
        server.fail("sendMessage", Fault.flood(1), Fault.server_error(500), Fault.drop(), Fault.bad_html())
        server.fail("download", Fault.server_error(500))
        mark = server.mark()
        await server.send(chat, USER, "/start")
        [greeting] = await server.replies(mark, chat.id, timeout=120)
        await server.send(stranger_chat, stranger, "/reload")  # refused, and the refusal logged
        [refusal] = await server.replies(mark, stranger_chat.id, timeout=120)
        await server.send_document(chat, USER, "note.txt", b"A short article about the harbour.\n")
        [_, sorry] = await server.replies(mark, chat.id, 2, timeout=120)  # the download fails: logged, user told
    log = logs[0]
    assert "news articles" in greeting.text and "only the bot's admins" in refusal.text
    assert sorry.text.startswith("Sorry, something went wrong")
    assert "Traceback" in log and "admin-only /reload refused for user id 56" in log
    assert not any(server.pending_faults(method) for method in ("getUpdates", "sendMessage", "download"))
    assert server.token not in log and secret not in log
    assert not any(secret in sent.html for sent in server.sent)


async def test_serve_with_answer_worker_processes(server: BotAPIServer, tmp_path: Path) -> None:
    """answer_processes = 2: the command starts two workers, answers through them, and on Ctrl-C
    (which reaches the workers too, as they share the terminal's process group) stops them and exits 0."""
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    command = [sys.executable, "-m", "newsbot", "--data-dir", str(tmp_path / "var"), "ingest"]  # the sample articles
    ingest = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env={**os.environ, **offline})
    assert await ingest.wait() == 0
    process = await serve(server, tmp_path, env={"NEWSBOT_ANSWER_PROCESSES": "2"})
    async with running(process) as logs:
        await server.wait_for(lambda: server.commands, timeout=240)
        chat = server.private(USER)
        mark = server.mark()
        await server.send(chat, USER, "How many additional troops did Ash Carter announce for Iraq in July 2016?")
        [reply] = await server.replies(mark, chat.id, timeout=120)
        assert "560" in reply.text and "[1]" in reply.text
        children = [
            int(pid) for task in Path(f"/proc/{process.pid}/task").iterdir() for pid in (task / "children").read_text().split()
        ]
        assert len(children) >= 2  # the workers (and multiprocessing's resource tracker)
        for pid in children:  # what Ctrl-C in the terminal would do to them
            os.kill(pid, signal.SIGINT)
    assert "Traceback" not in logs[0], logs[0][-3000:]
    assert not [line for line in logs[0].splitlines() if "KeyboardInterrupt" in line]


async def test_feeds_and_digests_survive_a_restart_of_serve(server: BotAPIServer, tmp_path: Path) -> None:
    """`newsbot serve` twice on one data directory: what the first run was told is there in the second."""
    from datetime import UTC, datetime, timedelta

    from tests.test_feeds import NewsSite
    from tests.websites import Website

    at = (datetime.now(UTC) + timedelta(hours=12)).strftime("%H:%M")  # not due while the test runs
    website = Website().start()
    try:
        site = NewsSite(website, 2)
        env = {"NEWSBOT_FETCH_ALLOWED_HOSTS": "127.0.0.1", "NEWSBOT_FETCH_HOST_PAUSE_SECONDS": "0"}
        chat = server.private(USER)
        group = server.group(-100555, "Desk")
        async with running(await serve(server, tmp_path, env=env)):
            await server.wait_for(lambda: server.commands, timeout=240)
            mark = server.mark()
            await server.send(chat, USER, f"/feeds add {site.feed_url}")
            [progress] = await server.replies(mark, chat.id, timeout=120)
            await server.wait_for(lambda: "last poll" in progress.text, timeout=240)
            assert "2 new; 2 articles" in progress.text
            mark = server.mark()
            await server.send(group, USER, f"/digest Port Ellery at {at}")  # USER is a bot admin
            [made] = await server.replies(mark, group.id, timeout=60)
            assert made.text.startswith(f"Digest 1: every day at {at} UTC")
        async with running(await serve(server, tmp_path, env=env)):
            await server.wait_for(lambda: len(server.calls_to("setMyCommands")) >= 4, timeout=240)
            mark = server.mark()
            await server.send(chat, USER, "/feeds")
            await server.send(group, USER, "/digest")
            [feeds] = await server.replies(mark, chat.id, timeout=60)
            [digests] = await server.replies(mark, group.id, timeout=60)
            assert "1. Ellery Gazette" in feeds.text and "2 articles" in feeds.text
            assert f"1. Port Ellery at {at} UTC" in digests.text
    finally:
        website.stop()
