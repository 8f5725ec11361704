"""Hybrid retrieval on a real index: keyword hits, one story from many outlets, dates."""

import json
from datetime import date

import pytest

from retrieval.answer.extractive import ExtractiveGenerator
from retrieval.index.embedding import Embedder
from retrieval.passages import Passage, Query
from retrieval.service import Services
from tests.conftest import make_services

WIRE = (
    "Engineers finished the Kallaru river dam on Tuesday after ten years of work, the ministry said. "
    "The dam holds 412 million cubic metres of water and will irrigate farms in three provinces. "
    "Officials said the project cost 1.2 billion dollars and employed 3,000 workers at its peak."
)


@pytest.fixture(scope="module")
def news(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Services:
    root = tmp_path_factory.mktemp("news")
    records = [
        {"id": "a", "title": "Kallaru dam finished", "text": WIRE, "source": "Daily Wire", "published": "2023-01-03"},
        {
            "id": "b",
            "title": "Dam on the Kallaru opens",
            "text": WIRE + " Farmers welcomed the news.",
            "source": "River Post",
            "published": "2023-01-04",
        },
        {
            "id": "c",
            "title": "Kallaru dam plans approved",
            "text": "The government approved plans for a dam on the Kallaru river, expected to cost 900 million dollars.",
            "source": "Old Times",
            "published": "2013-03-01",
        },
        {
            "id": "d",
            "title": "Football final tonight",
            "text": "The cup final kicks off at eight in the capital, with tickets sold out weeks ago.",
            "source": "Sports Desk",
            "published": "2023-01-05",
        },
    ]
    (root / "feed.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    services = make_services(root / "var", embedder)
    assert services.ingestor.ingest([root / "feed.jsonl"]).ok
    return services


def test_passages_carry_their_neighbouring_sentences(news: Services) -> None:
    [passage] = news.retriever.retrieve(Query("Farmers welcomed the news"), 1)
    assert passage.text.startswith("Engineers finished") and passage.text.endswith("Farmers welcomed the news.")


def test_the_same_story_from_two_outlets_is_one_result_citing_both(news: Services) -> None:
    passages = news.retriever.retrieve(Query("How much water does the Kallaru dam hold?"), 3)
    heads = [p.doc_id for p in passages]
    assert len(heads) == len(set(heads))
    top = passages[0]
    assert {top.doc_id, *(d.doc_id for d in top.duplicates)} >= {_id(news, "Daily Wire"), _id(news, "River Post")}
    answer = news.answerer.answer("How much water does the Kallaru dam hold?")
    assert "412 million cubic metres" in answer.text and "[1][2]" in answer.text
    assert {c.source for c in answer.citations} >= {"Daily Wire", "River Post"}


def test_rare_names_and_figures_are_found_by_keyword(news: Services) -> None:
    passages = news.retriever.retrieve(Query("Kallaru 3,000 workers"), 2)
    assert "3,000 workers" in passages[0].text


def test_as_of_prefers_articles_close_to_the_date(news: Services) -> None:
    question = "What will the Kallaru dam cost?"
    recent = news.retriever.retrieve(Query(question, as_of=date(2023, 1, 6)), 3)
    assert recent[0].published and recent[0].published >= "2023-01-01"
    old = news.retriever.retrieve(Query(question, as_of=date(2013, 6, 1)), 3)
    assert old[0].published == "2013-03-01"  # later articles get no boost


def test_since_until_filter(news: Services) -> None:
    passages = news.retriever.retrieve(Query("news", since=date(2023, 1, 5), until=date(2023, 1, 5)), 5)
    assert [p.source for p in passages] == ["Sports Desk"]


def _id(services: Services, source: str) -> str:
    return next(a.doc_id for a in services.store.articles().values() if a.source == source)


def test_the_answer_quotes_the_report_closest_to_the_as_of_date(embedder: Embedder) -> None:
    generator = ExtractiveGenerator(embedder, lambda term: 1.0, threshold=0.3, max_sentences=1)
    passages = [
        _passage("old", "Tomas Reyes now manages the Kallaru dam project, the ministry said.", "2013-03-01"),
        _passage("new", "Maria Okafor now manages the Kallaru dam project, the ministry said.", "2023-01-03"),
    ]
    question = "Who manages the Kallaru dam project?"
    assert generator.generate(Query(question, as_of=date(2023, 1, 6)), passages).text.startswith("Maria Okafor")
    assert generator.generate(Query(question, as_of=date(2013, 6, 1)), passages).text.startswith("Tomas Reyes")


def test_a_sentence_that_asks_the_question_is_not_quoted_as_its_answer(embedder: Embedder) -> None:
    generator = ExtractiveGenerator(embedder, lambda term: 1.0, threshold=0.3, max_sentences=1)
    passage = _passage(
        "q",
        "Why was the Kallaru dam delayed for so long? "
        "The Kallaru dam was delayed by floods that washed away its foundations in 2019.",
        "2023-01-03",
    )
    draft = generator.generate(Query("Why was the Kallaru dam delayed?"), [passage])
    assert draft.text.startswith("The Kallaru dam was delayed by floods") and "?" not in draft.text


def _passage(doc_id: str, text: str, published: str) -> Passage:
    return Passage(
        rank=1, doc_id=doc_id, chunk_id=f"{doc_id}:0000", title="Kallaru dam", text=text, score=1.0, published=published
    )


def test_recency_halves_every_thirty_days_or_every_seven_for_this_week() -> None:
    as_of = date(2023, 1, 31)
    assert Query("Who won?", as_of=as_of).recency(date(2023, 1, 31)) == 1.0
    assert Query("Who won?", as_of=as_of).recency(date(2023, 1, 1)) == 0.5
    assert Query("Who won this week?", as_of=as_of).recency(date(2023, 1, 24)) == 0.5
    assert Query("Who won?", as_of=as_of).recency(date(2023, 2, 1)) == 0.0  # after the as-of date
    assert Query("Who won?", as_of=as_of).recency(None) == 0.0
    assert Query("Who won?").recency(date(2023, 1, 31)) == 0.0
