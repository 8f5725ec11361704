"""Sentence encoders exported to ONNX and run with ONNX Runtime: no torch at answer time, no model hub.

Both of newsbot's encoders run this way: the embedder (the bundled all-MiniLM-L6-v2, exported here to
fp32 on first use, `retrieval/index/embedding.py`) and the reader's fine-tuned pair model
(`retrieval/read/`, int8 weights computed in float). `export_encoder` makes the embedder's files from a
local sentence-transformers folder. Both compute in float, so a text's result does not depend on the
other texts of its batch, and differs between x86-64 CPUs by float rounding only.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


# A text to encode, or a pair of texts read as one input ("question [SEP] sentence"): the reader's.
Text = str | tuple[str, str]


def _length(text: Text) -> int:
    return len(text) if isinstance(text, str) else len(text[0]) + len(text[1])


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
    Each run uses `threads` cores; a long list of texts is split over `workers` threads running
    batches side by side (ingest), while a question's one batch runs alone and leaves the other
    cores to the questions asked at the same time.
    """

    def __init__(
        self,
        folder: Path,
        *,
        threads: int = 1,
        batch_size: int = 32,
        workers: int = 1,
        model_file: str = "model.onnx",
        max_tokens: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.model_file = model_file
        for name in (model_file, "tokenizer.json"):
            if not (self.folder / name).is_file():
                raise EncoderError(f"encoder file missing: {self.folder / name}")
        self.config = EncoderConfig.read(self.folder)
        if max_tokens is not None:  # read less of each text than the model could (faster; see OnnxEmbedder)
            self.config = EncoderConfig(self.config.dimension, min(max_tokens, self.config.max_tokens))
        self.threads = threads
        self.batch_size = batch_size
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
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
                # ONNX Runtime would turn a dequantized weight and its float product back into an int8 kernel
                # (MatMulNBits) whose integer arithmetic differs between CPUs: the float product is what is exported.
                self._session = ort.InferenceSession(
                    str(self.folder / self.model_file),
                    options,
                    providers=["CPUExecutionProvider"],
                    disabled_optimizers=["QDQSelectorActionTransformer"],
                )
        return self._session

    def embed(self, texts: Sequence[Text]) -> np.ndarray:
        """One row per text: a normalised vector, or for a pair model (dimension 1) the pair's score."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: _length(texts[i]))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if len(batches) == 1 or self.workers == 1:
            for batch in batches:
                out[batch] = self._encode([texts[i] for i in batch])
            return out
        with self._session_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="encoder")
        results = self._pool.map(lambda batch: self._encode([texts[i] for i in batch]), batches)
        for batch, vectors in zip(batches, results):
            out[batch] = vectors
        return out

    def _encode(self, texts: list[Text]) -> np.ndarray:
        session, tokenizer = self._run(), self._tokenizer()
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return np.asarray(session.run(None, feeds)[0], dtype=np.float32)


def export_encoder(model_dir: Path, out: Path, max_tokens: int) -> None:
    """`model.onnx` (fp32), `tokenizer.json` and `encoder.json` for `OnnxEncoder`, from a sentence-transformers folder.

    torch.onnx traces the transformer with mean pooling and normalisation inside the graph. No model hub,
    no `optimum`. The graph stays fp32: int8 activations quantised per batch made a text's vector depend
    on its batch and on the CPU's integer kernels (`bench/numerics.py` measures both, and the speed).
    """
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    class Pooled(torch.nn.Module):
        def __init__(self, transformer: torch.nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            return F.normalize(mean_pool(hidden, attention_mask), p=2, dim=1)

    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    transformer: Any = model[0].auto_model
    module = Pooled(transformer).eval()
    sample = model.tokenizer(["a sentence to trace the graph with", "another"], padding=True, return_tensors="pt")
    # The graph is checked by use: tests compare its vectors with the torch model's.
    export_fp32(module, dict(sample), out / "model.onnx", "embedding")
    model.tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dimension = int(getter() or 384)
    (out / "encoder.json").write_text(json.dumps({"dimension": dimension, "max_tokens": max_tokens}) + "\n")


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """The mean of the token vectors that the attention mask keeps (torch tensors): sentence-transformers' pooling."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def export_fp32(module: Any, sample: dict[str, Any], path: Path, output: str) -> None:
    """`path`: a BERT-style torch module traced with torch.onnx, as it computes (fp32).

    The inputs are `input_ids`, `attention_mask` and `token_type_ids` (batch and length dynamic), taken
    from `sample` to trace; `output` names the result.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = ("input_ids", "attention_mask", "token_type_ids")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer warns about Python conditions in the attention code
        torch.onnx.export(
            module.eval(),
            tuple(sample[name] for name in inputs),
            str(path),
            input_names=list(inputs),
            output_names=[output],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in inputs} | {output: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def export_int8(module: Any, sample: dict[str, Any], out: Path, output: str) -> None:
    """`out/model.onnx`: as `export_fp32`, with its weights stored int8 (per channel) and computed in float.

    The weights are quantized by `onnxruntime.quantization` and then dequantized inside the graph
    (`quantization.weight_only`): the file is a quarter of the fp32 one, and a result is the same alone
    or in any batch, on any x86-64 CPU, to float rounding.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from retrieval.index.quantization import weight_only

    out.mkdir(parents=True, exist_ok=True)
    full = out / "model-fp32.onnx"
    export_fp32(module, sample, full, output)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic advises pre-processing on the root logger
    try:
        quantize_dynamic(str(full), str(out / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().setLevel(quiet)
    onnx.save(weight_only(onnx.load(str(out / "model.onnx"))), str(out / "model.onnx"))
    full.unlink()
