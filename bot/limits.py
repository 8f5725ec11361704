"""Per-user rate limit (a sliding one-minute window) and the cap on answers in progress."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator


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


class AnswerSlots:
    """At most `limit` questions and briefings in progress at once (being answered or waiting their turn); 0: no cap.

    Answers are computed one at a time (the model and index are shared), so without a cap a flood
    of questions would make every user wait longer and longer; past the cap a question is turned
    away at once with a "busy" reply instead.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_progress = 0

    @contextlib.contextmanager
    def claim(self) -> Iterator[bool]:
        """True while holding a slot; False (and nothing held) when every slot is taken."""
        if self.limit and self.in_progress >= self.limit:
            yield False
            return
        self.in_progress += 1
        try:
            yield True
        finally:
            self.in_progress -= 1
