"""Server mode: the same ingest and answers against a real `chroma run` server on loopback."""

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.index.embedding import SentenceTransformerEmbedder
from tests.conftest import ARTICLES, make_services

# The chroma command beside the running Python (its venv), else on PATH.
_BESIDE = Path(sys.executable).parent / "chroma"
CHROMA = str(_BESIDE) if _BESIDE.exists() else shutil.which("chroma") or "chroma"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    if shutil.which(CHROMA) is None:
        pytest.fail("the chroma command (from the chromadb package) is not installed")
    port = _free_port()
    log = (tmp_path / "chroma.log").open("w")
    server = subprocess.Popen(
        [CHROMA, "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "chroma.log").read_text()
                time.sleep(0.2)
        else:
            pytest.fail("chroma server did not start")
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_http_mode_serves_the_same_answers(chroma_server: int, tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
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


def test_unreachable_server_fails_with_a_clear_message(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    from retrieval.index.store import StoreError

    services = make_services(tmp_path, embedder, chroma_mode="http", chroma_host="127.0.0.1", chroma_port=_free_port())
    with pytest.raises(StoreError, match="cannot reach the Chroma server"):
        services.store.count()
