"""What travels between the bot and an answer worker service: requests, `Answer`s and `Briefing`s as JSON.

Everything an answer holds crosses whole (the text, citations with their quotes, the passages with
their folded duplicates and windows, refusal, conflict, evidence, short answer, the LLM notes, timings),
so an answer from a worker is equal to the one this process would have made. Floats cross as JSON
numbers, which keep a float64 exactly (and a float32, through float64, too).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date
from typing import Any

import numpy as np

from retrieval.answer.briefing import Briefing, BriefPoint
from retrieval.answer.types import Answer, Citation
from retrieval.passages import Passage

# The options a request may carry, and which of them are dates.
ANSWER_OPTIONS = frozenset({"as_of", "since", "until", "top_k"})
BRIEF_OPTIONS = frozenset({"since", "until", "arrived_after", "sent", "sent_vectors"})
_DATES = frozenset({"as_of", "since", "until"})


class WireError(ValueError):
    """A request or reply that is not what the other side sends; the message says what is wrong."""


def options_to_json(options: dict[str, Any]) -> dict[str, Any]:
    """Keyword options of `answer`/`brief` as JSON values (dates as ISO strings, arrays as lists)."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name in _DATES:
            out[name] = value.isoformat()
        elif name == "sent":
            out[name] = sorted(value)
        elif name == "sent_vectors":
            array = np.asarray(value)
            out[name] = {"dtype": str(array.dtype), "rows": array.tolist()}
        else:
            out[name] = value
    return out


def options_from_json(data: object, allowed: frozenset[str]) -> dict[str, Any]:
    """The keyword options a request carries, checked against `allowed`."""
    if not isinstance(data, dict):
        raise WireError("options must be an object")
    unknown = set(data) - allowed
    if unknown:
        raise WireError(f"unknown options: {', '.join(sorted(unknown))} (accepted: {', '.join(sorted(allowed))})")
    out: dict[str, Any] = {}
    for name, value in data.items():
        try:
            if name in _DATES:
                out[name] = date.fromisoformat(value)
            elif name == "sent":
                out[name] = frozenset(str(item) for item in value)
            elif name == "sent_vectors":
                out[name] = np.asarray(value["rows"], dtype=np.dtype(value["dtype"]))
            elif name in ("top_k", "arrived_after"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise TypeError("expected an integer")
                out[name] = value
        except (TypeError, ValueError, KeyError) as exc:
            raise WireError(f"option {name}: {exc}") from exc
    return out


def answer_to_json(answer: Answer) -> dict[str, Any]:
    """Every field of `answer`, as JSON values."""
    return asdict(answer)


def _passage(data: dict[str, Any]) -> Passage:
    fields = dict(data)
    fields["duplicates"] = tuple(_passage(duplicate) for duplicate in fields.get("duplicates", ()))
    fields["window"] = tuple(fields.get("window", ()))
    return Passage(**fields)


def answer_from_json(data: dict[str, Any]) -> Answer:
    """The `Answer` `answer_to_json` made."""
    try:
        fields = dict(data)
        fields["citations"] = [Citation(**citation) for citation in fields.get("citations", [])]
        fields["passages"] = [_passage(passage) for passage in fields.get("passages", [])]
        return Answer(**fields)
    except (TypeError, KeyError) as exc:
        raise WireError(f"not an answer: {exc}") from exc


def briefing_to_json(briefing: Briefing) -> dict[str, Any]:
    """Every field of `briefing`, the quoted sentences' vectors included (a digest remembers them)."""
    return {
        "topic": briefing.topic,
        "points": [asdict(point) for point in briefing.points],
        "sources": [asdict(source) for source in briefing.sources],
        "message": briefing.message,
        "repeats": briefing.repeats,
        "quote_vectors": [{"dtype": str(vector.dtype), "values": vector.tolist()} for vector in briefing.quote_vectors],
    }


def briefing_from_json(data: dict[str, Any]) -> Briefing:
    """The `Briefing` `briefing_to_json` made."""
    try:
        return Briefing(
            topic=data["topic"],
            points=[BriefPoint(**point) for point in data["points"]],
            sources=[Citation(**source) for source in data["sources"]],
            message=data["message"],
            repeats=data["repeats"],
            quote_vectors=[np.asarray(v["values"], dtype=np.dtype(v["dtype"])) for v in data["quote_vectors"]],
        )
    except (TypeError, KeyError) as exc:
        raise WireError(f"not a briefing: {exc}") from exc


def _plain(value: object) -> object:
    """numpy's scalars and arrays as the JSON numbers and lists they hold (scores are often numpy floats)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(data: object) -> bytes:
    """`data` as the JSON bytes of a request or reply."""
    return json.dumps(data, default=_plain, ensure_ascii=False).encode("utf-8")
