"""Per-user rate limit: a sliding one-minute window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most `per_minute` requests per user in any 60 seconds; 0 means no limit."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.window = window
        self._hits: dict[int, deque[float]] = {}

    def allow(self, user_id: int) -> bool:
        """Record a request and say whether it is within the limit."""
        if self.per_minute <= 0:
            return True
        now = self.clock()
        hits = self._hits.setdefault(user_id, deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return False
        hits.append(now)
        return True

    def retry_after(self, user_id: int) -> float:
        """Seconds until the user may ask again."""
        hits = self._hits.get(user_id)
        if not hits or len(hits) < self.per_minute:
            return 0.0
        return max(0.0, self.window - (self.clock() - hits[0]))
