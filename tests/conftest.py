"""Shared fixtures: the real embedding model and a real Chroma on disk, offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings, load_settings
from config.settings import BUNDLED_ARTICLES
from retrieval.index.embedding import Embedder, OnnxEmbedder
from retrieval.read.reader import ReaderModel
from retrieval.service import Services
from tests.chroma import ChromaServer
from tests.websites import Website

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = BUNDLED_ARTICLES
SEED_QA = Path(__file__).resolve().parent / "data" / "seed_qa_dev.jsonl"


# Tests that use these fixtures load the embedding model (and Chroma with it): marked `model`, so that
# `pytest -m "not model"` is the quick loop. Tests that load it another way (the CLI) carry the mark themselves.
MODEL_FIXTURES = frozenset(
    {"embedder", "reader_model", "services", "seed_services", "reader_seed_services", "scorer_seed_services"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """One real all-MiniLM-L6-v2 for the whole run, as the product runs it (int8 ONNX, exported once into the cache)."""
    return OnnxEmbedder(threads=1, workers=2)


@pytest.fixture(scope="session")
def reader_model() -> ReaderModel:
    """The bundled reader (int8 ONNX), loaded once for the run: every service of the tests with the default reader shares it."""
    return _shared_reader()


_READER: list[ReaderModel] = []


def _shared_reader() -> ReaderModel:
    if not _READER:
        _READER.append(ReaderModel())
    return _READER[0]


def make_services(data_dir: Path, embedder: Embedder, **overrides: Any) -> Services:
    """Services on a fresh data directory that share the session's models (passed in, not loaded again)."""
    settings = load_settings(data_dir=str(data_dir), **overrides)
    reader = _shared_reader() if settings.reader == "bundled" else None
    return Services(settings, embedder=embedder, reader_model=reader)


@pytest.fixture
def services(tmp_path: Path, embedder: Embedder) -> Services:
    """Empty index in a temporary directory."""
    return make_services(tmp_path / "var", embedder)


@pytest.fixture(scope="session")
def seed_services(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Services]:
    """The bundled sample articles, ingested once for the session. Do not modify it in tests."""
    services = make_services(tmp_path_factory.mktemp("seed") / "var", embedder)
    report = services.ingestor.ingest([ARTICLES])
    assert report.ok and len(report.added) == 5
    yield services


@pytest.fixture(scope="session")
def reader_seed_services(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Services]:
    """The sample articles ingested once, answered with the bundled reader on (`reader = "bundled"`)."""
    services = make_services(tmp_path_factory.mktemp("reader-seed") / "var", embedder, reader="bundled")
    report = services.ingestor.ingest([ARTICLES])
    assert report.ok and len(report.added) == 5
    yield services


@pytest.fixture(scope="session")
def scorer_seed_services(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Services]:
    """The sample articles ingested once, answered by the hand-weighted scorer (reader off), entities and short answers on."""
    services = make_services(
        tmp_path_factory.mktemp("scorer-seed") / "var", embedder, reader="off", entities=True, short_answer=True
    )
    report = services.ingestor.ingest([ARTICLES])
    assert report.ok and len(report.added) == 5
    yield services


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=str(tmp_path / "var"))


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A real `chroma run` server on loopback, for one test."""
    server = ChromaServer(tmp_path / "chroma-data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def website() -> Iterator[Website]:
    """A website on loopback (feeds, pages) for one test."""
    site = Website().start()
    yield site
    site.stop()
