"""Hybrid retrieval on a real index: keyword hits, one story from many outlets, dates."""

import json
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config import Settings
from retrieval.answer.extractive import ExtractiveGenerator
from retrieval.index.embedding import Embedder
from retrieval.index.keywords import KeywordIndex, tokenize
from retrieval.index.store import ArticleStore, day_number, nearest
from retrieval.ingest.articles import Article
from retrieval.ingest.chunking import chunk_article
from retrieval.passages import Passage, Query
from retrieval.search import hybrid
from retrieval.search.hybrid import HybridRetriever
from retrieval.service import Services
from tests.conftest import SEED_QA, make_services

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


# -- search at size: faster, and finding what it found before ---------------------------------------

PINNED = Path(__file__).resolve().parent / "data" / "retrieval_pinned.json"


class _Nudged:
    """The real embedder, its question vectors moved by `size` in a random direction: numeric noise, made larger."""

    def __init__(self, inner: Embedder, size: float, seed: int) -> None:
        self.inner, self.size, self.rng = inner, size, np.random.default_rng(seed)

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def version(self) -> str:
        return self.inner.version

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.inner.embed(texts)
        noise = self.rng.standard_normal(vectors.shape).astype(np.float32)
        vectors = vectors + self.size * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed_documents(texts)


def test_the_seed_questions_find_the_pinned_passages(seed_services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """The passages (chunk, window, duplicates, in order) found before search was made fast at size.

    A deliberate change to ranking changes them: write the new ones to `PINNED` after checking them.
    The pin must not rest on a knife edge: with every question's vector moved by 1e-4 (a hundred times
    the difference between two CPUs' fp32 vectors, `bench/numerics.py`), the same passages come back.
    """
    names = {article.doc_id: Path(article.path).name for article in seed_services.store.articles().values()}

    def label(cid: str) -> str:
        version, _, index = cid.rpartition(":")
        doc_id = version.rpartition(":")[0]  # DOC_ID:HASH:NNNN (`chunk_id`)
        return f"{names[doc_id]}:{index}"

    questions = [json.loads(line)["question"] for line in SEED_QA.read_text().splitlines() if line.strip()]

    def found() -> dict[str, list[Any]]:
        passages = {}
        for question in questions:
            for kind, query in (
                ("plain", Query(question)),
                ("as_of", Query(question, as_of=date(2016, 7, 20))),
                ("since", Query(question, since=date(2016, 7, 1))),
            ):
                passages[f"{kind}: {question}"] = [
                    [label(p.chunk_id), [label(c) for c in p.window], [label(d.chunk_id) for d in p.duplicates]]
                    for p in seed_services.retriever.retrieve(query)
                ]
        return passages

    pinned = json.loads(PINNED.read_text())
    assert found() == pinned
    retriever = seed_services.retriever
    for seed in range(3):
        monkeypatch.setattr(retriever, "embedder", _Nudged(retriever.embedder, 1e-4, seed))
        nudged = found()
        assert [key for key in pinned if nudged[key] != pinned[key]] == []


def _random_store(settings: Settings, articles: int = 40) -> tuple[ArticleStore, np.ndarray]:
    """A store of short dated articles with random unit vectors (no model), and a query vector."""
    rng = np.random.default_rng(7)
    store = ArticleStore.from_settings(settings)
    for number in range(articles):
        article = Article.build(
            title=f"Report {number}",
            text=f"Report {number} on the Kallaru dam. " * 30,
            path=Path(f"{number}.txt"),
            key=str(number),
            published=date(2023, 1, 1) + timedelta(days=number) if number % 5 else None,
        )
        chunks = chunk_article(article, 300, 50)
        vectors = rng.standard_normal((len(chunks), 16))
        store.add(store.live(), article, chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    vector = rng.standard_normal(16)
    return store, vector / np.linalg.norm(vector)


def test_naming_the_chunks_in_a_date_range_finds_what_a_metadata_filter_finds(settings: Settings) -> None:
    store, vector = _random_store(settings)
    _, _, metas = store.all_chunks()
    ids = store.all_chunks()[0]
    since, until = date(2023, 1, 10), date(2023, 1, 25)
    dated = [cid for cid, meta in zip(ids, metas) if day_number(since) <= meta.get("published_day", -1) <= day_number(until)]
    where: dict[str, Any] = {
        "$and": [{"published_day": {"$gte": day_number(since)}}, {"published_day": {"$lte": day_number(until)}}]
    }
    filtered = nearest(store.live(), vector, 20, where=where)
    assert len(filtered) == 20
    assert store.nearest_ids(vector, 20, ids=dated) == [(cid, similarity) for cid, _, _, similarity in filtered]
    assert store.nearest_ids(vector, 20) == [(cid, similarity) for cid, _, _, similarity in nearest(store.live(), vector, 20)]
    assert store.nearest_ids(vector, 20, ids=[]) == []


@pytest.mark.parametrize("half", [False, True], ids=["single precision", "half precision (large collections)"])
def test_a_date_range_is_searched_exactly_and_finds_what_chromas_filter_finds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, half: bool
) -> None:
    if half:
        monkeypatch.setattr(hybrid, "_SINGLE_PRECISION_ROWS", 0)
    store, vector = _random_store(settings)
    ids, _, metas = store.all_chunks()
    stored = store.vectors(ids[::-1])
    assert stored.shape == (len(ids), 16)
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)  # the unit vectors written, in the order asked
    retriever = _retriever(store)
    since, until = date(2023, 1, 10), date(2023, 1, 25)
    where: dict[str, Any] = {
        "$and": [{"published_day": {"$gte": day_number(since)}}, {"published_day": {"$lte": day_number(until)}}]
    }
    chroma = nearest(store.live(), vector, 20, where=where)
    exact = retriever.nearest(vector, since, until)
    assert [cid for cid, _ in exact] == [cid for cid, _, _, _ in chroma]
    assert np.allclose([s for _, s in exact], [s for _, _, _, s in chroma], atol=2e-3 if half else 1e-5)
    # Open ranges and a range with nothing in it; an undated chunk is in no range.
    undated = {cid for cid, meta in zip(ids, metas) if meta.get("published_day") is None}
    assert undated and not undated & {cid for cid, _ in retriever.nearest(vector, since=date(2000, 1, 1))}
    assert retriever.nearest(vector, until=date(2022, 12, 31)) == []


