"""How a gold answer string is matched in a text: one definition for the datasets, the metrics and training."""

from __future__ import annotations

import re


def normalise(text: str) -> str:
    """Lower-cased with whitespace collapsed: how gold strings are matched."""
    return re.sub(r"\s+", " ", text).strip().lower()


def contains(text: str, gold: str) -> bool:
    """True when `text` holds `gold`; "a|b" accepts either spelling."""
    haystack = normalise(text)
    return any(normalise(option) in haystack for option in gold.split("|"))
