"""What the bot has served since it started, for /stats."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Usage:
    """Questions served, refusals and recent latencies."""

    questions: int = 0
    refusals: int = 0
    briefings: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))

    def record(self, *, refused: bool, latency_ms: float) -> None:
        self.questions += 1
        self.refusals += int(refused)
        self.latencies_ms.append(latency_ms)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None
