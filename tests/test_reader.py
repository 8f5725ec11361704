"""The reader: the bundled trained model, its vectors kept at ingest, passage re-ranking, refusals.

Everything real: the committed int8 ONNX reader, the embedding model and Chroma on disk.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from config.settings import BUNDLED_ARTICLES
from retrieval.index.embedding import Embedder
from retrieval.index.store import SENTENCE_VECTORS, SENTENCE_VECTORS_MODEL
from retrieval.passages import Passage, Query
from retrieval.read.candidates import candidates, sentence_features
from retrieval.read.reader import FEATURES, ReaderModel, ReaderWeights, bundled_model
from retrieval.read.vectors import SentenceAnnotator, pack, unpack
from retrieval.service import Services
from tests.conftest import make_services

TROOPS = "How many additional troops did Ash Carter announce for Iraq in July 2016?"


def test_packed_vectors_keep_their_direction() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(7, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    back = unpack(pack(vectors), 384)
    assert back.shape == (7, 384)
    assert np.min(np.sum(back * vectors, axis=1)) > 0.999
    assert len(pack(vectors)) < 7 * (384 + 4) * 4 / 3 + 4  # int8: about a quarter of float32


def test_the_bundled_reader_is_complete_and_small() -> None:
    folder = bundled_model()
    for name in ("model.onnx", "tokenizer.json", "encoder.json", "reader.json", "README.md"):
        assert (folder / name).is_file(), name
    size = sum(path.stat().st_size for path in folder.iterdir())
    assert size <= 40 * 1024 * 1024
    weights = ReaderWeights.read(folder / "reader.json")
    assert len(weights.coef) == len(FEATURES) and 0.0 < weights.threshold < 1.0
    assert json.loads((folder / "reader.json").read_text())["features"] == list(FEATURES)


def test_the_reader_prefers_the_sentence_that_answers(reader_model: ReaderModel) -> None:
    encoder = reader_model.encoder
    question, answer, mention = encoder.embed(
        [
            "How many troops did the US send to Iraq in July?",
            "The Pentagon said 560 more troops would deploy to Iraq in July.",
            "Iraq has been at the centre of US foreign policy debates for years.",
        ]
    )
    assert abs(float(np.linalg.norm(answer)) - 1.0) < 1e-3
    assert float(answer @ question) > float(mention @ question)


def test_ingest_keeps_each_sentence_vector_with_its_chunk(reader_seed_services: Services) -> None:
    store = reader_seed_services.store
    model = reader_seed_services.reader_model
    assert model is not None
    ids = store.all_chunks()[0][:3]
    for cid, (text, meta) in store.chunks(ids).items():
        assert meta[SENTENCE_VECTORS_MODEL] == model.version
        vectors = unpack(str(meta[SENTENCE_VECTORS]), model.encoder.dimension)
        sentences = [str(meta["title"])]
        from retrieval.ingest.text import split_sentences

        sentences += split_sentences(text)
        assert len(vectors) == len(sentences), cid
        # The stored vector is the encoder's, for the sentence read with its headline.
        fresh = model.encoder.embed([f"{sentences[1]} | {sentences[0]}"])[0]
        assert float(fresh @ vectors[1]) > 0.99


def test_answers_read_stored_vectors_without_encoding_sentences(reader_seed_services: Services) -> None:
    reader = reader_seed_services.reader
    assert reader is not None
    calls: list[int] = []
    encoder = reader.model.encoder
    original = encoder.embed

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return original(texts)

    encoder.embed = counting  # type: ignore[method-assign]
    try:
        answer = reader_seed_services.answerer.answer(TROOPS)
    finally:
        encoder.embed = original  # type: ignore[method-assign]
    assert "560" in answer.text and not answer.refused
    # Only the question is encoded at answer time, once for re-ranking and answering (or not at all when
    # an earlier test asked it): the sentences' vectors come from the index.
    assert calls in ([], [1])


def test_passages_are_reranked_by_retrieval_and_reader_fused(reader_seed_services: Services) -> None:
    reader = reader_seed_services.reader
    assert reader is not None
    query = Query(TROOPS)
    pool = reader_seed_services.retriever.retrieve(query, 20)
    reranked = reader.rerank(query, pool)
    assert sorted(p.chunk_id for p in reranked) == sorted(p.chunk_id for p in pool)
    assert [p.rank for p in reranked] == list(range(1, len(pool) + 1))
    best: dict[str, float] = {}
    for candidate in reader.read(query, pool):
        best.setdefault(candidate.passage.chunk_id, candidate.rank)
    by_reader = sorted(pool, key=lambda p: -best.get(p.chunk_id, 0.0))
    reader_rank = {p.chunk_id: n for n, p in enumerate(by_reader, start=1)}
    fused = [1 / (60 + p.rank) + 1 / (60 + reader_rank[p.chunk_id]) for p in pool]
    # Reciprocal rank fusion of the two orders: the first passage is the best of both by it.
    assert reranked[0].chunk_id == pool[max(range(len(pool)), key=lambda i: (fused[i], -i))].chunk_id
    # A passage the reader finds nothing in cannot jump a better-retrieved passage the reader prefers.
    position = {p.chunk_id: n for n, p in enumerate(reranked)}
    for a in pool:
        for b in pool:
            if a.rank < b.rank and reader_rank[a.chunk_id] < reader_rank[b.chunk_id]:
                assert position[a.chunk_id] < position[b.chunk_id]
    assert any("560" in c.sentence for c in reader.read(query, reranked[:1]))


def test_the_reader_as_sentence_scorer_answers_and_refuses(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path / "var", embedder, reader="bundled", sentence_scorer="reader")
    services.ingestor.ingest([BUNDLED_ARTICLES])
    reader = services.reader
    assert reader is not None and services.generator.threshold == reader.threshold  # type: ignore[attr-defined]
    answer = services.answerer.answer(TROOPS)
    assert not answer.refused and "560" in answer.text
    assert answer.evidence is not None and answer.evidence >= reader.threshold
    refused = services.answerer.answer("Who won the 2018 FIFA World Cup?")
    assert refused.refused and refused.citations == []
    assert refused.evidence is not None and refused.evidence < reader.threshold


def test_a_new_reader_reannotates_without_reembedding(tmp_path: Path, embedder: Embedder) -> None:
    articles = tmp_path / "articles"
    articles.mkdir()
    (articles / "dam.md").write_text(
        "---\ntitle: Kallaru dam opens\npublished: 2023-01-03\n---\n"
        "Engineers finished the Kallaru river dam on Tuesday. It holds 412 million cubic metres of water.\n",
        encoding="utf-8",
    )
    services = make_services(tmp_path / "var", embedder, reader="bundled")
    first = services.ingestor.ingest([articles])
    assert first.added and first.chunks_embedded == 1
    model = services.reader_model
    assert model is not None
    # The same encoder under another version name: every unchanged article is read again, nothing re-embedded.
    services.ingestor.annotator = SentenceAnnotator(model.encoder, "another-reader")
    second = services.ingestor.ingest([articles])
    assert second.unchanged and second.chunks_embedded == 0 and second.reannotated == 1
    ((_, meta),) = services.store.chunks(services.store.all_chunks()[0]).values()
    assert meta[SENTENCE_VECTORS_MODEL] == "another-reader"
    third = services.ingestor.ingest([articles])
    assert third.reannotated == 0


def test_support_is_measured_only_for_a_scorer_that_weighs_it() -> None:
    passages = [
        Passage(
            1, "a", "a:0000", "Dam report", "Engineers said Kallaru Dam failed after the storm. Maria Lopez led the team.", 1.0
        ),
        Passage(2, "b", "b:0000", "Storm news", "Maria Lopez told reporters the Kallaru Dam failed on Monday.", 0.9),
    ]
    query = Query("Who led the team that inspected Kallaru Dam?")
    found = candidates(passages)
    similarities = np.linspace(0.9, 0.1, len(found))
    weights = {"kallaru": 2.0, "dam": 1.0, "team": 1.0}
    full = sentence_features(query, found, similarities, weights)
    lean = sentence_features(query, found, similarities, weights, with_support=False)
    assert any(f.support > 0 for f in full) and all(f.support == 0 for f in lean)
    assert [replace(f, support=0.0) for f in full] == lean
    shipped = ReaderWeights.read(bundled_model() / "reader.json")
    assert not shipped.weighs("support") and shipped.weighs("reader")


def test_candidates_skip_questions_and_fragments() -> None:
    passage = Passage(
        1, "d", "d:0000", "Why did the dam fail?", "It rained.\nThe dam failed after three days of record rain.", 1.0
    )
    found = [c.sentence for c in candidates([passage])]
    assert found == ["The dam failed after three days of record rain."]


@pytest.mark.model
def test_reader_off_falls_back_to_the_hand_weighted_scorer(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path / "var", embedder, reader="off")
    assert services.reader is None
    services.ingestor.ingest([BUNDLED_ARTICLES])
    answer = services.answerer.answer(TROOPS)
    assert "560" in answer.text
