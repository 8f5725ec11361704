"""Build the image and run docker-compose.yml with podman on this machine's loopback; ask questions through it.

    .venv/bin/python deploy/try_compose.py [--build] [--image TAG] [--compose CMD] [--keep]

Telegram cannot be reached from here, so the bot talks to the Bot API stand-in of the tests
(tests/botapi.py), started here on 127.0.0.1; deploy/compose.loopback.yml puts every service on the
host's loopback and runs the Chroma server from the image (see there why). The question is posted to
the bot's webhook as Telegram would post it, with the secret token; the bot hands it to one of the two
answer worker services. Then worker-1 is killed and the question asked again: worker-2 answers it.
Prints what it ran, the image's size, the build time (with --build), the time from `up` to the
answer, the answers and the health checks. Not part of `make test`: it needs podman, and minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.botapi import BotAPIServer, User, post_update  # noqa: E402

QUESTION = "How many additional troops did Ash Carter announce for Iraq in July 2016?"
USER = User(4242, "Deployer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sh(command: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ {shlex.join(command)}", flush=True)
    result = subprocess.run(command, env=env, cwd=ROOT, text=True, capture_output=True)
    output = (result.stdout + result.stderr).strip()
    if output:
        print("\n".join(f"  {line}" for line in output.splitlines()[-25:]), flush=True)
    if check and result.returncode:
        raise SystemExit(f"failed (exit {result.returncode}): {shlex.join(command)}")
    return result


def compose_command(given: str | None) -> list[str]:
    if given:
        return shlex.split(given)
    beside = Path(sys.executable).parent / "podman-compose"
    for candidate in (str(beside), shutil.which("podman-compose"), str(ROOT / ".venv-compose/bin/podman-compose")):
        if candidate and Path(candidate).exists():
            return [candidate]
    return ["podman", "compose"]


def healthy(container: str) -> bool:
    return subprocess.run(["podman", "healthcheck", "run", container], capture_output=True).returncode == 0


def run_health_checks(project: str, stop: threading.Event) -> None:
    """Run the containers' health checks every 2 s: without systemd, podman runs them only when asked."""
    while not stop.wait(2):
        names = subprocess.run(
            ["podman", "ps", "--filter", f"label=io.podman.compose.project={project}", "--format", "{{.Names}}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        for name in names:
            subprocess.run(["podman", "healthcheck", "run", name], capture_output=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build the image first (deploy/build-image.sh)")
    parser.add_argument("--image", default="localhost/newsbot:latest")
    parser.add_argument("--compose", help="the compose command (default: podman-compose, else `podman compose`)")
    parser.add_argument("--keep", action="store_true", help="leave the services running")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the answer")
    args = parser.parse_args()

    if args.build:
        started = time.monotonic()
        sh(["deploy/build-image.sh", args.image])
        print(f"build: {time.monotonic() - started:.0f} s")
    size = sh(["podman", "image", "inspect", "--format", "{{.Size}}", args.image]).stdout.strip()
    print(f"image {args.image}: {int(size) / 1e9:.2f} GB")

    server = BotAPIServer(token=f"{secrets.randbelow(10**9)}:try-{secrets.token_urlsafe(24)}")
    await server.start()
    work = Path(tempfile.mkdtemp(prefix="newsbot-compose-"))
    (work / "secrets").mkdir(mode=0o700)
    webhook_secret = secrets.token_hex(16)
    (work / "secrets" / "telegram_bot_token").write_text(server.token)
    (work / "secrets" / "telegram_webhook_secret").write_text(webhook_secret)
    for secret in (work / "secrets").iterdir():
        secret.chmod(0o444)  # read by the container's user, as a compose secret from a file is
    chroma_port, webhook_port, worker1_port, worker2_port = free_port(), free_port(), free_port(), free_port()
    webhook_url = f"http://127.0.0.1:{webhook_port}/telegram"
    project = f"newsbot-try-{os.getpid()}"
    env = {
        **os.environ,
        "NEWSBOT_IMAGE": args.image,
        "NEWSBOT_SECRETS_DIR": str(work / "secrets"),
        "CHROMA_PORT": str(chroma_port),
        "WORKER1_PORT": str(worker1_port),
        "WORKER2_PORT": str(worker2_port),
        "NEWSBOT_WEBHOOK_URL": webhook_url,
        "NEWSBOT_WEBHOOK_LISTEN": f"127.0.0.1:{webhook_port}",
        "TELEGRAM_API_BASE_URL": server.base_url,
        "NEWSBOT_ADMIN_IDS": str(USER.id),
    }
    compose = [*compose_command(args.compose), "-p", project, "-f", "docker-compose.yml", "-f", "deploy/compose.loopback.yml"]
    stop_checks = threading.Event()
    checks = threading.Thread(target=run_health_checks, args=(project, stop_checks), daemon=True)
    checks.start()
    status = 1
    started = time.monotonic()

    async def up(*services: str) -> None:
        """`compose up` the services, then wait for each one's health check (podman runs them only when asked)."""
        result = await asyncio.to_thread(sh, [*compose, "up", "-d", "--no-build", *services], env, False)
        if result.returncode:
            raise SystemExit(f"compose up failed (exit {result.returncode})")
        for service in services:
            print(f"$ podman healthcheck run {project}_{service}_1   # until healthy")
            while not await asyncio.to_thread(healthy, f"{project}_{service}_1"):
                if time.monotonic() - started > args.timeout:
                    raise SystemExit(f"{service} never became healthy")
                await asyncio.sleep(1)
            print(f"{service} healthy {time.monotonic() - started:.1f} s after up")

    chat = server.private(USER)
    update_ids = iter(range(1, 100))

    async def ask(question: str) -> str:
        """Post `question` to the webhook as Telegram would; the bot's reply."""
        mark = server.mark()
        update = {"update_id": next(update_ids), "message": server.new_message(chat, USER, question)}
        deadline = time.monotonic() + args.timeout
        while (code := await asyncio.to_thread(post_update, webhook_url, update, webhook_secret)) != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"the webhook does not take the update (last status {code})")
            await asyncio.sleep(0.5)
        [reply] = await server.replies(mark, chat.id, timeout=args.timeout)
        return reply.text

    try:
        # podman-compose waits for `condition: service_healthy` only with podman 4.6 or later, and only
        # where podman runs health checks itself (systemd): here the order is kept by hand, as it would be.
        await up("chroma")
        await up("worker-1", "worker-2")
        await up("bot")
        await server.wait_for(lambda: server.webhook is not None, timeout=args.timeout)
        registered = time.monotonic() - started
        print(f"webhook registered {registered:.1f} s after up: {server.webhook and server.webhook.get('url')}")
        assert server.webhook is not None
        print(f"webhook secret token as in the secret file: {server.webhook.get('secret_token') == webhook_secret}")
        environment = await asyncio.to_thread(
            subprocess.run, ["podman", "exec", f"{project}_bot_1", "env"], capture_output=True, text=True
        )
        print(f"bot token in the bot's environment: {server.token in environment.stdout}")
        reply = await ask(QUESTION)
        answered = time.monotonic() - started
        print(f"answer {answered:.1f} s after `up` (question posted {answered - registered:.1f} s after the webhook was set):")
        print("\n".join(f"  | {line}" for line in reply.splitlines()))
        for service in ("chroma", "worker-1", "worker-2", "bot"):
            for _ in range(60):
                health = await asyncio.to_thread(sh, ["podman", "healthcheck", "run", f"{project}_{service}_1"], None, False)
                if health.returncode == 0:
                    break
                await asyncio.sleep(2)
            print(f"{service} health check: {'healthy' if health.returncode == 0 else 'unhealthy'}")
        await asyncio.to_thread(sh, ["podman", "kill", f"{project}_worker-1_1"], None, False)
        again = await ask(QUESTION)
        print("the same question with worker-1 killed:")
        print("\n".join(f"  | {line}" for line in again.splitlines()))
        await asyncio.to_thread(
            sh,
            [
                "podman",
                "ps",
                "-a",
                "--filter",
                f"label=io.podman.compose.project={project}",
                "--format",
                "{{.Names}}  {{.Status}}  {{.Image}}",
            ],
        )
        status = 0 if "[1]" in reply and "[1]" in again else 1
    finally:
        stop_checks.set()
        for service in ("worker-1", "worker-2", "bot"):
            await asyncio.to_thread(sh, [*compose, "logs", service], env, False)
        if not args.keep:
            await asyncio.to_thread(sh, [*compose, "down", "-v"], env, False)
        await server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
