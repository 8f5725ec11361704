"""The reader: the bundled pair model, what it reads of a question, passage re-ranking, refusals.

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
from retrieval.index.store import LEGACY_SENTENCE_VECTORS
from retrieval.passages import Passage, Query
from retrieval.read.candidates import candidates, sentence_features
from retrieval.read.reader import FEATURES, Reader, ReaderModel, ReaderWeights, bundled_model, pair_text
from retrieval.service import Services
from tests.conftest import make_services

TROOPS = "How many additional troops did Ash Carter announce for Iraq in July 2016?"


def test_the_bundled_reader_is_complete_and_small() -> None:
    folder = bundled_model()
    for name in ("model.onnx", "tokenizer.json", "encoder.json", "reader.json", "training.json", "README.md"):
        assert (folder / name).is_file(), name
    size = sum(path.stat().st_size for path in folder.iterdir())
    assert size <= 60 * 1024 * 1024
    weights = ReaderWeights.read(folder / "reader.json")
    assert len(weights.coef) == len(FEATURES) and 0.0 < weights.threshold < 1.0 and weights.pool > 0
    assert json.loads((folder / "reader.json").read_text())["features"] == list(FEATURES)
    assert weights.gate_coef[FEATURES.index("recency")] == 0.0  # recency orders answers; it never admits one


def test_the_pair_model_reads_the_question_with_the_sentence(reader_model: ReaderModel) -> None:
    # The same subject, the same words; only one sentence says who won. A bi-encoder scores each sentence
    # without the question; the pair model reads both.
    question = "Which film won best picture at the Academy Awards?"
    won, scheduled = reader_model.scores(
        question,
        [
            "Oppenheimer won best picture at the 96th Academy Awards on Sunday night. | Oppenheimer sweeps the Oscars",
            "The 96th Academy Awards are set to take place on Sunday, March 10, in Los Angeles. | Oscars 2024 preview",
        ],
    )
    assert won > scheduled
    troops, mention = reader_model.scores(
        TROOPS,
        [
            "Carter announced that 560 additional troops would deploy to Iraq to help retake Mosul. | US to send 560 troops",
            "Ash Carter has visited Iraq several times as secretary of defense. | Carter in Baghdad",
        ],
    )
    assert troops > mention


def test_only_the_priors_best_candidates_are_read_and_each_pair_once(reader_seed_services: Services) -> None:
    reader = reader_seed_services.reader
    assert reader is not None
    model = reader.model
    read: list[int] = []
    embedded: list[int] = []
    original = model.scores
    embedder = reader_seed_services.embedder
    embed = embedder.embed

    def counting(question: str, texts: list[str]) -> np.ndarray:
        read.append(len(texts))
        return original(question, texts)

    def counting_embed(texts: list[str]) -> np.ndarray:
        embedded.append(len(texts))
        return embed(texts)

    small = Reader(model, reader_seed_services.retriever.term_weight, reader_seed_services.embedder, pool=5)
    passages = reader_seed_services.retriever.retrieve(Query(TROOPS), 20)
    model.scores = counting  # type: ignore[method-assign]
    embedder.embed = counting_embed  # type: ignore[method-assign]
    try:
        found = small.read(Query(TROOPS), passages)
        again = small.read(Query(TROOPS), passages)
    finally:
        model.scores = original  # type: ignore[method-assign]
        embedder.embed = embed  # type: ignore[method-assign]
    assert len(candidates(passages)) > 5 and len(found) == 5
    # The second reading of the same pairs asks neither the pair model nor the embedder anything.
    assert read == [5] and embedded == [6]  # the question and the five sentences
    assert all(c.features is not None and 0.0 < c.features.dense <= 1.0 for c in found)
    assert [c.rank for c in found] == sorted((c.rank for c in found), reverse=True)
    assert [(c.sentence, c.rank) for c in again] == [(c.sentence, c.rank) for c in found]
    assert all(0.0 <= c.score <= 1.0 and c.features is not None for c in found)


def test_a_pairs_score_is_the_same_alone_and_in_any_batch(reader_model: ReaderModel) -> None:
    """Scored alone, among 64 pairs of other lengths (padding), or in batches of 3: the same score, to 1e-5."""
    from retrieval.index.encoder import OnnxEncoder

    texts = [f"Carter announced {n} more troops for Iraq. " * (1 + n % 5) + "| US to send troops" for n in range(64)]
    alone = np.array([reader_model.scores(TROOPS, [text])[0] for text in texts[:8]])
    for batch_size in (64, 3):
        scorer = OnnxEncoder(reader_model.folder, batch_size=batch_size)
        together = scorer.embed([(TROOPS, text) for text in texts])[:8, 0]
        assert np.abs(alone - together).max() <= 1e-5


def test_the_shipped_pair_model_multiplies_in_float() -> None:
    """Int8 weights dequantized in the graph: no integer product, no activation quantised per batch."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(bundled_model() / "model.onnx")).graph.node}
    assert "DequantizeLinear" in ops and "MatMul" in ops
    assert not ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}


def test_pair_text_reads_a_sentence_with_its_headline() -> None:
    passage = Passage(1, "d", "d:0000", "Kallaru dam opens at last", "The dam opened on Tuesday after four years of work.", 1.0)
    headline, sentence = candidates([passage])
    assert pair_text(headline) == headline.sentence == "Kallaru dam opens at last"
    assert pair_text(sentence) == "The dam opened on Tuesday after four years of work. | Kallaru dam opens at last"


def test_ingest_computes_nothing_for_the_reader(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path / "var", embedder, reader="bundled")
    model = services.reader_model
    assert model is not None
    original = model.scores
    read: list[int] = []

    def counting(question: str, texts: list[str]) -> np.ndarray:
        read.append(len(texts))
        return original(question, texts)

    model.scores = counting  # type: ignore[method-assign]
    try:
        report = services.ingestor.ingest([BUNDLED_ARTICLES])
    finally:
        model.scores = original  # type: ignore[method-assign]
    assert report.ok and read == []  # the reader reads at question time: ingest costs what it did without one
    ids = services.store.all_chunks()[0][:3]
    assert all(LEGACY_SENTENCE_VECTORS not in meta for _, meta in services.store.chunks(ids).values())


def test_the_reader_answers_and_refuses(reader_seed_services: Services) -> None:
    reader = reader_seed_services.reader
    assert reader is not None and reader_seed_services.generator.threshold == reader.threshold  # type: ignore[attr-defined]
    answer = reader_seed_services.answerer.answer(TROOPS)
    assert not answer.refused and "560" in answer.text
    assert answer.evidence is not None and answer.evidence >= reader.threshold
    refused = reader_seed_services.answerer.answer("Who won the 2018 FIFA World Cup?")
    assert refused.refused and refused.citations == []
    assert refused.evidence is not None and refused.evidence < reader.threshold


def test_support_is_measured_only_when_asked() -> None:
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


def test_the_readers_gate_refuses_a_question_that_shares_one_word_with_the_articles(reader_seed_services: Services) -> None:
    # "Carter arrived in the capital city of Baghdad" shares "capital" and nothing else. The gate without the
    # sentence's cosine to the question admitted it (0.051 against a threshold of 0.046); with it, it is refused.
    answer = reader_seed_services.answerer.answer("What is the capital of Australia?")
    assert answer.refused and not answer.citations
