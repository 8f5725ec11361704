"""The question sets: seed QA files with their articles, and RealTimeQA weeks (corpus and questions).

Definitions: ../shared/eval/README.md. The corpus is every article with text in the chosen
weeks' _gcs files (first occurrence of each url); a question counts when its gold answer
occurs in some corpus article; questions whose gold occurs nowhere should be refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from retrieval.evaluation.matching import normalise
from retrieval.ingest.articles import domain


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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
    week: str = ""  # RealTimeQA: the week (YYYYMMDD) the question was asked in
    seed_type: str = ""  # seed questions: fact, negative, conflict or briefing
    # RealTimeQA counted questions: whether the gold occurs in one of the question's own search results
    # (the articles a search returned for it), or only elsewhere in the corpus, where it may be a
    # coincidence ("Bear" in a story about Jupiter's moons). None where that is not known.
    own_articles: bool | None = None


@dataclass
class RealTimeQA:
    """The chosen weeks' corpus and questions, selected as the eval README defines."""

    weeks: list[str]
    corpus: list[dict[str, Any]]
    counted: list[EvalQuestion]
    out_of_collection: list[EvalQuestion]
    uncounted_same_weeks: int = 0
    questions_total: int = 0


@dataclass
class EvalSet:
    """What to index and what to ask."""

    name: str
    paths: list[Path]
    questions: list[EvalQuestion]
    info: dict[str, Any] = field(default_factory=dict)
    seed_items: list[dict[str, Any]] | None = None


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
    corpus = realtimeqa_corpus(folder, weeks)
    data = RealTimeQA(list(weeks), corpus, [], [])
    in_corpus = _gold_finder(corpus)
    for week in available:
        own = _own_results(folder, week) if week in weeks else {}
        for question in realtimeqa_questions(folder, week):
            chosen = week in weeks
            data.questions_total += chosen
            found = in_corpus(question.golds[0])
            question = replace(question, kind="counted" if found else "out")
            if chosen and found:
                needle = normalise(question.golds[0])
                question = replace(question, own_articles=any(needle in text for text in own.get(question.id, [])))
                data.counted.append(question)
            elif not found:
                data.out_of_collection.append(question)
                data.uncounted_same_weeks += chosen
    return data


def realtimeqa_corpus(folder: Path, weeks: list[str]) -> list[dict[str, Any]]:
    """Every search result with text in the weeks' _gcs files, the first occurrence of each url."""
    corpus: dict[str, dict[str, Any]] = {}
    for week in weeks:
        for line in load_jsonl(folder / f"{week}_gcs.jsonl"):
            for article in line.get("search_result") or []:
                url = article.get("url")
                if url and isinstance(article.get("text"), str) and article["text"].strip() and url not in corpus:
                    corpus[url] = article
    return list(corpus.values())


def realtimeqa_questions(folder: Path, week: str) -> list[EvalQuestion]:
    """The questions of one week with their gold answers, not yet classified against a corpus."""
    questions = []
    for record in load_jsonl(folder / f"{week}_qa.jsonl"):
        try:
            gold = _gold(record)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            where = folder / f"{week}_qa.jsonl"
            raise EvalDataError(f"{where}: question {record.get('question_id')}: no gold answer ({exc})") from exc
        questions.append(
            EvalQuestion(
                id=str(record["question_id"]),
                question=str(record["question_sentence"]),
                golds=(gold,),
                as_of=_question_date(record.get("question_date")),
                week=week,
            )
        )
    return questions


def _own_results(folder: Path, week: str) -> dict[str, list[str]]:
    """Each question's own search results (their texts, normalised), by question id."""
    return {
        str(line["question_id"]): [
            normalise(a["text"]) for a in line.get("search_result") or [] if isinstance(a.get("text"), str)
        ]
        for line in load_jsonl(folder / f"{week}_gcs.jsonl")
    }


def _gold_finder(corpus: list[dict[str, Any]]) -> Callable[[str], bool]:
    """Whether a gold answer occurs in some corpus article (the README's match)."""
    haystacks = [normalise(article["text"]) for article in corpus]

    def in_corpus(gold: str) -> bool:
        needle = normalise(gold)
        return bool(needle) and any(needle in text for text in haystacks)

    return in_corpus


def corpus_record(article: dict[str, Any]) -> dict[str, Any]:
    """A RealTimeQA search result in our JSON Lines article format (id = url)."""
    url = str(article["url"])
    published = _question_date(article.get("publish_date"))
    return {
        "id": url,
        "url": url,
        "title": str(article.get("title") or "").strip(),
        "text": article["text"],
        "published": published.isoformat() if published else None,
        "source": domain(url) or "",
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
            seed_type=str(item.get("type", "")),
        )
        for item in items
    ]


def choose_weeks(folder: Path, spec: str | None) -> list[str]:
    """The weeks named in `spec` ("W1,W2"), or every week of the folder."""
    if spec:
        return [week.strip() for week in spec.split(",") if week.strip()]
    weeks = realtimeqa_weeks(folder)
    if not weeks:
        raise EvalDataError(f"no RealTimeQA weeks (WEEK_qa.jsonl + WEEK_gcs.jsonl) in {folder}")
    return weeks


def seed_set(qa_file: Path, articles: Path) -> EvalSet:
    """The seed questions about a folder of articles."""
    if not articles.exists():
        raise EvalDataError(f"articles folder not found: {articles}")
    items = load_jsonl(qa_file)
    return EvalSet(
        name=f"seed-{articles.resolve().name}",
        paths=[articles],
        questions=seed_questions(items),
        info={"dataset": "seed", "qa_file": str(qa_file), "articles": str(articles)},
        seed_items=items,
    )


def realtimeqa_set(folder: Path, weeks: list[str], articles_dir: Path) -> EvalSet:
    """RealTimeQA weeks: the corpus written as JSON Lines articles, counted and out-of-collection questions."""
    data = load_realtimeqa(folder, weeks)
    corpus_file = articles_dir / "realtimeqa.jsonl"
    write_corpus(data.corpus, corpus_file)
    return EvalSet(
        name="realtimeqa-" + "_".join(weeks),
        paths=[corpus_file],
        questions=data.counted + data.out_of_collection,
        info={
            "dataset": "realtimeqa",
            "folder": str(folder),
            "weeks": weeks,
            "articles": len(data.corpus),
            "questions_in_weeks": data.questions_total,
            "counted": len(data.counted),
            "counted_own_articles": sum(1 for q in data.counted if q.own_articles),
            "out_of_collection": len(data.out_of_collection),
            "out_of_collection_same_weeks": data.uncounted_same_weeks,
        },
    )


def limit_questions(questions: list[EvalQuestion], limit: int) -> list[EvalQuestion]:
    """The first `limit` questions of each kind (answerable, out of collection)."""
    kept: list[EvalQuestion] = []
    seen: dict[str, int] = {}
    for question in questions:
        if seen.get(question.kind, 0) < limit:
            kept.append(question)
            seen[question.kind] = seen.get(question.kind, 0) + 1
    return kept
