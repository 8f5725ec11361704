"""The deployment: docker-compose.yml, the Dockerfile, its entry point, the health check, and `serve` waiting for Telegram.

No container engine runs in the test suite (deploy/try_compose.py builds and runs the image with
podman, by hand), so the files are checked for what a deployer relies on, and the parts that run
outside a container are run for real: the entry point (seeding, ingest, a failed ingest stopping it),
the health check, and `serve`'s start against the loopback Bot API stand-in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from bot.app import TOKEN_VARIABLE, secret, wait_for_telegram
from bot.health import FILE_NAME, Heartbeat, check, main
from config import load_settings
from tests.botapi import BotAPIServer
from tests.chroma import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "retrieval" / "ingest" / "samples"


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, one a line (continuations joined), comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def chromadb_requirement() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [requirement] = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "chromadb"]
    return requirement


def test_compose_runs_the_webhook_bot_against_a_healthy_chroma_server_with_its_token_as_a_secret() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"bot", "chroma", "worker-1", "worker-2"}
    chroma, bot = services["chroma"], services["bot"]
    # The server release is one the pinned client speaks, and the one the tests run (test_chroma_server.py).
    server_version = chroma["image"].rpartition(":")[2]
    assert chroma["image"] == f"chromadb/chroma:{server_version}"
    assert server_version in chromadb_requirement().specifier and server_version == version("chromadb")
    assert "healthcheck" in chroma and chroma["healthcheck"]["test"][0] == "CMD"
    assert "ports" not in chroma  # only the bot reaches the index
    assert bot["depends_on"]["chroma"]["condition"] == "service_healthy"
    assert bot["build"]["context"] == "." and set(bot["build"]["args"]) == {"BASE_IMAGE", "TORCH_INDEX_URL"}
    assert bot["command"][:3] == ["newsbot", "serve", "--webhook"] and "--listen" in bot["command"]
    env = bot["environment"]
    assert (env["NEWSBOT_CHROMA_MODE"], env["NEWSBOT_CHROMA_HOST"].split(":-")[-1].rstrip("}")) == ("http", "chroma")
    # Questions go to the two worker services, not to processes of the bot's own.
    assert "NEWSBOT_ANSWER_PROCESSES" not in env
    workers = load_settings(answer_workers=env["NEWSBOT_ANSWER_WORKERS"].split(":-", 1)[1].rstrip("}")).answer_workers
    assert workers == ["http://worker-1:8500", "http://worker-2:8500"]
    # The token and the webhook secret: compose secrets from files, never values in the environment.
    assert "TELEGRAM_BOT_TOKEN" not in env and "TELEGRAM_WEBHOOK_SECRET" not in env
    assert set(bot["secrets"]) == {"telegram_bot_token", "telegram_webhook_secret"}
    for name in bot["secrets"]:
        assert compose["secrets"][name]["file"].endswith(f"/{name}")
    assert env["TELEGRAM_BOT_TOKEN_FILE"] == "/run/secrets/telegram_bot_token"
    assert env["TELEGRAM_WEBHOOK_SECRET_FILE"] == "/run/secrets/telegram_webhook_secret"
    assert bot["healthcheck"]["test"][1:4] == ["python", "-m", "bot.health"] and "--live" not in bot["healthcheck"]["test"]
    assert str(bot["user"]).split(":")[0] not in ("0", "root")
    assert set(compose["volumes"]) == {"chroma-data", "bot-data"}
    assert "bot-data:/data" in bot["volumes"]


def test_compose_runs_two_answer_worker_services_that_the_bot_waits_for() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    bot = services["bot"]
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        assert worker["image"] == bot["image"]  # the same image, another command
        assert worker["command"] == ["newsbot", "worker", "--listen", "0.0.0.0:8500"]
        assert worker["depends_on"]["chroma"]["condition"] == "service_healthy"
        assert bot["depends_on"][name]["condition"] == "service_healthy"  # the bot starts once both are ready
        assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "retrieval.remote.check", "--port", "8500"]
        env = worker["environment"]
        assert env["NEWSBOT_CHROMA_MODE"] == "http" and env["NEWSBOT_CHROMA_HOST"] == bot["environment"]["NEWSBOT_CHROMA_HOST"]
        assert "ports" not in worker and "secrets" not in worker  # only the bot reaches them; they need no token
        assert str(worker["user"]).split(":")[0] not in ("0", "root")


def test_dockerfile_builds_on_any_base_with_cpu_torch_first_and_runs_as_the_owner_of_what_it_writes() -> None:
    lines = dockerfile()
    assert lines[0].startswith("ARG BASE_IMAGE=python:3.11")
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms and all(line.startswith("FROM ${BASE_IMAGE}") for line in froms)
    # torch==2.13.0 (CPU) is installed before the project, from a build argument's index or pip's own settings.
    torch = next(i for i, line in enumerate(lines) if "pip install" in line and "torch==2.13.0" in line)
    project = next(i for i, line in enumerate(lines) if "pip install /tmp/wheels/newsbot-" in line)
    assert torch < project and 'pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0' in lines[torch]
    assert any(line == "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" for line in lines[:torch])
    assert "[extra" not in lines[project] and "[" not in lines[project].split("newsbot-")[1].split()[0]
    # The user newsbot owns /data and the model cache before anything is written there, and the model is
    # exported as that user (a root export made the cache unreadable, issue 29).
    assert any("useradd --uid 10001" in line and "newsbot" in line for line in lines)
    assert any("install -d -o newsbot -g newsbot" in line and "/data" in line for line in lines)
    assert any("install -d -o newsbot -g newsbot" in line and "/opt/newsbot/models" in line for line in lines)
    user = lines.index("USER newsbot")
    assert all(not line.startswith("USER ") for line in lines[user + 1 :])
    export = next(i for i, line in enumerate(lines) if "OnnxEmbedder(cache_dir='/opt/newsbot/models')" in line)
    assert export > user
    assert "ENV" in " ".join(lines) and any("NEWSBOT_MODEL_CACHE=/opt/newsbot/models" in line for line in lines)
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert 'CMD ["python", "-m", "bot.health"' in health
    assert 'ENTRYPOINT ["newsbot-entrypoint"]' in lines and 'CMD ["newsbot", "serve"]' in lines
    assert "COPY deploy/entrypoint.sh /usr/local/bin/newsbot-entrypoint" in lines
    assert os.access(ROOT / "deploy" / "entrypoint.sh", os.X_OK)


def test_dockerignore_keeps_the_local_environment_and_data_out_of_the_image() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "var", ".env", "secrets"} <= ignored


def entrypoint(tmp_path: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """deploy/entrypoint.sh as the container runs it: the installed `newsbot` on PATH, data in tmp_path."""
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "NEWSBOT_DATA_DIR": str(tmp_path / "data"),
        "NEWSBOT_ARTICLES_DIR": str(tmp_path / "data" / "articles"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        **env,
    }
    environment.pop("TELEGRAM_BOT_TOKEN", None)
    environment.pop("TELEGRAM_BOT_TOKEN_FILE", None)
    return subprocess.run(
        ["sh", str(ROOT / "deploy" / "entrypoint.sh"), *command], env=environment, capture_output=True, text=True, timeout=600
    )


def test_entrypoint_runs_an_answer_worker_as_given_without_articles(tmp_path: Path) -> None:
    result = entrypoint(tmp_path, "newsbot", "worker", "--help")
    assert result.returncode == 0 and "--listen" in result.stdout
    assert not (tmp_path / "data" / "articles").exists() and "copied" not in result.stderr


def test_entrypoint_seeds_an_empty_articles_folder_and_runs_other_commands_as_given(tmp_path: Path) -> None:
    result = entrypoint(tmp_path, "sh", "-c", "echo ran")
    copied = sorted(p.name for p in (tmp_path / "data" / "articles").iterdir())
    assert copied == sorted(p.name for p in SAMPLES.glob("*.txt")) and copied
    assert f"copied the {len(copied)} bundled sample articles" in result.stderr
    # Not `serve`: the command runs as given, with nothing ingested before it.
    assert result.stdout == "ran\n" and result.returncode == 0
    # A folder with articles (a mounted one) is left as it is.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "one.txt").write_text("A headline\n\nSome text of an article.\n")
    entrypoint(tmp_path, "true", NEWSBOT_ARTICLES_DIR=str(tmp_path / "mine"))
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["one.txt"]


def test_a_failed_ingest_stops_the_container_before_serve(tmp_path: Path) -> None:
    # The Chroma server it is told to use is not there: ingest fails, serve must not start.
    result = entrypoint(
        tmp_path,
        "newsbot",
        "serve",
        NEWSBOT_CHROMA_MODE="http",
        NEWSBOT_CHROMA_HOST="127.0.0.1",
        NEWSBOT_CHROMA_PORT=str(free_port()),
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("newsbot-entrypoint: ingest of") and "the bot is not started" in last
    assert "cannot reach the Chroma server" in result.stderr
    assert "Traceback" not in result.stderr and "BotFather" not in result.stderr  # serve never ran


@pytest.mark.model
def test_entrypoint_ingests_the_samples_then_starts_serve(tmp_path: Path) -> None:
    # Without a token, serve (started by the entry point after the ingest) stops with its instructions.
    result = entrypoint(tmp_path, "newsbot", "serve")
    assert result.stdout.startswith("ingest: "), result.stdout + result.stderr
    assert "BotFather" in result.stderr and result.returncode == 2
    # The second start ingests nothing new.
    again = entrypoint(tmp_path, "newsbot", "serve")
    assert "ingest:" in again.stdout and "copied" not in again.stderr


def test_the_exported_model_folder_is_readable_by_other_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's folder was mkdtemp's 0700: an image exporting as one user left it unreadable to another."""
    from retrieval.index import encoder
    from retrieval.index.embedding import OnnxEmbedder

    def export(model_dir: Path, out: Path, max_tokens: int) -> None:
        # Only the folder is under test here; the real export is tests/test_embedding.py's.
        (out / "model.onnx").write_bytes(b"graph")

    monkeypatch.setattr(encoder, "export_encoder", export)
    embedder = OnnxEmbedder(cache_dir=tmp_path)
    embedder._export()
    assert (embedder.folder / "model.onnx").read_bytes() == b"graph"
    assert embedder.folder.stat().st_mode & 0o777 == 0o755


