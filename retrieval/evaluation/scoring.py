"""Scoring answers against questions with known answers (the definitions in the eval README)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from retrieval.answer.types import Answer


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


# -- RealTimeQA ------------------------------------------------------------------------------
# Definitions: ../shared/eval/README.md. The corpus is every article with text in the chosen
# weeks' _gcs files (first occurrence of each url); a question counts when its gold answer
# occurs in some corpus article; questions whose gold occurs nowhere should be refused.


class EvalDataError(ValueError):
    """An evaluation input (QA file, RealTimeQA folder, week) is missing or malformed."""


@dataclass(frozen=True)
class EvalQuestion:
    """One question with the strings that make an answer right (any one of them)."""

    id: str
    question: str
    golds: tuple[str, ...]
    as_of: date | None = None
    kind: str = "counted"  # "counted": the answer is in the corpus; "out": it is not, refuse
    week: str = ""


@dataclass
class RealTimeQA:
    """The chosen weeks' corpus and questions, selected as the eval README defines."""

    weeks: list[str]
    corpus: list[dict[str, Any]]
    counted: list[EvalQuestion]
    out_of_collection: list[EvalQuestion]
    uncounted_same_weeks: int = 0
    questions_total: int = 0


def occurs(text: str, gold: str) -> bool:
    """The README's match: the gold string, lower-cased with whitespace collapsed, is in the text."""
    return normalise(gold) in normalise(text)


def realtimeqa_weeks(folder: Path) -> list[str]:
    """The weeks (YYYYMMDD) that have both a _qa and a _gcs file in `folder`."""
    qa = {path.name[: -len("_qa.jsonl")] for path in folder.glob("*_qa.jsonl")}
    gcs = {path.name[: -len("_gcs.jsonl")] for path in folder.glob("*_gcs.jsonl")}
    return sorted(qa & gcs)


def _question_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%Y/%m/%d").date()
    except ValueError:
        return None


def _gold(record: dict[str, Any]) -> str:
    return str(record["choices"][int(record["answer"][0])])


def load_realtimeqa(folder: Path, weeks: list[str]) -> RealTimeQA:
    """Corpus, counted questions and out-of-collection questions for `weeks` of a RealTimeQA folder."""
    available = realtimeqa_weeks(folder)
    if not available:
        raise EvalDataError(f"no RealTimeQA weeks (WEEK_qa.jsonl + WEEK_gcs.jsonl) in {folder}")
    missing = [week for week in weeks if week not in available]
    if missing:
        raise EvalDataError(f"weeks {', '.join(missing)} not in {folder}; it has {', '.join(available)}")
    corpus: dict[str, dict[str, Any]] = {}
    for week in weeks:
        for line in load_jsonl(folder / f"{week}_gcs.jsonl"):
            for article in line.get("search_result") or []:
                url = article.get("url")
                if url and isinstance(article.get("text"), str) and article["text"].strip() and url not in corpus:
                    corpus[url] = article
    haystacks = [normalise(article["text"]) for article in corpus.values()]

    def in_corpus(gold: str) -> bool:
        needle = normalise(gold)
        return bool(needle) and any(needle in text for text in haystacks)

    counted: list[EvalQuestion] = []
    out: list[EvalQuestion] = []
    uncounted = total = 0
    for week in available:
        for record in load_jsonl(folder / f"{week}_qa.jsonl"):
            chosen = week in weeks
            total += chosen
            try:
                gold = _gold(record)
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                where = folder / f"{week}_qa.jsonl"
                raise EvalDataError(f"{where}: question {record.get('question_id')}: no gold answer ({exc})") from exc
            found = in_corpus(gold)
            question = EvalQuestion(
                id=str(record["question_id"]),
                question=str(record["question_sentence"]),
                golds=(gold,),
                as_of=_question_date(record.get("question_date")),
                kind="counted" if found else "out",
                week=week,
            )
            if chosen and found:
                counted.append(question)
            elif not found:
                out.append(question)
                uncounted += chosen
    return RealTimeQA(list(weeks), list(corpus.values()), counted, out, uncounted, total)


def corpus_record(article: dict[str, Any]) -> dict[str, Any]:
    """A RealTimeQA search result in our JSON Lines article format (id = url)."""
    url = str(article["url"])
    host = urlparse(url).netloc.lower()
    published = _question_date(article.get("publish_date"))
    return {
        "id": url,
        "url": url,
        "title": str(article.get("title") or "").strip(),
        "text": article["text"],
        "published": published.isoformat() if published else None,
        "source": host[4:] if host.startswith("www.") else host,
    }


def write_corpus(articles: list[dict[str, Any]], path: Path) -> bool:
    """Write the corpus as JSON Lines articles; False when the file already held exactly that."""
    content = "".join(json.dumps(corpus_record(article), ensure_ascii=False) + "\n" for article in articles)
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return True


def seed_questions(items: list[dict[str, Any]]) -> list[EvalQuestion]:
    """Seed items as eval questions: negatives must be refused, the others answered."""
    return [
        EvalQuestion(
            id=str(item["id"]),
            question=str(item["question"]),
            golds=tuple(item.get("answers", [])),
            as_of=date.fromisoformat(item["as_of"]) if item.get("as_of") else None,
            kind="out" if item.get("type") == "negative" else "counted",
            week=str(item.get("type", "")),
        )
        for item in items
    ]


# -- metrics ---------------------------------------------------------------------------------

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
    )


def summarise(results: list[QuestionResult]) -> dict[str, Any]:
    """The report's figures for one system: retrieval and answer metrics, refusals, latency."""
    counted = [r for r in results if r.kind == "counted"]
    out = [r for r in results if r.kind == "out"]
    hits = [r.hit_rank for r in counted]
    latencies = [r.latency_ms for r in results]
    figures: dict[str, Any] = {f"recall@{k}": recall_at(hits, k) for k in RECALL_AT}
    figures["mrr@10"] = mrr_at(hits, 10)
    share = (lambda xs: sum(xs) / len(xs) if xs else None)  # noqa: E731
    figures["accuracy"] = share([r.correct for r in counted])
    figures["cited_accuracy"] = share([r.cited_correct for r in counted])
    figures["refusal_out"] = share([r.refused for r in out])
    figures["false_refusal"] = share([r.refused for r in counted])
    figures["latency_p50_ms"] = percentile(latencies, 50)
    figures["latency_p95_ms"] = percentile(latencies, 95)
    figures["retrieve_p50_ms"] = percentile([r.retrieve_ms for r in results], 50)
    figures["counted"] = len(counted)
    figures["out"] = len(out)
    return figures
