"""Server mode: the same ingest and answers against a real `chroma run` server on loopback.

The server is the chromadb package's own (`chroma run`), of the release the client is pinned to, which
is the release docker-compose.yml runs (chromadb/chroma:1.5.9): the first test checks that it is.
"""

import json
import urllib.request
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
import pytest
import yaml

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


def test_the_server_here_is_the_release_compose_runs_and_the_client_speaks_it(chroma_server: int) -> None:
    import chromadb

    from tests.chroma import CHROMA

    compose = yaml.safe_load((Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text())
    release = compose["services"]["chroma"]["image"].rpartition(":")[2]
    # The server started here is the `chroma` command of the installed chromadb, the compose image's release.
    package = distribution("chromadb")
    assert package.version == release
    assert "chroma" in {entry.name for entry in package.entry_points}
    assert any(Path(CHROMA).resolve() == Path(str(package.locate_file(file))).resolve() for file in package.files or [])
    # Its API version: the 1.x servers (the Docker images too) report "1.0.0", not their release (chroma-core/chroma#4849).
    with urllib.request.urlopen(f"http://127.0.0.1:{chroma_server}/api/v2/version", timeout=10) as response:
        api = json.loads(response.read())
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
    assert client.get_version() == api and api.split(".")[0] == release.split(".")[0]
    collection = client.create_collection("handshake", metadata={"hnsw:space": "cosine"})
    collection.add(ids=["a", "b"], embeddings=np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32), documents=["one", "two"])
    assert collection.query(query_embeddings=np.array([[0.9, 0.1]], dtype=np.float32), n_results=1)["ids"] == [["a"]]


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
