"""Numerics that do not depend on the batch or the CPU: the figures of the portability issue, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/numerics.py --realtimeqa ../shared/eval/realtimeqa [--week 20230106] [--qemu]

For the embedder's shipped graph (fp32) and the int8 graph that embedded chunks before it (weights int8
per channel, activations quantised per batch by `onnxruntime.quantization.quantize_dynamic`, made here
from the same export), and for the reader's shipped pair model (int8 weights computed in float) and the
int8 one it replaced (rebuilt from the same weights):

1. batch: the largest |1 - cosine| between a text embedded alone and in a batch of 64 (sorted by length,
   so padded), over 64 chunks of the week; for the reader, the largest |score difference|;
2. fp32 agreement: each question of the folder's weeks is matched to its nearest chunk with the int8 and with the
   fp32 chunk vectors (fp32 question vectors, as the product embeds questions): the share with the same
   nearest chunk, and the chunks' cosine to their fp32 vectors (min / mean);
3. speed, side by side in this run: chunks/s (batches of 16, one thread, as one ingest worker), question
   embeddings per second, reader pairs per second; and sentence-transformers with torch on the same chunks,
   the naive LangChain pipeline's embedder (`bench/speed.py` times the whole ingest against it);
4. with `--qemu`: the same 8 chunks and 8 pairs natively and under `qemu-x86_64 -cpu Haswell` (an AVX2
   CPU without AVX-512 or VNNI), the largest element difference of each graph (slow: minutes).

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from retrieval.evaluation.datasets import load_realtimeqa, realtimeqa_questions, realtimeqa_weeks  # noqa: E402
from retrieval.index.embedding import OnnxEmbedder, SentenceTransformerEmbedder  # noqa: E402
from retrieval.index.encoder import OnnxEncoder  # noqa: E402
from retrieval.ingest.articles import load_json_file  # noqa: E402
from retrieval.ingest.chunking import chunk_article  # noqa: E402
from retrieval.read.reader import bundled_model  # noqa: E402

PROBE = """
import json, sys
from pathlib import Path
import numpy as np
from retrieval.index.encoder import OnnxEncoder
texts = json.loads(Path(sys.argv[1]).read_text())
out = {}
for name, folder, model_file, pairs in json.loads(sys.argv[2]):
    encoder = OnnxEncoder(Path(folder), model_file=model_file)
    inputs = [tuple(t) for t in texts["pairs"]] if pairs else texts["chunks"]
    out[name] = encoder.embed(inputs).tolist()
