"""The eval harness: metric definitions, RealTimeQA selection and conversion, and `newsbot eval` end to end."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from config import load_settings
from newsbot.cli import main
from retrieval.answer.types import Answer, Citation
from retrieval.evaluation.datasets import EvalDataError, EvalQuestion, load_realtimeqa, write_corpus
from retrieval.evaluation.metrics import (
    QuestionResult,
    first_hit,
    mrr_at,
    percentile,
    recall_at,
    refusal_curve,
    score_answer,
    summarise,
)
from retrieval.evaluation.naive import NaiveRetriever
from retrieval.index.store import make_client
from retrieval.ingest.articles import load_json_file
from retrieval.passages import Passage, Query
from tests.conftest import ARTICLES, SEED_QA

RTQA = Path(__file__).resolve().parent / "data" / "realtimeqa"
COUNTED = EvalQuestion("q", "?", ("x",), kind="counted")


def _passage(rank: int, text: str, doc_id: str = "d1") -> Passage:
    return Passage(rank=rank, doc_id=doc_id, chunk_id=f"{doc_id}:{rank}", title="t", text=text, score=1.0)


def _answer(
    text: str,
    *,
    refused: bool = False,
    quotes: tuple[str, ...] = (),
    passages: list[Passage] | None = None,
    cited_doc: str = "d1",
) -> Answer:
    citations = [Citation(n, cited_doc, "t", None, None, None, None, quote) for n, quote in enumerate(quotes, 1)]
    return Answer("q", text, refused, citations, passages or [], {"total": 5.0, "retrieve": 1.0})


# -- metrics ---------------------------------------------------------------------------------


def test_first_hit_matches_case_and_whitespace_insensitively_within_k() -> None:
    texts = ["nothing here", "the  Buffalo\nBILLS won", "Buffalo Bills again"]
    assert first_hit(texts, ["Buffalo Bills"]) == 2
    assert first_hit(texts, ["Buffalo Bills"], k=1) is None
    assert first_hit(texts, ["Steelers", "bills won"]) == 2
    assert first_hit([], ["x"]) is None


def test_recall_at_k_and_mrr_on_hand_made_ranks() -> None:
    hits = [1, 3, None, 10]
    assert recall_at(hits, 1) == pytest.approx(0.25)
    assert recall_at(hits, 4) == pytest.approx(0.5)
    assert recall_at(hits, 10) == pytest.approx(0.75)
    assert mrr_at(hits, 10) == pytest.approx((1 + 1 / 3 + 0 + 1 / 10) / 4)
    assert mrr_at(hits, 4) == pytest.approx((1 + 1 / 3) / 4)  # rank 10 is outside @4
    assert recall_at([], 4) == 0.0


def test_percentile_interpolates() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([10, 20], 50) == 15
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 95) == pytest.approx(10.5)
    assert percentile([], 95) is None


def test_score_answer_separates_accuracy_from_cited_accuracy() -> None:
    question = EvalQuestion("q1", "Who?", ("Buffalo Bills",))
    passages = [_passage(1, "Steelers news"), _passage(2, "The Buffalo Bills player", doc_id="d2")]
    cited = score_answer(
        question, _answer("The Buffalo Bills [1].", quotes=("the buffalo bills player",), passages=passages, cited_doc="d2")
    )
    assert (cited.hit_rank, cited.correct, cited.cited_correct) == (2, True, True)
    # Right string, but the cited sentence and the cited article's passages do not hold it.
    uncited = score_answer(question, _answer("The Buffalo Bills [1].", quotes=("Steelers news",), passages=passages))
    assert (uncited.correct, uncited.cited_correct) == (True, False)
    refused = score_answer(question, _answer("I couldn't find that.", refused=True, passages=passages))
    assert (refused.correct, refused.refused, refused.hit_rank) == (False, True, 2)


def test_summarise_counts_refusals_per_kind() -> None:
    answerable = EvalQuestion("a", "?", ("x",), kind="counted")
    out = EvalQuestion("o", "?", ("y",), kind="out")
    results = [
        score_answer(answerable, _answer("x [1]", quotes=("x",), passages=[_passage(1, "x")])),
        score_answer(answerable, _answer("no", refused=True, passages=[_passage(1, "z")])),
        score_answer(out, _answer("no", refused=True)),
        score_answer(out, _answer("something")),
        score_answer(out, _answer("no", refused=True)),
    ]
    figures = summarise(results)
    assert figures["counted"] == 2 and figures["out"] == 3
    assert figures["recall@1"] == pytest.approx(0.5)
    assert figures["accuracy"] == pytest.approx(0.5)
    assert figures["false_refusal"] == pytest.approx(0.5)
    assert figures["refusal_out"] == pytest.approx(2 / 3)


def test_llm_figures_count_answers_fallbacks_drops_and_sentences_shown_unbacked() -> None:
    passages = [_passage(1, "The US is sending 560 more troops to Iraq.")]
    backed = _answer("The US is sending 560 more troops [1].", quotes=("x",), passages=passages)
    invented = _answer("The US is sending 9,000 more troops [1]. Carter said so.", quotes=("x",), passages=passages)
    results = [
        score_answer(COUNTED, replace(backed, backend="llm", dropped=3)),
        score_answer(COUNTED, replace(backed, fallback="unsupported", dropped=2)),
        score_answer(COUNTED, replace(backed, fallback="timeout")),
        score_answer(COUNTED, replace(_answer("no", refused=True), backend="llm")),
        score_answer(COUNTED, replace(invented, backend="llm")),
    ]
    assert [r.unbacked_shown for r in results] == [0, 0, 0, 0, 2]
    figures = summarise(results)
    assert (figures["llm_answers"], figures["llm_refusals"], figures["llm_fallbacks"]) == (2, 1, 2)
    assert (figures["llm_fallbacks_unsupported"], figures["llm_fallbacks_timeout"], figures["llm_fallbacks_error"]) == (1, 1, 0)
    assert figures["llm_dropped_sentences"] == 5 and figures["unbacked_shown"] == 2
    assert "llm_answers" not in summarise([score_answer(COUNTED, backed)])  # the extractive backend alone


def test_the_refusal_curve_reads_each_threshold_from_the_evidence() -> None:
    def result(kind: str, correct: bool, evidence: float, refused: bool = False) -> QuestionResult:
        return QuestionResult("q", kind, "?", [], None, refused, correct, correct, "", [], 0.0, 0.0, "w1", "", evidence)

    results = [
        result("counted", True, 0.30),
        result("counted", True, 0.055),
        result("counted", False, 0.045),
        result("counted", False, 0.01, refused=True),
        result("out", False, 0.065),
        result("out", False, 0.02, refused=True),
    ]
    curve = {point["threshold"]: point for point in refusal_curve(results)}
    assert curve[0.05] == {"threshold": 0.05, "accuracy": 0.5, "accuracy_all": 2 / 6, "refusal_out": 0.5, "false_refusal": 0.5}
    # Between two of the coarse thresholds: the answer with evidence 0.055 is still given at 0.05, refused at 0.06.
    assert curve[0.06]["accuracy"] == 0.25 and curve[0.06]["false_refusal"] == 0.75 and curve[0.06]["refusal_out"] == 0.5
    assert curve[0.07]["refusal_out"] == 1.0
    assert refusal_curve([result("counted", True, 0.3), replace(result("out", False, 0.0), evidence=None)]) == []


# -- RealTimeQA ------------------------------------------------------------------------------


def test_realtimeqa_corpus_and_question_selection() -> None:
    data = load_realtimeqa(RTQA, ["20990101"])
    urls = [article["url"] for article in data.corpus]
    # Empty text dropped, duplicate url kept once (its first occurrence).
    assert urls == [
        "https://www.example-news.com/sport/2098/12/31/winter-cup-final",
        "https://another.example.org/cup",
        "https://birds.example.com/atlantis",
    ]
    assert data.corpus[0]["title"] == "Winter cup final comes to Qayyarah"
    # The gold "Makhmour Rovers" occurs once whitespace and case are normalised.
    assert [q.id for q in data.counted] == ["20990101_0"]
    assert data.counted[0].golds == ("Makhmour Rovers",) and data.counted[0].as_of == date(2099, 1, 1)
    # Out of collection: this week's unanswerable question and the other week's whose gold is nowhere;
    # the other week's question answered by this corpus ("8,000") is neither.
    assert sorted(q.id for q in data.out_of_collection) == ["20990101_1", "20990108_1"]
    assert data.uncounted_same_weeks == 1 and data.questions_total == 2


def test_counted_questions_know_whether_their_own_articles_hold_the_gold() -> None:
    data = load_realtimeqa(RTQA, ["20990101", "20990108"])
    own = {q.id: q.own_articles for q in data.counted}
    # "8,000" is in the cup final story, which the search for 20990108_0 did not return: it counts,
    # but only through another question's article.
    assert own == {"20990101_0": True, "20990108_0": False}
    assert all(q.own_articles is None for q in data.out_of_collection)

    results = [
        score_answer(replace(COUNTED, own_articles=False), _answer("no", refused=True)),
        score_answer(replace(COUNTED, own_articles=True), _answer("x [1]", quotes=("x",), passages=[_passage(3, "x")])),
        score_answer(replace(COUNTED, own_articles=True), _answer("y", passages=[_passage(1, "y")])),
    ]
    figures = summarise(results)
    assert (figures["counted_own"], figures["counted_elsewhere"]) == (2, 1)
    assert (figures["recall@10_own"], figures["accuracy_own"], figures["false_refusal_own"]) == (0.5, 0.5, 0.0)
    assert (figures["accuracy_elsewhere"], figures["false_refusal_elsewhere"]) == (0.0, 1.0)
    assert "accuracy_own" not in summarise([score_answer(COUNTED, _answer("x"))])  # seed sets: not known
    refused_own = [replace(r, evidence=0.2) for r in results if not r.refused] + [replace(results[0], evidence=0.0)]
    curve = {point["threshold"]: point for point in refusal_curve(refused_own)}
    assert curve[0.1]["false_refusal_own"] == 0.0 and curve[0.25]["false_refusal_own"] == 1.0


def test_realtimeqa_unknown_week_is_an_error() -> None:
    with pytest.raises(EvalDataError, match="20990115"):
        load_realtimeqa(RTQA, ["20990115"])


def test_corpus_conversion_reads_back_as_articles(tmp_path: Path) -> None:
    data = load_realtimeqa(RTQA, ["20990101", "20990108"])
    path = tmp_path / "corpus.jsonl"
    assert write_corpus(data.corpus, path) is True
    assert write_corpus(data.corpus, path) is False  # unchanged: the file is not rewritten
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0] == {
        "id": "https://www.example-news.com/sport/2098/12/31/winter-cup-final",
        "url": "https://www.example-news.com/sport/2098/12/31/winter-cup-final",
        "title": "Winter cup final comes to Qayyarah",
        "text": data.corpus[0]["text"],
        "published": "2098-12-31",
        "source": "example-news.com",
    }
    assert records[2]["published"] is None  # empty publish_date
    articles, errors = load_json_file(path)
    assert not errors and len(articles) == 4
    first = articles[0]
    assert first.doc_id == hashlib.sha1(records[0]["url"].encode()).hexdigest()[:16]
    assert (first.source, first.published, first.url) == ("example-news.com", date(2098, 12, 31), records[0]["url"])


# -- the naive pipeline ----------------------------------------------------------------------


def test_naive_retriever_indexes_once_and_ranks_by_similarity(tmp_path: Path, embedder: object) -> None:
    client = make_client(load_settings(data_dir=str(tmp_path / "var")))
    naive = NaiveRetriever(client, embedder)  # type: ignore[arg-type]
    first = naive.ingest([ARTICLES])
    assert first.documents == 5 and first.chunks_embedded == first.chunks_total > 5
    again = naive.ingest([ARTICLES])
    assert again.chunks_embedded == 0 and again.chunks_total == first.chunks_total
    passages = naive.retrieve(Query("How many additional troops did Ash Carter announce for Iraq?"), top_k=4)
    assert [p.rank for p in passages] == [1, 2, 3, 4]
    assert passages[0].score >= passages[-1].score
    assert any("560" in p.text for p in passages)


# -- `newsbot eval` end to end ---------------------------------------------------------------


@pytest.mark.model
def test_eval_seed_passes_every_fact_conflict_negative_and_briefing_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "--data-dir",
            str(tmp_path / "var"),
            "eval",
            "--seed",
            str(SEED_QA),
            "--articles",
            str(ARTICLES),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "answer-recall@4" in printed and "seed fact passed" in printed
    report = json.loads((tmp_path / "out" / "eval-seed-samples.json").read_text())
    counts = report["systems"]["newsbot"]["seed"]["counts"]
    for kind in ("fact", "conflict", "negative", "briefing"):
        assert counts[kind]["passed"] == counts[kind]["total"], report["systems"]["newsbot"]["seed"]["failures"]
    assert counts["fact"]["total"] == 10 and counts["negative"]["total"] == 3 and counts["briefing"]["total"] == 1
    # The briefing seed went to the briefer (as /brief would), which dates and cites several stories.
    briefing = next(q for q in report["questions"]["newsbot"] if q["seed_type"] == "briefing")
    assert len(briefing["cited"]) >= 2 and ("Qayara" in briefing["answer"] or "Qayyarah" in briefing["answer"])
    assert report["systems"]["newsbot"]["metrics"]["refusal_out"] == 1.0
    assert (tmp_path / "out" / "eval-seed-samples.md").read_text().startswith("# newsbot eval")


@pytest.mark.model
def test_eval_realtimeqa_compares_with_naive_and_reuses_the_index(tmp_path: Path) -> None:
    args = ["--data-dir", str(tmp_path / "var"), "eval", "--realtimeqa", str(RTQA), "--weeks", "20990101", "--compare", "naive"]
    assert main(args) == 0
    workdir = tmp_path / "var" / "eval" / "realtimeqa-20990101"
    report = json.loads((workdir / "eval-realtimeqa-20990101.json").read_text())
    assert report["counted"] == 1 and report["out_of_collection"] == 2 and report["articles"] == 3
    assert set(report["systems"]) == {"newsbot", "naive"}
    for system in report["systems"].values():
        assert system["metrics"]["counted"] == 1 and system["metrics"]["out"] == 2
        assert system["ingest"]["reused"] is False and system["ingest"]["chunks"] > 0
        # One question each. The same week's (the national bird of Atlantis) has an on-topic article that
        # lacks the gold answer, so it is answered, not refused; the other week's (the Zephyr probe) has none.
        assert system["metrics"]["refusal_out_same_weeks"] == 0.0
        assert system["metrics"]["refusal_out_other_weeks"] == 1.0
    asked = [q["id"] for q in report["questions"]["newsbot"]]
    assert asked == ["20990101_0", "20990101_1", "20990108_1"]
    # The corpus was written as JSON Lines articles in the scratch directory.
    assert (workdir / "articles" / "realtimeqa.jsonl").exists()

    assert main([*args, "--reuse", "--limit", "1"]) == 0
    again = json.loads((workdir / "eval-realtimeqa-20990101.json").read_text())
    assert all(system["ingest"]["reused"] for system in again["systems"].values())
    assert again["questions_asked"] == 2  # one answerable, one out of collection

    # --rebuild re-embeds our index (after a cleaning or chunking change) and keeps the naive one.
    assert main([*args, "--reuse", "--rebuild", "--limit", "1"]) == 0
    rebuilt = json.loads((workdir / "eval-realtimeqa-20990101.json").read_text())
    assert rebuilt["systems"]["newsbot"]["ingest"]["reused"] is False
    assert rebuilt["systems"]["newsbot"]["ingest"]["chunks"] == report["systems"]["newsbot"]["ingest"]["chunks"]
    assert rebuilt["systems"]["naive"]["ingest"]["reused"] is True


def test_eval_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(tmp_path / "var"), "eval"]
    assert main([*base, "--realtimeqa", str(RTQA), "--weeks", "20990115"]) == 2
    assert "20990115" in capsys.readouterr().err
    assert main([*base, "--seed", str(SEED_QA), "--limit", "0"]) == 2
    # A directory holding an index that eval did not build is never wiped.
    (tmp_path / "live" / "chroma").mkdir(parents=True)
    assert main([*base, "--seed", str(SEED_QA), "--workdir", str(tmp_path / "live")]) == 2
    assert "did not build" in capsys.readouterr().err and (tmp_path / "live" / "chroma").exists()
    with pytest.raises(SystemExit) as exited:
        main(base)  # neither --seed nor --realtimeqa
    assert exited.value.code == 2
