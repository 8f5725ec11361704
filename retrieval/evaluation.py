"""Scoring answers against questions with known answers (the definitions in the eval README)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.answers import Answer


def normalise(text: str) -> str:
    """Lower-cased with whitespace collapsed: how gold strings are matched."""
    return re.sub(r"\s+", " ", text).strip().lower()


def contains(text: str, gold: str) -> bool:
    """True when `text` holds `gold`; "a|b" accepts either spelling."""
    haystack = normalise(text)
    return any(normalise(option) in haystack for option in gold.split("|"))


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class SeedResult:
    id: str
    type: str
    question: str
    passed: bool
    answer: str
    refused: bool
    cited: list[str]
    why: str = ""


@dataclass
class SeedReport:
    """Counts per question type: how many passed of how many."""

    results: list[SeedResult] = field(default_factory=list)

    def counts(self) -> dict[str, tuple[int, int]]:
        table: dict[str, tuple[int, int]] = {}
        for result in self.results:
            passed, total = table.get(result.type, (0, 0))
            table[result.type] = (passed + result.passed, total + 1)
        return table

    @property
    def failures(self) -> list[SeedResult]:
        return [result for result in self.results if not result.passed]


def judge_seed(item: dict[str, Any], answer: Answer) -> SeedResult:
    """Did `answer` meet the bar of a seed question of its type?"""
    kind = item["type"]
    golds: list[str] = item.get("answers", [])
    sources = set(item.get("sources", []))
    cited_files = [Path(c.path).name for c in answer.citations if c.path]
    passed, why = False, ""
    if kind == "negative":
        passed = answer.refused and not answer.citations
        why = "" if passed else "answered instead of refusing"
    elif answer.refused:
        why = "refused"
    elif kind == "fact":
        correct = any(contains(answer.text, gold) for gold in golds)
        cited = any(
            Path(c.path or "").name in sources and any(contains(c.quote, gold) for gold in golds)
            for c in answer.citations
        )
        passed = correct and cited
        why = "" if passed else ("wrong answer" if not correct else "no citation of a source quoting the answer")
    else:  # conflict and briefing: every item must be mentioned
        missing = [gold for gold in golds if not contains(answer.text, gold)]
        passed = not missing and bool(answer.citations)
        why = "" if passed else f"missing {missing}"
    return SeedResult(item["id"], kind, item["question"], passed, answer.text, answer.refused, cited_files, why)


def evaluate_seed(items: list[dict[str, Any]], ask: Callable[[dict[str, Any]], Answer]) -> SeedReport:
    """Ask every seed question and judge each answer."""
    return SeedReport([judge_seed(item, ask(item)) for item in items])
