"""The seams of the answer layer: where one backend can stand in for another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from retrieval.answer.types import Draft
from retrieval.passages import Passage, Query


class Retriever(Protocol):
    """Finds the passages most likely to answer a query (search/hybrid.py; the naive peer in evaluation)."""

    def retrieve(self, query: Query, top_k: int | None = None) -> list[Passage]:
        """Ranked passages, best first."""
        ...


class AnswerGenerator(Protocol):
    """Writes a grounded reply from passages alone (answer/extractive.py, answer/llm.py)."""

    def generate(self, query: Query, passages: list[Passage]) -> Draft:
        """A cited draft, or a refusal when the passages do not hold the answer."""
        ...


@runtime_checkable
class StreamingGenerator(Protocol):
    """A generator that can show its answer while writing it (answer/llm.py)."""

    def generate(self, query: Query, passages: list[Passage], on_text: Callable[[str], None] | None = None) -> Draft:
        """As AnswerGenerator.generate; `on_text` is called with the checked answer so far each time it grows."""
        ...

    def streams(self) -> bool:
        """Whether it shows its answer while writing it (a runtime check needs a member of its own)."""
        ...


class EvidenceGate(Protocol):
    """Decides whether passages hold enough evidence to answer at all: the refusal gate every answerer shares."""

    def admits(self, query: Query, passages: list[Passage]) -> bool:
        """True when some sentence of the passages answers the query well enough to be worth writing up."""
        ...
