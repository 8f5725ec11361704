"""Scoring answers against questions with known answers (the definitions in the eval README)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.answer.types import Answer
from retrieval.evaluation.datasets import EvalQuestion
from retrieval.evaluation.matching import contains

# -- seed questions: each type has its bar -------------------------------------------------


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
    # The reply's short answer, and whether it names a gold answer (None when none was shown).
    short_answer: str | None = None
    short_correct: bool | None = None


@dataclass
class SeedReport:
    """Counts per question type: how many passed of how many."""

    results: list[SeedResult] = field(default_factory=list)

    def counts(self) -> dict[str, tuple[int, int]]:
        """(passed, total) per question type, in the order the types first occur."""
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
            Path(c.path or "").name in sources and any(contains(c.quote, gold) for gold in golds) for c in answer.citations
        )
        passed = correct and cited
        why = "" if passed else ("wrong answer" if not correct else "no citation of a source quoting the answer")
    else:  # conflict and briefing: every item must be mentioned
        missing = [gold for gold in golds if not contains(answer.text, gold)]
        passed = not missing and bool(answer.citations)
        why = "" if passed else f"missing {missing}"
    short_correct = None if answer.short_answer is None else short_right(answer.short_answer, golds)
    if kind == "fact" and passed and short_correct is False:
        passed, why = False, f"short answer {answer.short_answer!r} is wrong"
    return SeedResult(
        item["id"],
        kind,
        item["question"],
        passed,
        answer.text,
        answer.refused,
        cited_files,
        why,
        answer.short_answer,
        short_correct,
    )


def short_right(short: str, golds: list[str] | tuple[str, ...]) -> bool:
    """A short answer is right when it names a gold answer ("560 more troops" for "560"), or is part of one."""
    return any(contains(short, gold) or contains(gold, short) for gold in golds)


def evaluate_seed(items: list[dict[str, Any]], ask: Callable[[dict[str, Any]], Answer]) -> SeedReport:
    """Ask every seed question and judge each answer."""
    return SeedReport([judge_seed(item, ask(item)) for item in items])


# -- retrieval and answer metrics -----------------------------------------------------------

RECALL_AT = (1, 4, 10)


def first_hit(passage_texts: list[str], golds: tuple[str, ...] | list[str], k: int = 10) -> int | None:
    """Rank (1-based) of the first of the top-k passages holding a gold string, or None."""
    for rank, text in enumerate(passage_texts[:k], start=1):
        if any(contains(text, gold) for gold in golds):
            return rank
    return None


def recall_at(hits: list[int | None], k: int) -> float:
    """Share of questions with a gold-holding passage in the top k."""
    return sum(1 for hit in hits if hit is not None and hit <= k) / len(hits) if hits else 0.0


def mrr_at(hits: list[int | None], k: int = 10) -> float:
    """Mean reciprocal rank of the first gold-holding passage, 0 when it is not in the top k."""
    return sum(1.0 / hit for hit in hits if hit is not None and hit <= k) / len(hits) if hits else 0.0


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class QuestionResult:
    """How one system did on one question."""

    id: str
    kind: str
    question: str
    golds: list[str]
    hit_rank: int | None
    refused: bool
    correct: bool
    cited_correct: bool
    answer: str
    cited: list[str]
    latency_ms: float
    retrieve_ms: float
    week: str = ""
    seed_type: str = ""
    evidence: float | None = None
    own_articles: bool | None = None
    # The LLM backend: who wrote the answer shown, why the model's reply was not used, how many of its
    # sentences the support check dropped, and how many sentences shown no cited passage backs (must be 0).
    backend: str = "extractive"
    fallback: str | None = None
    dropped: int = 0
    unbacked_shown: int = 0
    short_answer: str | None = None
    short_correct: bool | None = None


def score_answer(question: EvalQuestion, answer: Answer) -> QuestionResult:
    """Retrieval rank, correctness and citation of one answer, per the README's definitions."""
    golds = list(question.golds)
    correct = not answer.refused and any(contains(answer.text, gold) for gold in golds)
    cited_ids = {citation.doc_id for citation in answer.citations}
    cited_correct = correct and (
        any(contains(citation.quote, gold) for citation in answer.citations for gold in golds)
        or any(p.doc_id in cited_ids and contains(p.text, gold) for p in answer.passages for gold in golds)
    )
    return QuestionResult(
        id=question.id,
        kind=question.kind,
        question=question.question,
        golds=golds,
        hit_rank=first_hit([passage.text for passage in answer.passages], golds) if golds else None,
        refused=answer.refused,
        correct=correct,
        cited_correct=cited_correct,
        answer=answer.text,
        cited=sorted(cited_ids),
        latency_ms=answer.timings_ms.get("total", 0.0),
        retrieve_ms=answer.timings_ms.get("retrieve", 0.0),
        week=question.week,
        seed_type=question.seed_type,
        evidence=answer.evidence,
        own_articles=question.own_articles,
        backend=answer.backend,
        fallback=answer.fallback,
        dropped=answer.dropped,
        unbacked_shown=len(unbacked_sentences(answer)),
        short_answer=answer.short_answer,
        short_correct=None if answer.short_answer is None or answer.refused else short_right(answer.short_answer, golds),
    )


