"""The Answerer: question in, cited `Answer` out, by retrieving the context and then writing from it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from retrieval.answer.protocols import AnswerGenerator, Retriever, StreamingGenerator
from retrieval.answer.types import Answer
from retrieval.passages import Query

logger = logging.getLogger(__name__)


class Answerer:
    """Question in, `Answer` out: retrieve the context, then write the answer from it."""

    def __init__(
        self,
        retriever: Retriever,
        generator: AnswerGenerator,
        top_k: int = 10,
    ) -> None:
        self.retriever = retriever
        self.generator = generator
        self.top_k = top_k

    def answer(
        self,
        question: str,
        *,
        as_of: date | None = None,
        since: date | None = None,
        until: date | None = None,
        top_k: int | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """The answer; `on_text`, if given, sees its text grow while a streaming generator (the LLM) writes it.

        `on_text` is only ever given checked, cited sentences; a generator that does not stream calls nothing.
        """
        started = time.perf_counter()
        query = Query(question.strip(), as_of=as_of, since=since, until=until)
        passages = self.retriever.retrieve(query, top_k or self.top_k)
        retrieved = time.perf_counter()
        if on_text is not None and isinstance(self.generator, StreamingGenerator):
            draft = self.generator.generate(query, passages, on_text=on_text)
        else:
            draft = self.generator.generate(query, passages)
        finished = time.perf_counter()
        return Answer(
            question=question,
            text=draft.text,
            refused=draft.refused,
            citations=[] if draft.refused else draft.citations,
            passages=passages,
            conflict=draft.conflict,
            evidence=draft.evidence,
            backend=draft.backend,
            fallback=draft.fallback,
            dropped=draft.dropped,
            note=draft.note,
            short_answer=None if draft.refused else draft.short_answer,
            timings_ms={
                "retrieve": (retrieved - started) * 1000,
                "generate": (finished - retrieved) * 1000,
                "total": (finished - started) * 1000,
            },
        )

    async def aanswer(self, question: str, **kwargs: Any) -> Answer:
        """`answer` off the event loop, in a worker thread.

        Answering only reads (the index, the models), and every part is safe to share between threads
        (ONNX Runtime sessions; a tokenizer per thread; a new keyword index built beside the one in use), so
        questions asked at the same time are answered side by side; the bot caps how many
        (setting max_concurrent_answers).
        """
        return await asyncio.to_thread(self.answer, question, **kwargs)
