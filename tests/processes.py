"""A server that a test runs as a child process on loopback, its output appended to a log file."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO


class ServerProcess:
    """Starts one command (`launch`) and stops it again (`stop`: terminate, then kill after 30 s)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[str] | None = None

    def launch(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self._log = self.log_path.open("a")
        self._process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        return self._process

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
