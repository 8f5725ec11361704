"""The LLM prompts, one text file each, bundled as package data."""

from __future__ import annotations

from importlib import resources


def load_prompt(name: str) -> str:
    """The text of the prompt file `name` (e.g. "answer.txt") in this package."""
    return (resources.files(__name__) / name).read_text(encoding="utf-8")
