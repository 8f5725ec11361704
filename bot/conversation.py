"""Conversation context: the recent exchanges of each chat and forum topic, for follow-up questions."""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from retrieval.answer.types import Citation

# A chat, and the forum topic in it (None outside topics).
ChatKey = tuple[int, int | None]

# Words that point back at the earlier exchange: a question using them cannot be read alone.
_DEPENDENT = re.compile(
    r"^\s*(and|but|also|so|then|what about|how about)\b|\b(he|she|it|its|they|them|their|theirs|this|that|"
    r"these|those|there|then|him|her|before|after|earlier|later|else|same|other|others)\b",
    re.I,
)


@dataclass
class Exchange:
    """One question, the question actually searched, and the bot messages that answered it."""

    question: str
    searched: str
    message_ids: list[int]
    citations: list[Citation] = field(default_factory=list)
    at: float = 0.0


def follow_up_question(previous: Exchange, question: str) -> str:
    """The question to search for a reply to `previous`.

    A follow-up that leans on the earlier exchange ("and how many before that?", "Which air base
    will most of them work from?") is searched together with the question it follows; one that
    stands on its own (no pronouns, no "and ..." opening) is searched as it is.
    """
    question = question.strip()
    if not _DEPENDENT.search(question) and len(question.split()) > 3:
        return question
    earlier = previous.searched if len(previous.searched) <= 300 else previous.question
    return f"{earlier} {question}"


class Conversations:
    """Recent exchanges per chat/topic: at most `turns` each, forgotten after `ttl` seconds or by reset."""

    def __init__(self, turns: int, ttl: float, max_chats: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self.turns = turns
        self.ttl = ttl
        self.max_chats = max_chats
        self.clock = clock
        self._chats: OrderedDict[ChatKey, deque[Exchange]] = OrderedDict()

    def remember(self, key: ChatKey, exchange: Exchange) -> None:
        if self.turns <= 0:
            return
        exchange.at = self.clock()
        history = self._chats.pop(key, None) or deque(maxlen=self.turns)
        history.append(exchange)
        self._chats[key] = history
        while len(self._chats) > self.max_chats:
            self._chats.popitem(last=False)

    def find(self, key: ChatKey, message_id: int) -> Exchange | None:
        """The live exchange that bot message `message_id` belongs to, if it is still remembered."""
        history = self._chats.get(key)
        if not history:
            return None
        now = self.clock()
        for exchange in reversed(history):
            if message_id in exchange.message_ids:
                return exchange if now - exchange.at <= self.ttl else None
        return None

    def reset(self, key: ChatKey) -> bool:
        """Forget a chat/topic's context; True if there was any."""
        return self._chats.pop(key, None) is not None

    def __len__(self) -> int:
        return len(self._chats)
