"""Server mode: the same ingest and answers against a real `chroma run` server on loopback."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.index.embedding import Embedder
from tests.chroma import ChromaServer, free_port
from tests.conftest import ARTICLES, make_services


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    server = ChromaServer(tmp_path / "server-data")
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def test_http_mode_serves_the_same_answers(chroma_server: int, tmp_path: Path, embedder: Embedder) -> None:
    options = {"chroma_mode": "http", "chroma_host": "127.0.0.1", "chroma_port": chroma_server}
    writer = make_services(tmp_path / "writer", embedder, **options)
    assert len(writer.ingestor.ingest([ARTICLES]).added) == 5
    assert not (tmp_path / "writer" / "chroma").exists()  # nothing stored locally

    # A second process-like client (another machine) sees the same index, and follows a rebuild.
    reader = make_services(tmp_path / "reader", embedder, **options)
    answer = reader.answerer.answer("How much can coalition-supported sorties cost per day?")
    assert "$250,000" in answer.text and answer.citations
    before = reader.store.live_name
    writer.ingestor.ingest([ARTICLES], rebuild=True)
    assert reader.store.live_name != before and reader.store.count() == writer.store.count()
    assert "$250,000" in reader.answerer.answer("How much can coalition-supported sorties cost per day?").text


def test_unreachable_server_fails_with_a_clear_message(tmp_path: Path, embedder: Embedder) -> None:
    from retrieval.index.store import StoreError

    services = make_services(tmp_path, embedder, chroma_mode="http", chroma_host="127.0.0.1", chroma_port=free_port())
    with pytest.raises(StoreError, match="cannot reach the Chroma server"):
        services.store.count()
