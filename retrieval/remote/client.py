"""The bot's side of answer worker services (`newsbot worker`, server.py): `RemoteWorkers`.

It offers what `AnswerWorkers` (retrieval/workers.py) offers the bot (`answer`/`aanswer`,
`brief`/`abrief`, `refresh`, `close`), so the bot uses either through one interface; and, unlike
worker processes, it streams: `answer(..., on_text=...)` sees a chat model's checked answer grow on the
worker, as in the bot's own process (`streams`). A question
goes to the worker with the fewest questions in hand, a worker that failed lately last; when a
worker fails (refused, reset mid-way, timed out, not ready, its index out of reach, an error), the
same question goes to the next, each worker tried once. Answering only reads, so asking again is
safe. When none answers, `WorkersUnavailable` says why for each; when each said only that the
Chroma server cannot be reached, it is the store's own `StoreUnavailable`, as in the bot's process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx

from retrieval.index.store import StoreUnavailable
from retrieval.remote.wire import (
    WireError,
    answer_from_json,
    briefing_from_json,
    dumps,
    options_to_json,
)

if TYPE_CHECKING:
    from config import Settings
    from retrieval.answer.briefing import Briefing
    from retrieval.answer.types import Answer

logger = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0
HEALTH_SECONDS = 5.0
# A worker that failed is asked after the others for this long (it is still asked when they fail too).
SET_BACK_SECONDS = 10.0


class WorkersUnavailable(RuntimeError):
    """No answer worker service answered; the message names each and why."""


@dataclass
class _Worker:
    url: str
    busy: int = 0
    failed_at: float = float("-inf")
    problem: str = ""


class RemoteWorkers:
    """Questions and briefings answered by `newsbot worker` services at `urls`, spread across them."""

    streams = True  # answers can be shown while a chat model on the worker writes them

    def __init__(self, urls: list[str], timeout_s: float, *, concurrency: int = 64) -> None:
        if not urls:
            raise ValueError("remote answer workers need at least one URL")
        self._workers = [_Worker(url.rstrip("/")) for url in urls]
        # Never a proxy from the environment: the workers are on the deployment's own network.
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=CONNECT_SECONDS), trust_env=False)
        # The HTTP calls wait in these threads, off the bot's event loop (one per question in hand).
        self._pool = ThreadPoolExecutor(max(concurrency, 4), thread_name_prefix="remote-answer")
        self._lock = threading.Lock()
        self._turn = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteWorkers:
        return cls(
            list(settings.answer_workers),
            settings.answer_worker_timeout_seconds,
            concurrency=settings.max_concurrent_answers or 64,
        )

    @property
    def urls(self) -> list[str]:
        return [worker.url for worker in self._workers]

    @property
    def description(self) -> str:
        """Where questions are answered, for /stats."""
        return f"by {len(self._workers)} worker services ({', '.join(self.urls)})"

    def start(self) -> None:
        """Say which workers are ready; never fails (a worker not ready yet is asked when it is)."""
        for url, ready, detail in self.health():
            if ready:
                logger.info("answer worker %s ready: %s", url, detail)
            else:
                logger.warning("answer worker %s not ready: %s", url, detail)

    def health(self) -> list[tuple[str, bool, str]]:
        """Each worker's URL, whether its health check says ready, and its chunk count or why not."""
        found = []
        for worker in self._workers:
            try:
                response = self._client.get(f"{worker.url}/health", timeout=HEALTH_SECONDS)
                status = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                found.append((worker.url, False, f"cannot be reached: {type(exc).__name__}: {exc}"))
                continue
            if not isinstance(status, dict):
                found.append((worker.url, False, f"not an answer worker (HTTP {response.status_code})"))
                continue
            if response.status_code == 200 and status.get("ready"):
                found.append((worker.url, True, f"{status.get('chunks')} chunks"))
            else:
                found.append((worker.url, False, str(status.get("problem") or f"HTTP {response.status_code}")))
        return found

    def problem(self) -> str:
        """Why no worker is ready, for the bot's readiness; empty while at least one is."""
        health = self.health()
        if any(ready for _, ready, _ in health):
            return ""
        return "no answer worker is ready: " + "; ".join(f"{url}: {detail}" for url, _, detail in health)

    def answer(self, question: str, *, on_text: Callable[[str], None] | None = None, **options: Any) -> Answer:
        """The answer; `on_text`, if given, sees its text grow while a chat model on the worker writes it."""
        body = {"question": question, "options": options_to_json(options), "stream": on_text is not None}
        data = self._ask("/answer", body, on_text)
        return answer_from_json(data["answer"])

    async def aanswer(self, question: str, **options: Any) -> Answer:
        """`answer` off the event loop (`on_text` is called from another thread, as the answerer's is)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(self.answer, question, **options))

    def brief(self, topic: str, **options: Any) -> Briefing:
        data = self._ask("/brief", {"topic": topic, "options": options_to_json(options)})
        return briefing_from_json(data["briefing"])

    async def abrief(self, topic: str, **options: Any) -> Briefing:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(self.brief, topic, **options))

    def refresh(self, poll_s: float = 0.1) -> None:
        """Every worker that can be reached builds the live collection's keyword index now (after a reload),
        answering from the index in use until then; returns when each answers from the new one.

        A worker out of reach is left out: it finds the new collection itself, at its next look or question.
        """
        waiting = list(self._workers)
        while waiting:
            still = []
            for worker in waiting:
                try:
                    response = self._client.post(f"{worker.url}/refresh")
                except httpx.HTTPError as exc:
                    logger.warning("answer worker %s not refreshed: %s: %s", worker.url, type(exc).__name__, exc)
                    continue
                if response.status_code != 200:
                    logger.warning("answer worker %s not refreshed: %s", worker.url, _problem(response))
                elif not response.json().get("current"):
                    still.append(worker)
            waiting = still
            if waiting:
                time.sleep(poll_s)

    def forget(self) -> None:
        """Every worker forgets what it remembers of questions (benchmarks: each question new)."""
        for worker in self._workers:
            self._client.post(f"{worker.url}/forget").raise_for_status()

    def in_hand(self) -> list[int]:
        """Questions and briefings each worker has in hand now, in the order of `urls`."""
        with self._lock:
            return [worker.busy for worker in self._workers]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _order(self) -> list[_Worker]:
        """The workers in the order to ask them: least busy first, those that failed lately last, ties in turn."""
        now = time.monotonic()
        with self._lock:
            self._turn += 1
            count = len(self._workers)
            turns = {id(worker): (index - self._turn) % count for index, worker in enumerate(self._workers)}
            return sorted(
                self._workers,
                key=lambda w: (now - w.failed_at < SET_BACK_SECONDS, w.busy, turns[id(w)]),
            )

    def _ask(self, path: str, body: dict[str, Any], on_text: Callable[[str], None] | None = None) -> dict[str, Any]:
        """POST `body` to the first worker that answers it; raise when none does."""
        content = dumps(body)
        failures: list[tuple[_Worker, str, str]] = []  # (worker, kind, why)
        for worker in self._order():
            with self._lock:
                worker.busy += 1
            try:
                data = self._send(f"{worker.url}{path}", content, on_text)
            except httpx.HTTPError as exc:  # refused, reset mid-way (the worker died), timed out
                failures.append((worker, "unreachable", f"{type(exc).__name__}: {exc or 'no reply'}"))
            except _Failed as failed:
                failures.append((worker, failed.kind, failed.why))
            else:
                with self._lock:
                    worker.problem = ""
                return data
            finally:
                with self._lock:
                    worker.busy -= 1
            failed_worker, _, why = failures[-1]
            with self._lock:
                failed_worker.failed_at, failed_worker.problem = time.monotonic(), why
            logger.warning("answer worker %s failed (%s); asking the next", failed_worker.url, why)
        reasons = "; ".join(f"{worker.url}: {why}" for worker, _, why in failures)
        if all(kind == "index_unavailable" for _, kind, _ in failures):
            raise StoreUnavailable(f"the answer workers cannot reach the index: {reasons}")
        raise WorkersUnavailable(f"no answer worker answered: {reasons}")

    def _send(self, url: str, content: bytes, on_text: Callable[[str], None] | None) -> dict[str, Any]:
        """One worker's reply; with `on_text`, read line by line as the worker streams it."""
        headers = {"Content-Type": "application/json"}
        if on_text is None:
            return _reply(self._client.post(url, content=content, headers=headers))
        with self._client.stream("POST", url, content=content, headers=headers) as response:
            if response.status_code != 200 or not response.headers.get("content-type", "").startswith("application/x-ndjson"):
                response.read()
                return _reply(response)  # nothing streamed: a chat model wrote nothing, or it failed at once
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    raise _Failed("failed", f"a line of its reply is not JSON: {exc}") from exc
                if "text" in item:
                    on_text(str(item["text"]))
                elif "error" in item:
                    raise _Failed(str(item["error"]), str(item.get("message") or ""))
                else:
                    return dict(item)
        raise _Failed("failed", "its reply ended before the answer")


class _Failed(Exception):
    """A worker answered, but not with the answer: `kind` as the server names it, and why."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind, self.why = kind, why


def _reply(response: httpx.Response) -> dict[str, Any]:
    """The JSON of a 200 reply; else `_Failed`, or `WireError` for a request no worker would take."""
    if response.status_code == 200:
        return dict(response.json())
    kind = _kind(response)
    if kind == "bad_request":
        raise WireError(f"the answer worker refused the request: {_problem(response)}")
    raise _Failed(kind, _problem(response))


def _kind(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or "failed")
    except ValueError:
        return "failed"


def _problem(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except ValueError:
        message = None
    return f"HTTP {response.status_code}" + (f": {message}" if message else "")
