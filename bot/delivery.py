"""Getting every outgoing request to Telegram through its faults: flood limits, 5xx, dropped connections, bad HTML."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from html import unescape
from typing import Any

from telegram.error import BadRequest, NetworkError
from telegram.ext import AIORateLimiter

logger = logging.getLogger(__name__)

# Methods whose text is parsed as HTML; when Telegram cannot parse it they are resent as plain text.
_TEXT_METHODS = {"sendMessage", "editMessageText"}
_TAG = re.compile(r"<[^<>]*>")


def plain_text(html: str) -> str:
    """What a user would read of `html`: tags dropped, entities decoded."""
    return unescape(_TAG.sub("", html))


def is_parse_error(exc: BadRequest) -> bool:
    """Telegram refused the message's markup ("can't parse entities")."""
    return "can't parse entities" in str(exc).lower() or "can't find end tag" in str(exc).lower()


class ResilientRateLimiter(AIORateLimiter):
    """PTB's AIORateLimiter (flood limits, `RetryAfter` waited out) that also survives transient faults.

    - A 5xx answer or a dropped or refused connection is retried with exponential backoff
      (`backoff`, doubling, `retries` times: 0.5 + 1 + 2 + 4 + 8 s by default, enough to ride out a
      Bot API server that is gone for ten seconds). Telegram has no idempotency key, so a connection
      dropped after Telegram acted on a message could, in principle, send it twice; losing an
      answer is the worse failure.
    - A message Telegram refuses to parse as HTML is sent once more as plain text, so a formatting
      bug costs the user the formatting, not the answer.

    `getUpdates` never reaches a rate limiter; PTB's updater retries it with its own backoff.
    """

    def __init__(self, *, max_retries: int = 2, retries: int = 5, backoff: float = 0.5) -> None:
        super().__init__(max_retries=max_retries)
        self.retries = retries
        self.backoff = backoff

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        delay = self.backoff
        attempt = 0
        while True:
            try:
                return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
            except BadRequest as exc:
                if endpoint not in _TEXT_METHODS or not data.get("parse_mode") or not is_parse_error(exc):
                    raise
                logger.warning("%s refused as HTML (%s); sending it as plain text", endpoint, exc)
                # `args` holds this same dict: the retry sends the plain text.
                data["text"] = plain_text(str(data.get("text", "")))
                data.pop("parse_mode", None)
                data.pop("entities", None)
            except NetworkError as exc:  # 5xx, refused or dropped connections, timeouts (BadRequest handled above)
                if attempt >= self.retries:
                    logger.error("%s failed after %d retries: %s", endpoint, attempt, exc)
                    raise
                attempt += 1
                logger.warning("%s failed (%s); retry %d of %d in %.1f s", endpoint, exc, attempt, self.retries, delay)
                await asyncio.sleep(delay)
                delay *= 2
