"""A real PostgreSQL server for tests: Debian's binaries, a cluster made with initdb in a temporary folder,
listening on 127.0.0.1 only (and a Unix socket in that folder), stopped and removed after the test.

PostgreSQL refuses to run as root; run as root (a container, CI), the cluster is made and run as the
`postgres` user the Debian package creates (`runuser`). pytest-postgresql starts the same binaries but
cannot drop root, which is why this small fixture is used instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chroma import free_port

DATABASE = "newsbot"


def binaries() -> Path | None:
    """The folder of Debian's PostgreSQL binaries (the newest installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def require_binaries() -> Path:
    """The binaries; under CI (environment variable CI) their absence fails the test, elsewhere it skips it."""
    found = binaries()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's binaries are missing: .ci/run installs Debian's postgresql for this test")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return found


class PostgresServer:
    """One cluster in a temporary folder: `start()`, `url`, `stop()`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="newsbot-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as the package's postgres user
            shutil.chown(self.folder, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, text=True, cwd=self.folder)

    def start(self, timeout: float = 60.0) -> None:
        binaries = self.bin_dir
        self._run(str(binaries / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=100"
        self._run(
            str(binaries / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE)
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [*self._as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                cwd=self.folder,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def postgres_server() -> Iterator[PostgresServer]:
    """The body of a fixture: a started server, stopped afterwards."""
    server = PostgresServer(require_binaries())
    server.start()
    try:
        yield server
    finally:
        server.stop()
