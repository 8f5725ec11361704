"""What the bot has served since it started, for /stats."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Usage:
    """Questions served, refusals, recent latencies, and what the LLM backend did."""

    questions: int = 0
    refusals: int = 0
    briefings: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    # With answer_backend = "llm": answers the model wrote, answers that fell back to the extractive one
    # (or refusals, with llm_fallback = "refuse"), and reply sentences the support check dropped.
    llm_answers: int = 0
    llm_fallbacks: int = 0
    dropped_sentences: int = 0

    def record(
        self, *, refused: bool, latency_ms: float, backend: str = "extractive", fallback: str | None = None, dropped: int = 0
    ) -> None:
        self.questions += 1
        self.refusals += int(refused)
        self.latencies_ms.append(latency_ms)
        self.llm_answers += int(backend == "llm" and not refused)
        self.llm_fallbacks += int(fallback is not None)
        self.dropped_sentences += dropped

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None
