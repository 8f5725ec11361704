"""The embedders: the ONNX export of the bundled MiniLM against torch, its cache, batches, and use from many threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from retrieval.index.embedding import Embedder, OnnxEmbedder, SentenceTransformerEmbedder
from retrieval.service import Services

from .conftest import ARTICLES

pytestmark = pytest.mark.model

SENTENCES = [
    "An additional 560 US military personnel will be sent to Iraq to assist the battle against the Islamic State group.",
    "Mosul lies about 360 kilometres (225 miles) north of Baghdad.",
    "Who won the 2018 FIFA World Cup?",
    "Coalition aircraft carried out more than 1,200 airstrikes against the jihadists in Iraq and Syria since August.",
]


def test_the_onnx_export_gives_the_torch_models_vectors(embedder: Embedder) -> None:
    torch_vectors = SentenceTransformerEmbedder(threads=1).embed(SENTENCES)
    onnx_vectors = embedder.embed(SENTENCES)
    assert np.sum(torch_vectors * onnx_vectors, axis=1).min() > 0.9999
    # The index's chunks are embedded by the same graph as the questions.
    assert np.abs(embedder.embed_documents(SENTENCES) - onnx_vectors).max() < 1e-5
    question = ["How far is Mosul from Baghdad?"]
    assert np.argmax(torch_vectors @ SentenceTransformerEmbedder(threads=1).embed(question)[0]) == 1
    assert np.argmax(onnx_vectors @ embedder.embed(question)[0]) == 1


def test_a_texts_vector_is_the_same_alone_and_in_any_batch(embedder: Embedder) -> None:
    """Alone, or in a batch of 64 with longer and shorter texts (padding), or split into batches of 3: the same vector."""
    assert isinstance(embedder, OnnxEmbedder)
    texts = [f"{sentence} " * (1 + n % 4) for n, sentence in enumerate(SENTENCES * 16)]
    alone = np.stack([embedder.embed_documents([text])[0] for text in texts[:8]])
    for batch_size in (64, 3):
        batched = OnnxEmbedder(embedder.path, cache_dir=embedder.cache_dir, batch_size=batch_size)
        vectors = batched.embed_documents(texts)[:8]
        assert np.abs(np.sum(alone * vectors, axis=1) - 1).max() <= 1e-5


def test_the_export_is_made_once_and_reused(embedder: Embedder, tmp_path: Path) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    embedder.embed(["load"])  # the session's export exists
    again = OnnxEmbedder(cache_dir=embedder.cache_dir)
    made = (again.folder / "model.onnx").stat().st_mtime_ns
    assert again.version == embedder.version
    assert np.allclose(again.embed(SENTENCES), embedder.embed(SENTENCES), atol=1e-5)
    assert (again.folder / "model.onnx").stat().st_mtime_ns == made
    # Another model (here: the same files under another name) gets its own export.
    other = OnnxEmbedder(embedder.path, cache_dir=tmp_path)
    assert other.folder.parent == tmp_path and not other.folder.exists()


def test_threads_share_one_embedder(embedder: Embedder) -> None:
    texts = [f"{sentence} ({n})" for n in range(12) for sentence in SENTENCES]
    alone = [embedder.embed([text])[0] for text in texts]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda text: embedder.embed([text])[0], texts))
    assert np.allclose(np.stack(together), np.stack(alone), atol=1e-5)


def test_questions_answered_side_by_side_get_the_answers_they_get_alone(seed_services: Services) -> None:
    questions = [
        "How many additional troops did Ash Carter announce for Iraq in July 2016?",
        "How far is Mosul from Baghdad?",
        "Which air base near Mosul did Iraqi forces recapture?",
        "Who won the 2018 FIFA World Cup?",
    ] * 3
    alone = [seed_services.answerer.answer(q).text for q in questions]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda q: seed_services.answerer.answer(q).text, questions))
    assert together == alone


def test_the_torch_runtime_still_serves(tmp_path: Path) -> None:
    from config import load_settings

    services = Services(load_settings(data_dir=str(tmp_path / "var"), embedding_runtime="torch"))
    assert isinstance(services.embedder, SentenceTransformerEmbedder)
    services.ingestor.ingest([ARTICLES])
    answer = services.answerer.answer("How far is Mosul from Baghdad?")
    assert "360" in answer.text and answer.citations
