"""A real `chroma run` server on loopback for tests, that a test can stop and start again."""

from __future__ import annotations

import shutil
import socket
import sys
import time
import urllib.request
from pathlib import Path

from tests.processes import ServerProcess

# The chroma command beside this Python (a venv not on PATH), else the one on PATH.
_BESIDE = Path(sys.executable).parent / "chroma"
CHROMA = str(_BESIDE) if _BESIDE.exists() else (shutil.which("chroma") or "chroma")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChromaServer(ServerProcess):
    """`chroma run` on 127.0.0.1 with its data in `path`; `stop()` and `start()` again keep the data and port."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        super().__init__(path.parent / f"{path.name}.log")
        self.path = path
        self.port = port or free_port()

    def start(self, timeout: float = 90.0) -> None:
        """Start the server and wait until it answers its heartbeat."""
        if not shutil.which(CHROMA):
            raise RuntimeError("the chroma command (from the chromadb package) is not installed")
        process = self.launch([CHROMA, "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)])
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=2):
                    return
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"chroma server did not start:\n{self.log_path.read_text()[-3000:]}") from None
                time.sleep(0.2)
