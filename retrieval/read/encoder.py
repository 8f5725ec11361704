"""A sentence encoder exported to ONNX (int8), run with ONNX Runtime: no torch at answer time, no model hub."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class EncoderError(RuntimeError):
    """The encoder's files are missing or unreadable."""


@dataclass(frozen=True)
class EncoderConfig:
    """What the exported model expects: its vector size and the longest input it reads, in tokens."""

    dimension: int = 384
    max_tokens: int = 96

    @classmethod
    def read(cls, folder: Path) -> EncoderConfig:
        path = folder / "encoder.json"
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(dimension=int(data.get("dimension", 384)), max_tokens=int(data.get("max_tokens", 96)))


class OnnxEncoder:
    """Mean-pooled, normalised sentence vectors from `model.onnx` and `tokenizer.json` in one folder.

    Texts are batched by length so a batch pads little. The ONNX Runtime session is safe to share
    between threads; a fast tokenizer is not ("Already borrowed"), so each thread gets its own.
    """

    def __init__(self, folder: Path, *, threads: int = 1, batch_size: int = 32) -> None:
        self.folder = Path(folder)
        for name in ("model.onnx", "tokenizer.json"):
            if not (self.folder / name).is_file():
                raise EncoderError(f"encoder file missing: {self.folder / name}")
        self.config = EncoderConfig.read(self.folder)
        self.threads = threads
        self.batch_size = batch_size
        self._session: Any = None
        self._session_lock = threading.Lock()
        self._local = threading.local()

    @property
    def dimension(self) -> int:
        return self.config.dimension

    def _tokenizer(self) -> Any:
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            tokenizer.enable_truncation(self.config.max_tokens)
            tokenizer.enable_padding()
            self._local.tokenizer = tokenizer
        return tokenizer

    def _run(self) -> Any:
        with self._session_lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                logger.info("loading encoder from %s", self.folder)
                self._session = ort.InferenceSession(str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        return self._session

    def embed(self, texts: list[str]) -> np.ndarray:
        """One normalised row per text."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        session, tokenizer = self._run(), self._tokenizer()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encodings = tokenizer.encode_batch([texts[i] for i in batch])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            out[batch] = session.run(None, feeds)[0]
        return out
