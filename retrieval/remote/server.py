"""`newsbot worker`: an answer worker as a service of its own, answering questions and briefings over HTTP.

The bot (or several) asks it through `RemoteWorkers` (client.py) instead of answering in its own
processes: the workers then run in containers or on machines of their own, all reading one Chroma
server (`chroma_mode = "http"`). The service answers with tornado (which python-telegram-bot's webhook
server already brings), in `threads` threads of one process, the way the bot answers in its own:

- `POST /answer` `{"question": "...", "options": {"as_of": "2016-08-01", ...}}` → `{"answer": {...}}`; with
  `"stream": true`, NDJSON lines instead: `{"text": "..."}` each time a chat model's checked answer grows
  (as `on_text` sees it in the bot's own process), then `{"answer": {...}}` (or `{"error": ...}`)
- `POST /brief` `{"topic": "...", "options": {"since": ..., "sent": [...], ...}}` → `{"briefing": {...}}`
- `POST /refresh` → `{"current": bool}`: builds the live collection's keyword index now, beside the one in use
- `POST /forget` → `{}`: forgets what it remembers of questions (benchmarks)
- `GET /health` → 200 `{"ready": true, "chunks": N, ...}` once its models and index are loaded and the
  index answers; else 503 `{"ready": false, "problem": "..."}`. `GET /live` → 200 while it runs.

It asks for no credentials (answering only reads the index): its port belongs on the deployment's own
network, never published. Errors are `{"error": KIND, "message": "..."}`: 400 `bad_request` (no other
worker would take it either), 503 `not_ready` (still loading) or `index_unavailable` (the Chroma server
cannot be reached), 500 `failed`.

Started before its index can be read (the Chroma server is not up yet), it keeps trying, waiting longer
each time, and says why in its health. Once loaded, it looks every `REFRESH_SECONDS` for a change of the
live collection (an ingest or a reload by the bot, which shares the Chroma server) and builds the new
keyword index beside the one in use, as the bot's own worker processes do; each question checks too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

from config import Settings
from retrieval.index.store import StoreUnavailable
from retrieval.remote.wire import (
    ANSWER_OPTIONS,
    BRIEF_OPTIONS,
    WireError,
    answer_to_json,
    briefing_to_json,
    dumps,
    options_from_json,
)
from retrieval.service import Services

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
# Waits between two tries to load the models and index: doubling from the first to the last, then the last.
RETRY_FIRST_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0


class Worker:
    """The services of one worker process, loaded in the background, and whether they can answer yet."""

    def __init__(self, settings: Settings, threads: int, refresh_seconds: float = REFRESH_SECONDS) -> None:
        if threads < 1:
            raise ValueError("an answer worker needs at least one thread")
        self.services = Services(settings)
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="answer")
        self.refresh_seconds = refresh_seconds
        self.loaded = threading.Event()
        self.answered = 0  # questions and briefings answered since start
        self.problem = "loading its models and index"
        self._stop = threading.Event()
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="refresh")
        self._build: Future[None] | None = None
        self._building = threading.Lock()
        self._thread = threading.Thread(target=self._load_then_follow, name="load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._builder.shutdown(wait=False, cancel_futures=True)
        self.services.close()

    def _load_then_follow(self) -> None:
        wait = RETRY_FIRST_SECONDS
        while not self._stop.is_set():
            try:
                self.services.warm_up()
                chunks = self.services.store.count()
            except Exception as exc:  # whatever stops it loading, the health check says it and it tries again
                self.problem = f"could not load its models and index: {type(exc).__name__}: {exc}"
                logger.error("%s; trying again in %.0f s", self.problem, wait)
                self._stop.wait(wait)
                wait = min(wait * 2, RETRY_MAX_SECONDS)
                continue
            self.problem = ""
            self.loaded.set()
            logger.info("ready: %d chunks in the live collection", chunks)
            break
        said = ""
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
                said = ""
            except Exception as exc:  # the Chroma server away for a while: answered from the index in use
                why = f"{type(exc).__name__}: {exc}"
                if why != said:  # once, not every few seconds
                    logger.warning("could not look for a new collection: %s", why)
                said = why

    def refresh(self) -> bool:
        """Build the live collection's keyword index beside the one in use; True once it is in use."""
        with self._building:  # asked by the look every few seconds and by the bot (POST /refresh)
            if self._build is not None:
                if not self._build.done():
                    return False
                error, self._build = self._build.exception(), None
                if error is not None:
                    raise error
            retriever = self.services.retriever
            if retriever.current:
                return True
            self._build = self._builder.submit(retriever.refresh)
            return False

    def health(self) -> dict[str, Any]:
        """Ready (`ready`), and the live collection's chunk count, or why not (`problem`). Blocks on the index."""
        if not self.loaded.is_set():
            return {"ready": False, "problem": self.problem, "pid": os.getpid()}
        try:
            chunks = self.services.store.count()
        except Exception as exc:
            return {"ready": False, "problem": f"the index does not answer: {type(exc).__name__}: {exc}", "pid": os.getpid()}
        return {"ready": True, "chunks": chunks, "answered": self.answered, "threads": self.threads, "pid": os.getpid()}

    def forget(self) -> None:
        if self.services.reader is not None:
            self.services.reader.forget()
        self.services.retriever.forget_windows()


