"""Ingest into a real Chroma on disk with the real model: incremental, replace, prune, partial failure, rebuild."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval.index.embedding import Embedder
from retrieval.service import Services
from tests.conftest import ARTICLES, make_services


class CountingEmbedder:
    """The real embedder, counting how many texts it was asked to embed for the index."""

    def __init__(self, inner: Embedder, version: str | None = None) -> None:
        self.inner = inner
        self.texts = 0
        self._version = version

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def version(self) -> str:
        return self._version or self.inner.version

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed_documents(texts)


@pytest.fixture
def counted(tmp_path: Path, embedder: Embedder) -> tuple[Services, CountingEmbedder, Path]:
    articles = tmp_path / "articles"
    shutil.copytree(ARTICLES, articles)
    counter = CountingEmbedder(embedder)
    services = make_services(tmp_path / "var", counter)
    return services, counter, articles


def test_reingest_embeds_nothing_unchanged(counted: tuple[Services, CountingEmbedder, Path]) -> None:
    services, counter, articles = counted
    first = services.ingestor.ingest([articles])
    assert (len(first.added), len(first.skipped)) == (5, 0)
    chunks = services.store.count()
    embedded = counter.texts
    assert embedded == chunks > 5

    second = services.ingestor.ingest([articles])
    assert (len(second.added), len(second.updated), len(second.unchanged)) == (0, 0, 5)
    assert counter.texts == embedded
    assert services.store.count() == chunks


def test_changed_article_is_replaced_not_duplicated(counted: tuple[Services, CountingEmbedder, Path]) -> None:
    services, counter, articles = counted
    services.ingestor.clock = lambda: 1_800_000_000.5
    services.ingestor.ingest([articles])
    assert {a.ingested_at for a in services.store.articles().values()} == {1_800_000_000}
    path = articles / "001_646d790daebf6fdf.txt"
    path.write_text(path.read_text() + "\nCarter also met Kurdish leaders in Erbil on Thursday.\n")
    before = counter.texts
    services.ingestor.clock = lambda: 1_800_000_600.0
    report = services.ingestor.ingest([articles])
    assert (len(report.added), len(report.updated), len(report.unchanged)) == (0, 1, 4)
    stored = services.store.articles()
    assert len(stored) == 5
    # The changed content arrived now; the rest keeps when it arrived.
    assert {d: a.ingested_at for d, a in stored.items()} == {
        d: 1_800_000_600 if d in report.updated else 1_800_000_000 for d in stored
    }
    assert counter.texts - before == stored[report.updated[0]].chunks  # only that article re-embedded
    answer = services.answerer.answer("Where did Carter meet Kurdish leaders?")
    assert "Erbil" in answer.text


def test_prune_removes_articles_whose_files_are_gone(counted: tuple[Services, CountingEmbedder, Path]) -> None:
    services, _, articles = counted
    services.ingestor.ingest([articles])
    (articles / "004_7d39ffd2d1ae62c8.txt").unlink()
    kept = services.ingestor.ingest([articles])
    assert len(services.store.articles()) == 5 and not kept.removed
    pruned = services.ingestor.ingest([articles], prune=True)
    assert len(pruned.removed) == 1
    assert {Path(a.path).name for a in services.store.articles().values()} == {p.name for p in articles.iterdir()}


def test_bad_files_are_skipped_and_the_rest_ingested(counted: tuple[Services, CountingEmbedder, Path]) -> None:
    services, _, articles = counted
    (articles / "broken.txt").write_bytes(b"\x00\x01\x02binary")
    (articles / "feed.jsonl").write_text('{"title": "Good", "text": "A good line about the port."}\n{oops\n')
    report = services.ingestor.ingest([articles])
    assert len(report.added) == 6
    assert sorted((Path(e.path).name, e.line) for e in report.skipped) == [("broken.txt", None), ("feed.jsonl", 2)]


def test_failed_rebuild_leaves_the_live_collection_serving(
    counted: tuple[Services, CountingEmbedder, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, counter, articles = counted
    services.ingestor.ingest([articles])
    live = services.store.live_name
    question = "How many additional troops did Ash Carter announce?"
    before = services.answerer.answer(question)
    assert before.citations and not before.refused
    (articles / "new.txt").write_text("Dam opens after ten years\n\nThe new dam on the river opened on Thursday.\n")

    def broken(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(services.store, "add", broken)
    with pytest.raises(RuntimeError):
        services.ingestor.ingest([articles], rebuild=True)
    assert services.store.live_name == live
    assert len(services.store.articles()) == 5
    # The old collection answers as it did before the failed rebuild.
    assert services.answerer.answer(question).text == before.text

    monkeypatch.undo()
    report = services.ingestor.ingest([articles], rebuild=True)
    assert len(report.added) == 1 and services.store.live_name != live
    assert len(services.store.articles()) == 6


def test_a_chunk_text_two_articles_share_is_embedded_once(counted: tuple[Services, CountingEmbedder, Path]) -> None:
    """The same wire story in two outlets, one with a line of its own at the end: the shared chunks embed once."""
    services, counter, _ = counted
    story = (ARTICLES / "002_153beaa652ab34ac.txt").read_text()
    feed = counted[2].parent / "feed"
    feed.mkdir()
    (feed / "agency.txt").write_text(story)
    own_line = "Kurdish leaders met the coalition's envoy in Erbil on Thursday to discuss the offensive."
    (feed / "outlet.txt").write_text(f"{story}\n{own_line}\n")
    report = services.ingestor.ingest([feed])
    assert len(report.added) == 2
    stored = services.store.articles()
    assert sum(article.chunks for article in stored.values()) == services.store.count()
    # The outlet's copy shares every chunk but its last with the agency's.
    assert report.chunks_embedded == counter.texts < services.store.count()
    assert services.store.count() - counter.texts >= 1


def test_another_embedding_model_re_embeds_what_it_did_not_make(
    counted: tuple[Services, CountingEmbedder, Path], embedder: Embedder
) -> None:
    """Vectors of two models cannot be compared: an index made by another one is embedded again, once."""
    services, counter, articles = counted
    services.ingestor.clock = lambda: 1_800_000_000.0
    services.ingestor.ingest([articles])
    chunks = services.store.count()
    other = CountingEmbedder(embedder, version="another-model")
    switched = make_services(services.settings.data_dir, other)
    switched.ingestor.clock = lambda: 1_800_009_000.0
    report = switched.ingestor.ingest([articles])
    # Embedded again, not arrived again: a digest does not post them as new.
    assert {a.ingested_at for a in switched.store.articles().values()} == {1_800_000_000}
    assert len(report.reembedded) == len(report.unchanged) == 5 and not report.added and not report.updated
    assert other.texts == chunks == switched.store.count()  # replaced, not duplicated
    assert {a.embedder for a in switched.store.articles().values()} == {"another-model"}
    again = switched.ingestor.ingest([articles])
    assert not again.reembedded and other.texts == chunks
    assert "560" in switched.answerer.answer("How many additional troops did Ash Carter announce for Iraq in July 2016?").text


def test_two_batch_sizes_give_the_same_index_and_the_same_answers(tmp_path: Path, embedder: Embedder) -> None:
    """The samples ingested with batches of 1 and of 64 texts: the same vectors, to 1e-5, and the same answers."""
    from retrieval.index.embedding import OnnxEmbedder

    assert isinstance(embedder, OnnxEmbedder)
    indexes = []
    for batch_size in (1, 64):
        batched = OnnxEmbedder(embedder.path, cache_dir=embedder.cache_dir, batch_size=batch_size)
        services = make_services(tmp_path / f"var-{batch_size}", batched)
        assert services.ingestor.ingest([ARTICLES]).ok
        indexes.append(services)
    ids = sorted(indexes[0].store.all_chunks()[0])
    assert ids == sorted(indexes[1].store.all_chunks()[0])
    one, many = (services.store.vectors(ids) for services in indexes)
    assert np.abs(np.sum(one * many, axis=1) - 1).max() <= 1e-5
    for question in (
        "How many additional troops did Ash Carter announce for Iraq in July 2016?",
        "How far is Mosul from Baghdad?",
        "Who won the 2018 FIFA World Cup?",
    ):
        assert indexes[0].answerer.answer(question).text == indexes[1].answerer.answer(question).text
