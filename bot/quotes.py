"""The citations behind recent answers, so a button under an answer can show its exact quote."""

from __future__ import annotations

import itertools
from collections import OrderedDict

from retrieval.answer.types import Citation


class QuoteCache:
    """Citations by answer key, the oldest forgotten first once `size` answers are kept."""

    def __init__(self, size: int = 2000) -> None:
        self.size = size
        self._keys = itertools.count(1)
        self._answers: OrderedDict[int, list[Citation]] = OrderedDict()

    def add(self, citations: list[Citation]) -> int:
        key = next(self._keys)
        self._answers[key] = citations
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)
        return key

    def get(self, key: int, n: int) -> Citation | None:
        for citation in self._answers.get(key, []):
            if citation.n == n:
                return citation
        return None
