"""Briefings without Telegram: the real retriever and embedding model over real articles."""

from __future__ import annotations

import re
from datetime import date

import pytest

from retrieval.answer.briefing import Briefer, Briefing, BriefingRequestError, clean_topic, parse_request
from retrieval.index.embedding import Embedder
from retrieval.service import Services
from tests.conftest import make_services

# Two outlets on one story (same day, same figures), and two other stories on the same topic.
HARBOUR_ARTICLES = {
    "gazette_bridge.md": (
        "Port Ellery opens new harbour bridge",
        "Ellery Gazette",
        "2019-05-04",
        "Port Ellery opened its new harbour bridge on Saturday after four years of construction. "
        "The 37 million dollar crossing links the old town with the container port. "
        "The mayor said the harbour bridge would cut traffic on the coast road by half.",
    ),
    "courier_bridge.md": (
        "Harbour bridge opens in Port Ellery after four years",
        "Ellery Courier",
        "2019-05-04",
        "The harbour bridge in Port Ellery opened to traffic on Saturday, four years after work began. "
        "The crossing cost 37 million dollars and connects the old town to the container port. "
        "Officials expect the harbour bridge to halve traffic on the coast road.",
    ),
    "gazette_dredging.md": (
        "Dredging of Port Ellery harbour begins",
        "Ellery Gazette",
        "2018-02-11",
        "Dredging of Port Ellery harbour began on Monday so that larger cargo ships can dock at the container port. "
        "The harbour authority said the work would take eight months and remove 90,000 tonnes of silt.",
    ),
    "times_ferry.md": (
        "New ferry service for Port Ellery harbour",
        "Coast Times",
        "2020-09-30",
        "A new ferry service will cross Port Ellery harbour every twenty minutes from October. "
        "The harbour ferry will carry 300 passengers and stop at the old town and the container port.",
    ),
}


def bullets_cited(briefing: Briefing) -> list[set[int]]:
    return [set(map(int, re.findall(r"\[(\d+)\]", point.text))) for point in briefing.points]


@pytest.fixture(scope="module")
def harbour(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Services:
    root = tmp_path_factory.mktemp("harbour")
    articles = root / "articles"
    articles.mkdir()
    for name, (title, source, published, text) in HARBOUR_ARTICLES.items():
        (articles / name).write_text(
            f"---\ntitle: {title}\nsource: {source}\npublished: {published}\n---\n{text}\n", encoding="utf-8"
        )
    services = make_services(root / "var", embedder)
    assert services.ingestor.ingest([articles]).ok
    return services


def test_seed_briefing_on_mosul(seed_services: Services) -> None:
    briefing = Briefer(seed_services.retriever, seed_services.embedder).brief("Brief me on the campaign to retake Mosul.")
    text = " ".join(point.text for point in briefing.points)
    assert "Mosul" in text and re.search(r"Qayyarah|Qayara", text)
    assert 3 <= len(briefing.points) <= 6
    assert briefing.topic == "the campaign to retake Mosul"
    # Every bullet is cited, every source is cited by exactly one bullet, and no article appears twice.
    cited = bullets_cited(briefing)
    assert all(cited) and sorted(n for c in cited for n in c) == [s.n for s in briefing.sources]
    assert len({s.doc_id for s in briefing.sources}) == len(briefing.sources)
    # Each bullet is its sources' quotes, verbatim, with the markers added: the first source's always,
    # a further source's unless it says what an earlier one already said (then only its marker).
    for point in briefing.points:
        quotes = [briefing.sources[n - 1].quote.strip() for n in point.citations]
        shown = [quote for quote in quotes if quote.removesuffix(".") in point.text]
        assert shown and shown[0] == quotes[0]
        assert re.sub(r"\s*\[\d+\]", "", point.text) == " ".join(shown)


def test_same_story_from_two_outlets_is_one_bullet_and_newest_comes_first(harbour: Services) -> None:
    briefing = Briefer(harbour.retriever, harbour.embedder).brief("Port Ellery harbour")
    assert [point.date for point in briefing.points] == ["2020-09-30", "2019-05-04", "2018-02-11"]
    bridge = briefing.points[1]
    outlets = {briefing.sources[n - 1].source for n in bridge.citations}
    assert outlets == {"Ellery Gazette", "Ellery Courier"}
    assert all(len(point.citations) == 1 for point in (briefing.points[0], briefing.points[2]))


def test_since_keeps_only_newer_articles(harbour: Services) -> None:
    briefing = Briefer(harbour.retriever, harbour.embedder).brief("Port Ellery harbour", since=date(2019, 1, 1))
    assert [point.date for point in briefing.points] == ["2020-09-30", "2019-05-04"]


def test_max_points_caps_the_bullets(harbour: Services) -> None:
    briefing = Briefer(harbour.retriever, harbour.embedder, max_points=2).brief("Port Ellery harbour")
    assert len(briefing.points) == 2


def test_off_topic_brief_is_empty_with_a_message(seed_services: Services) -> None:
    briefing = Briefer(seed_services.retriever, seed_services.embedder).brief("the 2018 FIFA World Cup")
    assert briefing.empty and briefing.message.startswith("I couldn't find anything")


async def test_abrief_runs_off_the_event_loop(harbour: Services) -> None:
    briefing = await Briefer(harbour.retriever, harbour.embedder).abrief("Port Ellery ferry")
    assert briefing.points and "ferry" in briefing.points[0].text


@pytest.mark.parametrize(
    ("text", "topic", "since"),
    [
        ("Mosul", "Mosul", None),
        ("the campaign to retake Mosul since 2016-07-01", "the campaign to retake Mosul", date(2016, 7, 1)),
        ("Mosul since 7d", "Mosul", date(2016, 7, 4)),
        ("Mosul 30d", "Mosul", date(2016, 6, 11)),
        ("Brief me on the harbour.", "the harbour", None),
    ],
)
def test_parse_request(text: str, topic: str, since: date | None) -> None:
    assert parse_request(text, today=date(2016, 7, 11)) == (topic, since)


@pytest.mark.parametrize("text", ["Mosul since yesterday", "brief me on", "  "])
def test_parse_request_errors_say_how(text: str) -> None:
    with pytest.raises(BriefingRequestError):
        parse_request(text)


def test_clean_topic() -> None:
    assert clean_topic("Please give me a briefing on US troops in Iraq?") == "US troops in Iraq"
    assert clean_topic("Update me about Mosul") == "Mosul"