def unbacked_sentences(answer: Answer) -> list[str]:
    """The sentences of an answer that no passage they cite backs, checked from the answer alone.

    A sentence must cite (after renumbering, through the answer's own citations) articles whose
    retrieved passages hold all its figures and most of its terms; only short framing about the
    sources ("The sources differ on this.") may go uncited.
    """
    from retrieval.answer.llm import cited_numbers, is_framing, marked_sentences, strip_markers, supported
    from retrieval.passages import Passage

    if answer.refused:
        return []
    doc_of = {citation.n: citation.doc_id for citation in answer.citations}
    # What each cited article is known by: its retrieved passages, and the sentence quoted from it (a
    # briefing's answer has no passages, only its sources' quotes).
    quoted = [Passage(0, c.doc_id, "", c.title, c.quote, 0.0) for c in answer.citations]
    unbacked = []
    for sentence in marked_sentences(answer.text):
        numbers = cited_numbers(sentence)
        docs = {doc_of.get(n) for n in numbers}
        cited = [p for p in [*answer.passages, *quoted] if p.doc_id in docs]
        if numbers and None not in docs and cited and supported(strip_markers(sentence), cited):
            continue
        if not numbers and is_framing(sentence):
            continue
        unbacked.append(sentence)
    return unbacked


def summarise(results: list[QuestionResult]) -> dict[str, Any]:
    """The report's figures for one system: retrieval and answer metrics, refusals, latency."""
    counted = [r for r in results if r.kind == "counted"]
    out = [r for r in results if r.kind == "out"]
    hits = [r.hit_rank for r in counted]
    latencies = [r.latency_ms for r in results]
    figures: dict[str, Any] = {f"recall@{k}": recall_at(hits, k) for k in RECALL_AT}
    figures["mrr@10"] = mrr_at(hits, 10)
    share = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    figures["accuracy"] = share([r.correct for r in counted])
    figures["cited_accuracy"] = share([r.cited_correct for r in counted])
    figures["refusal_out"] = share([r.refused for r in out])
    figures["false_refusal"] = share([r.refused for r in counted])
    # Every question of the weeks the counted ones come from, refusals counting as wrong: the figure
    # RealTime QA's published baselines report.
    weeks = {r.week for r in counted if r.week}
    asked = [r for r in results if r.week in weeks and r.kind in ("counted", "out")]
    figures["accuracy_all"] = share([r.correct for r in asked]) if weeks else None
    figures["questions_all"] = len(asked) if weeks else None
    figures["latency_p50_ms"] = percentile(latencies, 50)
    figures["latency_p95_ms"] = percentile(latencies, 95)
    figures["retrieve_p50_ms"] = percentile([r.retrieve_ms for r in results], 50)
    figures["counted"] = len(counted)
    figures["out"] = len(out)
    if any(r.backend == "llm" or r.fallback for r in results):
        figures["llm_answers"] = sum(r.backend == "llm" and not r.refused for r in results)
        figures["llm_refusals"] = sum(r.backend == "llm" and r.refused for r in results)
        figures["llm_fallbacks"] = sum(bool(r.fallback) for r in results)
        for reason in ("error", "timeout", "unsupported"):
            figures[f"llm_fallbacks_{reason}"] = sum(r.fallback == reason for r in results)
        figures["llm_dropped_sentences"] = sum(r.dropped for r in results)
    figures["unbacked_shown"] = sum(r.unbacked_shown for r in results)
    # The short answers that lead replies: how many answered questions show one, how often it names the gold.
    shown = [r for r in counted if r.short_correct is not None]
    figures["short_shown"] = share([r.short_correct is not None for r in counted if not r.refused])
    figures["short_accuracy"] = share([bool(r.short_correct) for r in shown])
    figures["short_count"] = len(shown)
    own_shown = [r for r in shown if r.own_articles]
    if any(r.own_articles is not None for r in counted):
        figures["short_accuracy_own"] = share([bool(r.short_correct) for r in own_shown])
        figures["short_count_own"] = len(own_shown)
    # RealTimeQA: the counted questions whose gold is in their own search results, and those whose gold
    # is only elsewhere in the corpus (often by coincidence: such a question is answerable in name only).
    if any(r.own_articles is not None for r in counted):
        for label, own in (("own", True), ("elsewhere", False)):
            group = [r for r in counted if bool(r.own_articles) == own]
            figures[f"recall@10_{label}"] = recall_at([r.hit_rank for r in group], 10) if group else None
            figures[f"accuracy_{label}"] = share([r.correct for r in group])
            figures[f"false_refusal_{label}"] = share([r.refused for r in group])
            figures[f"counted_{label}"] = len(group)
    return figures


