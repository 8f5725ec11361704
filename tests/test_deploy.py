"""The container set-up: docker-compose.yml, the Dockerfile, and the health check they run.

No Docker engine runs here, so the files are checked for what matters (a Chroma server the bot
waits for, health checks, a non-root user, the CPU-only torch) and the health check itself is
run for real.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import yaml

from bot.health import FILE_NAME, Heartbeat, check, main

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_the_bot_against_a_healthy_chroma_server() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"bot", "chroma"}
    chroma, bot = services["chroma"], services["bot"]
    # The server release matches the chromadb client the bot installs.
    assert chroma["image"] == f"chromadb/chroma:{version('chromadb')}"
    assert "healthcheck" in chroma and chroma["healthcheck"]["test"][0] == "CMD"
    assert bot["depends_on"]["chroma"]["condition"] == "service_healthy"
    assert bot["build"] == "."
    env = bot["environment"]
    assert (env["NEWSBOT_CHROMA_MODE"], env["NEWSBOT_CHROMA_HOST"], env["NEWSBOT_CHROMA_PORT"]) == ("http", "chroma", "8000")
    assert "TELEGRAM_BOT_TOKEN" in env and ":?" in env["TELEGRAM_BOT_TOKEN"]  # required, never a default
    assert bot["healthcheck"]["test"][1:4] == ["python", "-m", "bot.health"]
    assert str(bot["user"]).split(":")[0] not in ("0", "root")
    assert "ports" not in chroma  # only the bot reaches the index
    assert set(compose["volumes"]) == {"chroma-data", "bot-data"}


def test_dockerfile_is_slim_cpu_non_root_with_a_health_check() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert any("download.pytorch.org/whl/cpu" in line for line in instructions)
    assert any(line.startswith("RUN pip install --index-url") and "torch==" in line for line in instructions)
    users = [i for i, line in enumerate(instructions) if line.startswith("USER ")]
    runs = [i for i, line in enumerate(instructions) if line.startswith("RUN ")]
    assert users and instructions[users[-1]] == "USER newsbot" and users[-1] > runs[-1]
    assert any("useradd" in line and "newsbot" in line for line in instructions)
    health = next(i for i, line in enumerate(instructions) if line.startswith("HEALTHCHECK"))
    assert 'CMD ["python", "-m", "bot.health"' in instructions[health + 1]


def test_heartbeat_and_health_check(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    assert check(path, 90) == (False, f"no heartbeat at {path} ([Errno 2] No such file or directory: '{path}')")
    assert asyncio.run(Heartbeat(path, lambda: 42).beat())
    healthy, reason = check(path, 90)
    assert healthy and reason.startswith("ok")
    assert not check(path, 90, now=time.time() + 300)[0]  # stale: the bot is stuck or gone
    assert main(["--data-dir", str(tmp_path)]) == 0

    def unreachable() -> None:
        raise ConnectionError("the Chroma server cannot be reached")

    assert not asyncio.run(Heartbeat(path, unreachable).beat())
    healthy, reason = check(path, 90)
    assert not healthy and "the Chroma server cannot be reached" in reason
    assert json.loads(path.read_text())["index_ok"] is False
    assert main(["--data-dir", str(tmp_path)]) == 1


def test_health_check_runs_alone_and_cheaply(tmp_path: Path) -> None:
    """`python -m bot.health` as the container runs it: the standard library only, exit 1 without a heartbeat."""
    probe = "import sys, bot.health; print(sorted(m for m in ('telegram', 'chromadb', 'torch') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True).stdout == "[]\n"
    result = subprocess.run(
        [sys.executable, "-m", "bot.health", "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1 and "no heartbeat" in result.stdout
