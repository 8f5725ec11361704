"""Questions answered in worker processes, so that questions asked at the same time use every core.

Answering is mostly Python: in one process, threads wait for each other on the interpreter lock, and
four questions at once go about 1.3 times as fast as one after the other on two cores, whatever the
machine has (bench/RESULTS.md, "Answers in worker processes"). With `answer_processes = N`, the bot
answers in N processes instead, each with its own models and indexes: N times the memory of the
answering side, for throughput that grows with the cores.

Each worker is a `ProcessPoolExecutor` of one process (spawned, never forked: ONNX Runtime and Chroma
keep threads of their own that a fork would not copy), so that a reload can reach every one of them.
A question goes to the worker with the fewest questions in hand. A worker that dies is started again,
and the question it held is asked once more.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from config import Settings
    from retrieval.answer.briefing import Briefing
    from retrieval.answer.types import Answer
    from retrieval.service import Services

logger = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerError(RuntimeError):
    """A worker process could not start (its models or index failed to load)."""


# -- in each worker process ------------------------------------------------------------------

_services: Services | None = None


def _start(settings: Settings) -> None:
    """Build and warm this process's services (the executor's initializer)."""
    global _services
    from retrieval.service import Services

    # Ctrl-C in a terminal reaches the whole process group: the serving process stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _services = Services(settings)
    _services.warm_up()


def _here() -> Services:
    assert _services is not None, "the worker's initializer has not run"
    return _services


def _ready() -> int:
    """The worker's chunk count: proves it started, and that it reads the index."""
    return _here().store.count()


def _pid() -> int:
    return os.getpid()


def _answer(question: str, options: dict[str, Any]) -> Answer:
    return _here().answerer.answer(question, **options)


def _brief(topic: str, options: dict[str, Any]) -> Briefing:
    return _here().briefer.brief(topic, **options)


_builder = ThreadPoolExecutor(1, thread_name_prefix="refresh")
_build: Future[None] | None = None


def _refresh() -> bool:
    """Build the live collection's keyword index beside the one in use; True once it is in use.

    The build runs in a thread of the worker, so that questions reaching the worker meanwhile are
    answered from the index in use (as in the bot's own process) instead of waiting behind it.
    """
    global _build
    if _build is not None:
        if not _build.done():
            return False
        error, _build = _build.exception(), None
        if error is not None:
            raise error
    retriever = _here().retriever
    if retriever.current:
        return True
    _build = _builder.submit(retriever.refresh)
    return False


def _forget() -> None:
    services = _here()
    if services.reader is not None:
        services.reader.forget()
    services.retriever.forget_windows()


# -- in the serving process --------------------------------------------------------------------


class AnswerWorkers:
    """`answer`/`aanswer` and `brief`/`abrief` as `Answerer` and `Briefer` offer them, run in `processes` workers."""

    streams = False  # an answer comes back whole from a process

    def __init__(self, settings: Settings, processes: int) -> None:
        if processes < 1:
            raise ValueError("answer workers need at least one process")
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._workers = [self._new_worker() for _ in range(processes)]
        self._busy = [0] * processes

    @property
    def processes(self) -> int:
        return len(self._workers)

    @property
    def description(self) -> str:
        """Where questions are answered, for /stats."""
        return f"in {self.processes} worker processes"

    def _new_worker(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=self._context, initializer=_start, initargs=(self.settings,))

    def start(self) -> None:
        """Start every worker and wait until each has loaded its models and index."""
        futures = [worker.submit(_ready) for worker in self._workers]
        for number, future in enumerate(futures):
            try:
                future.result()
            except Exception as exc:
                self.close()
                why = "see its log above" if isinstance(exc, BrokenProcessPool) else f"{type(exc).__name__}: {exc}"
                raise WorkerError(f"answer worker {number + 1} of {len(futures)} did not start ({why})") from exc

    def answer(self, question: str, **options: Any) -> Answer:
        return self._call(_answer, question, options).result()

    async def aanswer(self, question: str, **options: Any) -> Answer:
        return await asyncio.wrap_future(self._call(_answer, question, options))

    def brief(self, topic: str, **options: Any) -> Briefing:
        return self._call(_brief, topic, options).result()

    async def abrief(self, topic: str, **options: Any) -> Briefing:
        return await asyncio.wrap_future(self._call(_brief, topic, options))

    def refresh(self, poll_s: float = 0.1) -> None:
        """Every worker builds the keyword index of the live collection now (after a reload), and
        answers from the index in use until then; returns when all of them answer from the new one."""
        while not all(self._on_each(_refresh)):
            time.sleep(poll_s)

    def pids(self) -> list[int]:
        """The worker processes' ids, in worker order (starting any that has not started)."""
        return self._on_each(_pid)

    def forget(self) -> None:
        """Every worker forgets what it remembers of questions (benchmarks: each question new)."""
        self._on_each(_forget)

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.shutdown(wait=True, cancel_futures=True)

    def _on_each(self, function: Callable[[], T]) -> list[T]:
        """`function()` on every worker; a worker found dead is replaced, and the new one asked instead."""
        with self._lock:
            workers = list(self._workers)
        futures = [self._submit_to(number, worker, function) for number, worker in enumerate(workers)]
        results = []
        for number, (worker, future) in enumerate(zip(workers, futures, strict=True)):
            try:
                results.append(future.result())
            except BrokenProcessPool:
                results.append(self._submit_to(number, self._replace(number, worker), function).result())
        return results

    def _submit_to(self, number: int, worker: ProcessPoolExecutor, function: Callable[[], T]) -> Future[T]:
        try:
            return worker.submit(function)
        except BrokenProcessPool:
            return self._replace(number, worker).submit(function)

    def _replace(self, number: int, dead: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """Worker `number`, started again if it is still `dead` (another caller may have done it already)."""
        with self._lock:
            if number >= len(self._workers):
                raise WorkerError("the answer workers are closed")
            replaced = self._workers[number] is dead
            if replaced:
                self._workers[number] = self._new_worker()
                self._busy[number] = 0
            worker = self._workers[number]
        if replaced:
            logger.error("answer worker %d died; a new one starts", number + 1)
            dead.shutdown(wait=False, cancel_futures=True)
        return worker

    def _call(self, function: Callable[[str, dict[str, Any]], T], text: str, options: dict[str, Any]) -> Future[T]:
        """Run `function(text, options)` on the least busy worker; once more on a new one if that one dies."""
        result: Future[T] = Future()

        def submit(retry: bool) -> None:
            with self._lock:
                if not self._workers:
                    result.set_exception(WorkerError("the answer workers are closed"))
                    return
                number = min(range(len(self._workers)), key=self._busy.__getitem__)
                worker = self._workers[number]
                self._busy[number] += 1
            try:
                future = worker.submit(function, text, options)
            except RuntimeError as exc:  # dead (BrokenProcessPool), or closed meanwhile
                done(number, worker, retry, exc, None)
                return
            future.add_done_callback(lambda f: done(number, worker, retry, f.exception(), f))

        def done(number: int, worker: ProcessPoolExecutor, retry: bool, error: BaseException | None, future: Any) -> None:
            broken = isinstance(error, BrokenProcessPool)
            with self._lock:
                if number < len(self._workers) and self._workers[number] is worker:
                    self._busy[number] -= 1
            if broken:
                try:
                    self._replace(number, worker)  # the first question to find it dead replaces it
                except WorkerError as closed:
                    error, retry = closed, False
            if broken and retry:
                submit(retry=False)
            elif error is not None:
                result.set_exception(error)
            else:
                result.set_result(future.result())

        submit(retry=True)
        return result