class _Handler(RequestHandler):
    """JSON in, JSON out; errors as `{"error", "message"}`."""

    worker: Worker

    def initialize(self, worker: Worker) -> None:
        self.worker = worker

    def reply(self, status: int, data: object) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dumps(data))

    def fail(self, status: int, kind: str, message: str) -> None:
        self.reply(status, {"error": kind, "message": message})

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise WireError(f"the body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise WireError("the body must be a JSON object")
        return data

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.fail(status_code, "failed", self._reason)

    async def run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """`function(*args, **kwargs)` in the answer threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.worker.pool, partial(function, *args, **kwargs))


class _Asked(_Handler):
    """A question or a topic: answered once the worker is loaded."""

    field: str
    accepted: frozenset[str]
    streams = False  # whether a request may ask for the text as it is written (`"stream": true`)

    async def post(self) -> None:
        try:
            data = self.body()
            text = data.get(self.field)
            if not isinstance(text, str) or not text.strip():
                raise WireError(f"{self.field} must be a non-empty string")
            options = options_from_json(data.get("options", {}), self.accepted)
            stream = data.get("stream", False)
            if not isinstance(stream, bool) or (stream and not self.streams):
                raise WireError("stream must be true or false, and only answers stream")
        except WireError as exc:
            self.fail(400, "bad_request", str(exc))
            return
        if not self.worker.loaded.is_set():
            self.fail(503, "not_ready", f"the answer worker is not ready: {self.worker.problem}")
            return
        self._streaming = False
        pushed: asyncio.Queue[str] = asyncio.Queue()
        if stream:
            loop = asyncio.get_running_loop()
            options["on_text"] = lambda so_far: loop.call_soon_threadsafe(pushed.put_nowait, so_far)
        work = asyncio.ensure_future(self.answer(text, options))
        while stream and not work.done():
            waiting = asyncio.ensure_future(pushed.get())
            await asyncio.wait({work, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                waiting.cancel()
            else:
                await self._line({"text": waiting.result()})
        while not pushed.empty():
            await self._line({"text": pushed.get_nowait()})
        try:
            result = await work
        except StoreUnavailable as exc:
            await self._end(503, {"error": "index_unavailable", "message": str(exc)})
            return
        except Exception as exc:
            logger.exception("could not answer")
            await self._end(500, {"error": "failed", "message": f"{type(exc).__name__}: {exc}"})
            return
        self.worker.answered += 1  # on the event loop: one writer
        await self._end(200, result)

    async def _line(self, data: object) -> None:
        """One line of a streamed reply (NDJSON): the answer so far, sent at once."""
        if not self._streaming:
            self._streaming = True
            self.set_status(200)
            self.set_header("Content-Type", "application/x-ndjson; charset=utf-8")
        try:
            self.write(dumps(data) + b"\n")
            await self.flush()
        except StreamClosedError:  # the bot went away (or gave up on this worker): the answer is finished unseen
            pass

    async def _end(self, status: int, data: object) -> None:
        """The reply: as its status and body, or, once text was streamed, as the last line (an error one included)."""
        if not self._streaming:
            self.reply(status, data)
            return
        await self._line(data)
        if not self._finished:
            self.finish()

    async def answer(self, text: str, options: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class _Answer(_Asked):
    field, accepted, streams = "question", ANSWER_OPTIONS, True

    async def answer(self, text: str, options: dict[str, Any]) -> dict[str, Any]:
        answer = await self.run(self.worker.services.answerer.answer, text, **options)
        return {"answer": answer_to_json(answer)}


class _Brief(_Asked):
    field, accepted = "topic", BRIEF_OPTIONS

    async def answer(self, text: str, options: dict[str, Any]) -> dict[str, Any]:
        briefing = await self.run(self.worker.services.briefer.brief, text, **options)
        return {"briefing": briefing_to_json(briefing)}


class _Refresh(_Handler):
    async def post(self) -> None:
        if not self.worker.loaded.is_set():
            self.fail(503, "not_ready", f"the answer worker is not ready: {self.worker.problem}")
            return
        try:
            current = await asyncio.to_thread(self.worker.refresh)
        except StoreUnavailable as exc:
            self.fail(503, "index_unavailable", str(exc))
            return
        self.reply(200, {"current": current})


class _Forget(_Handler):
    async def post(self) -> None:
        if self.worker.loaded.is_set():
            await asyncio.to_thread(self.worker.forget)
        self.reply(200, {})


class _Health(_Handler):
    async def get(self) -> None:
        status = await asyncio.to_thread(self.worker.health)
        self.reply(200 if status["ready"] else 503, status)


class _Live(_Handler):
    def get(self) -> None:
        self.reply(200, {"live": True, "pid": os.getpid()})


def _log_request(handler: RequestHandler) -> None:
    """Failures only: a health check every few seconds would fill the log."""
    status = handler.get_status()
    if status >= 500 and handler.request.path not in ("/health", "/live"):
        logger.warning("%d %s %s", status, handler.request.method, handler.request.path)


def application(worker: Worker) -> Application:
    routes: list[Any] = [
        (path, handler, {"worker": worker})
        for path, handler in (
            ("/answer", _Answer),
            ("/brief", _Brief),
            ("/refresh", _Refresh),
            ("/forget", _Forget),
            ("/health", _Health),
            ("/live", _Live),
        )
    ]
    return Application(routes, log_function=_log_request)


async def serve(settings: Settings, host: str, port: int, threads: int) -> None:
    """Listen on host:port and answer until SIGINT or SIGTERM."""
    if settings.chroma_mode == "embedded":
        # Seen here: a worker that opened the embedded store before another process first wrote the collection
        # failed every question after ("Error creating hnsw segment reader: Nothing found on disk").
        logger.warning(
            "the index is the embedded store in %s: a worker service reads what another process (the bot) writes,"
            ' which a Chroma server is made for (chroma_mode = "http"); use the embedded store only when it is'
            " ingested before the workers start",
            settings.chroma_path,
        )
    worker = Worker(settings, threads)
    server = application(worker).listen(port, address=host, xheaders=False)
    worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    logger.info("answer worker listening on http://%s:%d (%d threads)", host, port, threads)
    try:
        await stop.wait()
    finally:
        server.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), 10)
        worker.close()
        logger.info("answer worker stopped")


def run(settings: Settings, listen: str, threads: int) -> int:
    """`newsbot worker`: 0 after a clean stop, 2 for a bad --listen."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        print(f"newsbot worker: --listen must be HOST:PORT, got {listen!r}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings, host.strip("[]"), int(port), threads))
    return 0