def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSBOT_TEST_SECRET", raising=False)
    monkeypatch.delenv("NEWSBOT_TEST_SECRET_FILE", raising=False)
    assert secret("NEWSBOT_TEST_SECRET") == ("", "NEWSBOT_TEST_SECRET is not set")
    path = tmp_path / "secret"
    monkeypatch.setenv("NEWSBOT_TEST_SECRET_FILE", str(path))
    value, why = secret("NEWSBOT_TEST_SECRET")
    assert not value and "cannot be read" in why and str(path) in why
    path.write_text("\n")
    assert secret("NEWSBOT_TEST_SECRET") == ("", f"NEWSBOT_TEST_SECRET is not set and its file {path} is empty")
    path.write_text("123:abc\n")
    assert secret("NEWSBOT_TEST_SECRET") == ("123:abc", "")
    monkeypatch.setenv("NEWSBOT_TEST_SECRET", "456:def")  # the environment first
    assert secret("NEWSBOT_TEST_SECRET") == ("456:def", "")


async def test_serve_waits_for_a_token_telegram_accepts_with_one_line_a_try_and_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No token yet, a token Telegram refuses, Telegram gone, then all well: one line each, waits doubling."""
    server = BotAPIServer(token="424242:RIGHT-token_value_abcdef")
    await server.start()
    loop = asyncio.get_running_loop()
    token_file = tmp_path / "telegram_bot_token"
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    monkeypatch.setenv(f"{TOKEN_VARIABLE}_FILE", str(token_file))
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # what changes between tries, instead of waiting
        waits.append(seconds)
        if len(waits) == 1:
            token_file.write_text("424242:WRONG-token_value_abcdef")
        elif len(waits) == 2:
            token_file.write_text(server.token)
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        elif len(waits) == 3:
            asyncio.run_coroutine_threadsafe(server.start(), loop).result()

    caplog.set_level(logging.INFO, logger="bot.app")
    try:
        token = await asyncio.to_thread(wait_for_telegram, server.base_url, sleep)
    finally:
        await server.stop()
    assert token == server.token
    assert waits == [5.0, 10.0, 20.0]
    lines = [r for r in caplog.records if r.name == "bot.app" and r.levelno >= logging.ERROR]
    assert len(lines) == 3 and all(r.exc_info is None for r in lines)  # one line a try, no traceback
    messages = [r.getMessage() for r in lines]
    assert "no Telegram bot token" in messages[0] and str(token_file) in messages[0]
    assert "refused the bot token" in messages[1]
    assert "cannot be reached" in messages[2]
    assert all(m.endswith(f"trying again in {w:.0f} s") for m, w in zip(messages, waits))
    assert not any("WRONG-token" in m or server.token in m for m in messages)


def test_serve_gives_up_after_the_tries_it_is_given(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, "424242:SOME-token_value_abcdef")
    waits: list[float] = []
    assert wait_for_telegram(f"http://127.0.0.1:{free_port()}/bot", waits.append, tries=3) is None
    assert waits == [5.0, 10.0]
    assert "giving up after 3 tries" in caplog.records[-1].getMessage()


def test_heartbeat_and_health_check(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    assert check(path, 90) == (False, f"no heartbeat at {path} ([Errno 2] No such file or directory: '{path}')")
    assert asyncio.run(Heartbeat(path, lambda: 42).beat())
    healthy, reason = check(path, 90)
    assert healthy and reason.startswith("ok") and "42 chunks" in reason
    assert not check(path, 90, now=time.time() + 300)[0]  # stale: the bot is stuck or gone
    assert main(["--data-dir", str(tmp_path)]) == 0

    def unreachable() -> None:
        raise ConnectionError("the Chroma server cannot be reached")

    assert not asyncio.run(Heartbeat(path, unreachable).beat())
    healthy, reason = check(path, 90)
    assert not healthy and "the Chroma server cannot be reached" in reason
    assert json.loads(path.read_text())["index_ok"] is False
    assert main(["--data-dir", str(tmp_path)]) == 1
    assert main(["--data-dir", str(tmp_path), "--live"]) == 0  # alive, though not ready


def test_readiness_needs_chunks_in_the_collection(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    assert asyncio.run(Heartbeat(path, lambda: 0).beat())  # the index answers, but holds nothing
    assert check(path, 90) == (False, "the collection is empty: nothing is ingested (newsbot ingest, or /reload)")
    assert check(path, 90, live=True)[0]
    assert not check(path, 90, now=time.time() + 300, live=True)[0]  # a stuck bot is not alive either
    assert asyncio.run(Heartbeat(path, lambda: 7).beat())
    assert check(path, 90)[0]


def test_health_check_runs_alone_and_cheaply(tmp_path: Path) -> None:
    """`python -m bot.health` as the container runs it: the standard library only, exit 1 without a heartbeat."""
    probe = "import sys, bot.health; print(sorted(m for m in ('telegram', 'chromadb', 'torch') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True).stdout == "[]\n"
    result = subprocess.run(
        [sys.executable, "-m", "bot.health", "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1 and "no heartbeat" in result.stdout


def test_readiness_needs_an_answer_worker_when_the_bot_has_worker_services(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    none_ready = "no answer worker is ready: http://worker-1:8500: cannot be reached: ConnectError"
    asyncio.run(Heartbeat(path, lambda: 29, lambda: none_ready).beat())
    assert check(path, 90) == (False, none_ready)
    assert check(path, 90, live=True)[0]  # alive, though not ready
    asyncio.run(Heartbeat(path, lambda: 29, lambda: "").beat())
    assert check(path, 90)[0]