def _retriever(store: ArticleStore) -> HybridRetriever:
    """A retriever over the store's given vectors (no model), its index built."""
    retriever = HybridRetriever(store, _NoEmbedder(), candidates=20)
    retriever.refresh()
    return retriever


def _assert_same_hits(found: list[tuple[str, float]], expected: list[tuple[str, float]], *, atol: float) -> None:
    """The same chunks in the same order, with the same similarities (to `atol`)."""
    assert [cid for cid, _ in found] == [cid for cid, _ in expected]
    assert np.allclose([s for _, s in found], [s for _, s in expected], atol=atol)


def _chroma_queries(store: ArticleStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, how many results each nearest-neighbour query asks of Chroma, in order."""
    asked: list[int] = []
    nearest_ids = store.nearest_ids

    def counted(vector: np.ndarray, n: int, ids: list[str] | None = None) -> list[tuple[str, float]]:
        asked.append(n)
        return nearest_ids(vector, n, ids)

    monkeypatch.setattr(store, "nearest_ids", counted)
    return asked


def test_a_small_collection_is_searched_exactly_a_large_one_in_chromas_index(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, vector = _random_store(settings)
    retriever = _retriever(store)
    asked = _chroma_queries(store, monkeypatch)
    scanned = retriever.nearest(vector)  # every chunk, the undated too
    assert not asked
    monkeypatch.setattr(hybrid, "_EXACT_ROWS", 0)
    indexed = retriever.nearest(vector)
    assert asked == [20]
    _assert_same_hits(scanned, indexed, atol=1e-5)


def test_a_wide_date_range_is_searched_in_chromas_index_and_finds_what_the_scan_finds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, vector = _random_store(settings)
    retriever = _retriever(store)
    since = date(2023, 1, 3)  # most of the dated chunks
    scanned = retriever.nearest(vector, since)
    asked = _chroma_queries(store, monkeypatch)
    monkeypatch.setattr(hybrid, "_EXACT_ROWS", 0)  # the collection is small: call every range wide
    found = retriever.nearest(vector, since)
    assert asked and asked[0] > 20  # Chroma was asked for more than needed, without a filter
    _assert_same_hits(found, scanned, atol=2e-3)


class _NoEmbedder:
    """Search given vectors directly: no question is embedded."""

    dimension = 16
    version = "none"

    def embed(self, texts: list[str]) -> np.ndarray:
        raise AssertionError("not used")

    embed_documents = embed


def test_a_write_through_the_store_shows_in_its_version_at_once(settings: Settings) -> None:
    store, _ = _random_store(settings, articles=3)
    before = store.version()
    assert store.version() == before
    store.delete(store.live(), [next(iter(store.articles()))])
    assert store.version() != before


def test_document_frequencies_count_the_chunks_that_use_a_term() -> None:
    texts = ["Troops sent to Iraq", "More troops, more troops", "The dam holds water", ""]
    index = KeywordIndex(["a", "b", "c", "d"], texts)
    assert [index.df(term) for term in ("troop", "iraq", "water", "absent")] == [2, 1, 1, 0]
    assert index.idf("troop") == math.log(1 + 5 / 2.5)
    assert [cid for cid, _ in index.search("troops in Iraq", 3)] == ["a", "b"]


def test_tokens_are_the_same_the_first_time_and_after() -> None:
    text = "How many troops? The troops’ 4,600 dollars; HOW FAR is Kallaru"
    first = tokenize(text)
    assert first == tokenize(text) == ["troop", "troop", "4600", "dollar", "kallaru"]
    assert tokenize(text, keep_stopwords=True)[:3] == ["how", "troop", "the"]  # "how many" asks, it says nothing


def test_questions_are_answered_from_the_old_keyword_index_while_a_new_one_is_built(services: Services) -> None:
    """A reload's keyword index is built beside the one in use; no question waits for it."""
    import shutil
    import threading

    from tests.conftest import ARTICLES

    first, rest = sorted(ARTICLES.iterdir())[:2], sorted(ARTICLES.iterdir())[2:]
    folder = services.settings.data_dir.parent / "articles"
    folder.mkdir()
    for path in first:
        shutil.copy(path, folder)
    services.ingestor.ingest([folder])
    retriever = services.retriever
    retriever.refresh()
    known = retriever.keywords.size
    for path in rest:
        shutil.copy(path, folder)
    services.ingestor.ingest([folder], rebuild=True)  # a reload: a new collection, read whole

    building, release = threading.Event(), threading.Event()
    fetch = retriever.store.all_chunks

    def slow_fetch() -> tuple[list[str], list[str], list[dict[str, Any]]]:
        building.set()
        assert release.wait(30)
        return fetch()

    retriever.store.all_chunks = slow_fetch  # type: ignore[method-assign]
    rebuild = threading.Thread(target=retriever.refresh)
    rebuild.start()
    try:
        assert building.wait(30)
        answered = retriever.retrieve(Query("How far is Mosul from Baghdad?"))  # does not wait for the build
        assert answered and retriever.keywords.size == known
    finally:
        release.set()
        rebuild.join(30)
    assert retriever.keywords.size == services.store.count() > known
    assert "360" in " ".join(p.text for p in retriever.retrieve(Query("How far is Mosul from Baghdad?")))


def test_story_grouping_finds_the_story_comparing_every_story_would() -> None:
    """The bound on shared terms only spares comparisons: the story found is the one a full comparison finds."""
    from array import array

    rng = np.random.default_rng(3)
    base = [rng.choice(5000, int(rng.integers(20, 150)), replace=False) for _ in range(12)]
    stories = hybrid._Stories(4)  # grows past its first capacity
    heads: list[tuple[str, set[int]]] = []
    found = {"same": 0, "none": 0}
    for number in range(400):
        source = base[int(rng.integers(0, len(base)))]
        keep = source[rng.random(len(source)) < rng.uniform(0.3, 1.0)]  # a copy, more or less edited
        terms = array("I", sorted(set(keep.tolist()) | set(rng.choice(5000, int(rng.integers(0, 40))).tolist())))
        doc_id = f"doc{int(rng.integers(0, 30))}"
        expected = next(
            (i for i, (head_doc, head) in enumerate(heads) if head_doc != doc_id and hybrid._similar(set(terms), head)), None
        )
        story = stories.find(doc_id, terms, hybrid._bucket_counts(terms))
        assert (None if story is None else stories.members.index(story)) == expected
        found["none" if story is None else "same"] += 1
        if story is None and number % 3 == 0:
            stories.start(f"{doc_id}:{number:04d}", doc_id, terms, hybrid._bucket_counts(terms))
            heads.append((doc_id, set(terms)))
    assert found["same"] > 50 and found["none"] > 50 and len(heads) > 8