# Fine at the low end, where the reader's calibrated thresholds sit (its probabilities are mostly small).
CURVE_THRESHOLDS = (0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def refusal_curve(results: list[QuestionResult], thresholds: tuple[float, ...] = CURVE_THRESHOLDS) -> list[dict[str, Any]]:
    """What the figures would be if the refusal threshold were each of `thresholds`.

    Read from each answer's evidence score: exact for thresholds at or above the one the run used
    (run with threshold 0 for the whole curve). Empty when the answers carry no evidence score.
    """
    if not results or any(r.evidence is None for r in results if not r.refused):
        return []
    counted = [r for r in results if r.kind == "counted"]
    out = [r for r in results if r.kind == "out"]
    weeks = {r.week for r in counted if r.week}
    asked = [r for r in results if r.week in weeks and r.kind in ("counted", "out")]

    def answers(r: QuestionResult, t: float) -> bool:
        return not r.refused and (r.evidence or 0.0) >= t

    def share(items: list[QuestionResult], test: Any) -> float | None:
        return sum(1 for r in items if test(r)) / len(items) if items else None

    own = [r for r in counted if r.own_articles]
    curve = [
        {
            "threshold": t,
            "accuracy": share(counted, lambda r, t=t: r.correct and answers(r, t)),
            "accuracy_all": share(asked, lambda r, t=t: r.correct and answers(r, t)) if weeks else None,
            "refusal_out": share(out, lambda r, t=t: not answers(r, t)),
            "false_refusal": share(counted, lambda r, t=t: not answers(r, t)),
        }
        for t in thresholds
    ]
    if any(r.own_articles is not None for r in counted):  # RealTimeQA: also the questions whose own articles hold the gold
        for point in curve:
            point["false_refusal_own"] = share(own, lambda r, t=point["threshold"]: not answers(r, t))
    return curve
