"""The numbers newsbot computes are the same on any x86-64 CPU: the embedder's vectors and the reader's scores.

The same script runs twice: natively, and under QEMU's user-mode emulator as a Haswell, a CPU with AVX2
but no AVX-512 and no VNNI (Debian's `qemu-user`; `.ci/run` installs it). ONNX Runtime picks its
kernels by what the CPU reports, so the emulated run takes the AVX2 code paths. An int8 graph with
activations quantised per batch differed by 0.04 in a vector element between the two, a pair score by
0.38 (`bench/numerics.py`); what ships must agree to 1e-5.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval.index.embedding import Embedder, OnnxEmbedder
from retrieval.read.reader import bundled_model

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
from pathlib import Path
from retrieval.index.encoder import OnnxEncoder
texts = [
    "An additional 560 US military personnel will be sent to Iraq.",
    "Mosul lies about 360 kilometres (225 miles) north of Baghdad.",
    "Who won?",
]
vectors = OnnxEncoder(Path(sys.argv[1])).embed(texts)
question = "How many troops will the US send to Iraq?"
scores = OnnxEncoder(Path(sys.argv[2])).embed([(question, text) for text in texts])[:, 0]
print(json.dumps({"vectors": vectors.tolist(), "scores": scores.tolist()}))
"""


def _qemu() -> str | None:
    found = shutil.which("qemu-x86_64")
    if found is None and os.environ.get("CI"):
        pytest.fail("qemu-x86_64 is missing: .ci/run installs Debian's qemu-user for this test")
    return found


def _run(command: list[str], embedder: OnnxEmbedder) -> dict[str, list[float]]:
    result = subprocess.run(
        [*command, "-c", SCRIPT, str(embedder.folder), str(bundled_model())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.model
def test_vectors_and_reader_scores_agree_natively_and_on_an_avx2_only_cpu(embedder: Embedder) -> None:
    qemu = _qemu()
    if qemu is None:
        pytest.skip("qemu-x86_64 is not installed (apt-get install qemu-user)")
    assert isinstance(embedder, OnnxEmbedder)
    embedder.embed(["export the model if this run has not"])
    native = _run([sys.executable], embedder)
    haswell = _run([qemu, "-cpu", "Haswell", sys.executable], embedder)
    for key in ("vectors", "scores"):
        a, b = native[key], haswell[key]
        flat_a = [x for row in a for x in (row if isinstance(row, list) else [row])]
        flat_b = [x for row in b for x in (row if isinstance(row, list) else [row])]
        assert len(flat_a) == len(flat_b) > 0
        assert max(abs(x - y) for x, y in zip(flat_a, flat_b)) <= 1e-5, key