print(json.dumps(out))
"""


def week_chunks(folder: Path, week: str, scratch: Path) -> tuple[list[str], list[str]]:
    """The week's articles chunked as newsbot chunks them (the defaults), and the folder's questions."""
    from retrieval.evaluation.datasets import write_corpus

    data = load_realtimeqa(folder, [week])
    corpus = scratch / "week.jsonl"
    write_corpus(data.corpus, corpus)
    articles, _ = load_json_file(corpus)
    chunks = [chunk.embedding_text(article) for article in articles for chunk in chunk_article(article, 800, 150)]
    # The questions of every week of the folder: more queries than one week's 30, asked of this week's news.
    questions = [q.question for other in realtimeqa_weeks(folder) for q in realtimeqa_questions(folder, other)]
    return chunks, questions


def int8_graph(source: Path, out: Path, model_file: str = "model.onnx") -> Path:
    """The int8 graph of before: `source`'s weights with activations quantised per batch (quantize_dynamic)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "encoder.json"):
        shutil.copy(source / name, out / name)
    fp32 = out / "float.onnx"
    if model_file == "model.onnx" and _has_dequantized_weights(source / model_file):
        fp32 = _float_weights(source / model_file, fp32)
    else:
        shutil.copy(source / model_file, fp32)
    quantize_dynamic(str(fp32), str(out / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    onnx.checker.check_model(str(out / "model.onnx"))
    return out


def _has_dequantized_weights(path: Path) -> bool:
    import onnx

    return any(
        node.op_type == "DequantizeLinear" and node.output[0].endswith("_dequantized") for node in onnx.load(str(path)).graph.node
    )


def _float_weights(path: Path, out: Path) -> Path:
    """The reader's graph with its int8 weights folded to float initializers (what quantize_dynamic started from)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {init.name: init for init in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0].endswith("_dequantized"):
            weight, scale, point = (numpy_helper.to_array(inits[name]) for name in node.input)
            value = ((weight.astype(np.float32) - point.astype(np.float32)) * scale).astype(np.float32)
            model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    onnx.save(model, str(out))
    return out


def batch_gap(encoder: OnnxEncoder, texts: list[Any], pairs: bool) -> float:
    alone = np.concatenate([encoder.embed([text]) for text in texts])
    together = encoder.embed(texts)
    if pairs:
        return float(np.abs(alone - together).max())
    return float(np.abs(np.sum(alone * together, axis=1) - 1).max())


def rate(encoder: Any, texts: list[Any], embed: str = "embed") -> float:
    getattr(encoder, embed)(texts[:16])
    start = time.perf_counter()
    getattr(encoder, embed)(texts)
    return len(texts) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realtimeqa", type=Path, required=True, metavar="DIR", help="the RealTimeQA dev folder")
    parser.add_argument("--week", default="20230106")
    parser.add_argument("--speed-chunks", type=int, default=480, help="chunks timed for each graph")
    parser.add_argument("--qemu", action="store_true", help="also compare with an emulated Haswell (slow)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="numerics-"))
    chunks, questions = week_chunks(args.realtimeqa, args.week, scratch)
    print(f"week {args.week}: {len(chunks)} chunks, {len(questions)} questions")
    embedder = OnnxEmbedder()
    embedder.embed(["export"])
    graphs = {
        "embedder fp32 (shipped)": OnnxEncoder(embedder.folder, batch_size=64),
        "embedder int8, activations per batch (before)": OnnxEncoder(
            int8_graph(embedder.folder, scratch / "int8"), batch_size=64
        ),
    }
    reader_graphs = {
        "reader int8 weights, float products (shipped)": OnnxEncoder(bundled_model(), batch_size=64),
        "reader int8, activations per batch (before)": OnnxEncoder(
            int8_graph(bundled_model(), scratch / "reader-int8"), batch_size=64
        ),
    }
    rng = np.random.default_rng(13)
    sample = [chunks[i] for i in rng.choice(len(chunks), 64, replace=False)]
    pairs = [(questions[i % len(questions)], chunks[j][:300]) for i, j in enumerate(rng.choice(len(chunks), 64, replace=False))]

    print("\n1. alone vs in a batch of 64")
    for name, encoder in graphs.items():
        print(f"  {name}: largest |1 - cosine| {batch_gap(encoder, sample, False):.2e}")
    for name, encoder in reader_graphs.items():
        print(f"  {name}: largest |score difference| {batch_gap(encoder, pairs, True):.2e}")

    print("\n2. agreement with fp32 over the week")
    fp32, int8 = (OnnxEncoder(g.folder, model_file=g.model_file, batch_size=16, workers=2) for g in graphs.values())
    reference = fp32.embed(chunks)
    quantized = int8.embed(chunks)
    asked = fp32.embed(questions)
    same = np.mean(np.argmax(asked @ reference.T, axis=1) == np.argmax(asked @ quantized.T, axis=1))
    cosines = np.sum(reference * quantized, axis=1)
    print(f"  int8 chunks: nearest chunk the same as fp32's for {same:.1%} of {len(questions)} questions;")
    print(f"  cosine to fp32 min {cosines.min():.4f} mean {cosines.mean():.4f} (fp32: 100 % and 1 by definition)")

    print("\n3. speed, this run (one thread, batches of 16)")
    timed = chunks[: args.speed_chunks]
    speeds = {}
    for name, graph in graphs.items():
        encoder = OnnxEncoder(graph.folder, model_file=graph.model_file, batch_size=16)
        speeds[name] = rate(encoder, timed)
        per_question = rate(encoder, questions)
        print(f"  {name}: {speeds[name]:.1f} chunks/s, {per_question:.0f} questions/s")
    torch_rate = rate(SentenceTransformerEmbedder(batch_size=16, threads=1), timed)
    print(f"  sentence-transformers with torch (the naive pipeline's embedder): {torch_rate:.1f} chunks/s")
    shipped, before = speeds.values()
    print(f"  fp32 / int8 before: {shipped / before:.2f}x; fp32 / torch: {shipped / torch_rate:.2f}x;", end=" ")
    print(f"int8 before / torch: {before / torch_rate:.2f}x")
    for name, graph in reader_graphs.items():
        encoder = OnnxEncoder(graph.folder, model_file=graph.model_file, batch_size=32)
        print(f"  {name}: {rate(encoder, pairs * 3):.1f} pairs/s")

    if args.qemu:
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            print("\n4. qemu-x86_64 not found (apt-get install qemu-user)")
            return 0
        texts = scratch / "texts.json"
        texts.write_text(json.dumps({"chunks": sample[:8], "pairs": pairs[:8]}))
        spec = json.dumps(
            [[name, str(g.folder), g.model_file, False] for name, g in graphs.items()]
            + [[name, str(g.folder), g.model_file, True] for name, g in reader_graphs.items()]
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        runs = []
        for prefix in ([], [qemu, "-cpu", "Haswell"]):
            result = subprocess.run(
                [*prefix, sys.executable, "-c", PROBE, str(texts), spec], capture_output=True, text=True, env=env
            )
            runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print("\n4. this CPU against an emulated Haswell (AVX2, no AVX-512, no VNNI), 8 chunks and 8 pairs")
        for name in runs[0]:
            gap = np.abs(np.asarray(runs[0][name]) - np.asarray(runs[1][name])).max()
            print(f"  {name}: largest element difference {gap:.2e}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
