"""Spike for the ingest row of issue 11: a 3-layer student of all-MiniLM-L6-v2 that embeds chunks into
MiniLM's own space, questions still embedded by MiniLM. Measures what such a model would give; newsbot
does not use it (the stack fixes the embedding model).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/distill_student.py train --train ../shared/eval/realtimeqa-train --out DIR
    HF_HUB_OFFLINE=1 .venv/bin/python bench/distill_student.py eval --realtimeqa ../shared/eval/realtimeqa --student DIR

`train`: chunks of training weeks only (every fourth week, chunked as newsbot chunks them, a random
`--chunks` of them), MiniLM's fp32 vectors of them as targets, and a student made of MiniLM's
layers `--layers` trained to give the same vector (cosine loss), then exported to int8 ONNX as newsbot
exports MiniLM. `eval`: the encoders' speed on 400 chunks of one dev week in one run, then `newsbot
eval`'s report on the six dev weeks (or `--weeks` of another folder) with the student embedding the
chunks (with the reader on, the default).
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from config import load_settings  # noqa: E402
from retrieval.evaluation.datasets import corpus_record, realtimeqa_corpus, realtimeqa_set, realtimeqa_weeks  # noqa: E402
from retrieval.evaluation.harness import evaluate  # noqa: E402
from retrieval.evaluation.report import build_report, format_table  # noqa: E402
from retrieval.index.embedding import OnnxEmbedder, default_model_path  # noqa: E402
from retrieval.index.encoder import OnnxEncoder, export_encoder  # noqa: E402
from retrieval.ingest.articles import ArticleError, article_from_record  # noqa: E402
from retrieval.ingest.chunking import chunk_article  # noqa: E402
from retrieval.service import Services  # noqa: E402

DEV_WEEKS = ["20230106", "20230113", "20230120", "20230127", "20230203", "20230210"]


def chunk_texts(folder: Path, weeks: list[str]) -> list[str]:
    """The weeks' articles as newsbot embeds their chunks (title and date, then the text)."""
    settings = load_settings()
    texts: list[str] = []
    for number, record in enumerate(realtimeqa_corpus(folder, weeks)):
        try:
            article = article_from_record(corpus_record(record), path=folder, line=number)
        except ArticleError:
            continue
        texts += [c.embedding_text(article) for c in chunk_article(article, settings.chunk_size, settings.chunk_overlap)]
    return list(dict.fromkeys(texts))


def train(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    rng = random.Random(0)
    weeks = realtimeqa_weeks(args.train)[:: args.every]
    texts = chunk_texts(args.train, weeks)
    texts = rng.sample(texts, min(args.chunks, len(texts)))
    print(f"{len(texts)} chunks from {len(weeks)} training weeks", file=sys.stderr)
    started = time.perf_counter()
    targets = torch.from_numpy(OnnxEmbedder(threads=1, workers=2).embed(texts))
    print(f"teacher vectors: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    model = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    bert: Any = model[0].auto_model
    layers = [int(n) for n in args.layers.split(",")]
    bert.encoder.layer = torch.nn.ModuleList([bert.encoder.layer[n] for n in layers])
    bert.config.num_hidden_layers = len(layers)
    tokenizer = model.tokenizer
    torch.set_num_threads(os.cpu_count() or 1)

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
    steps = len(batches) * args.epochs
    optimiser = torch.optim.AdamW(bert.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / steps))
    bert.train()
    step, started = 0, time.perf_counter()
    for epoch in range(args.epochs):
        rng.shuffle(batches)
        for batch in batches:
            encoded = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = bert(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vectors = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)
            loss = (1 - (vectors * targets[batch]).sum(1)).mean()
            loss.backward()
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            step += 1
            if step % 50 == 0:
                print(
                    f"epoch {epoch} step {step}/{steps} loss {loss.item():.4f} {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                )
    bert.eval()
    trained = args.out / "student-st"
    model.save(str(trained))
    export_encoder(trained, args.out / "onnx", 256)
    print(f"student in {args.out / 'onnx'} ({time.perf_counter() - started:.0f} s of training)", file=sys.stderr)


class StudentEmbedder:
    """Questions (and what is compared with them at answer time) by MiniLM, chunks by the student."""

    def __init__(self, student: Path) -> None:
        self.teacher = OnnxEmbedder(threads=1, workers=os.cpu_count() or 1)
        self.student = OnnxEncoder(student, threads=1, batch_size=16, workers=os.cpu_count() or 1)
        self.dimension = 384
        self.version = f"student:{student}"

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.teacher.embed(texts)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.student.embed(texts)


def speed(student: Path, realtimeqa: Path, week: str) -> None:
    texts = chunk_texts(realtimeqa, [week])[:400]
    teacher = OnnxEmbedder(threads=1, workers=2)
    ours = OnnxEncoder(student, threads=1, batch_size=16, workers=2)
    reference = teacher.embed(texts)  # fp32: what the student was trained to give
    for _ in range(2):
        for name, encode in (("MiniLM int8", teacher.embed_documents), ("student int8", ours.embed)):
            encode(texts[:32])
            started = time.perf_counter()
            vectors = encode(texts)
            rate = len(texts) / (time.perf_counter() - started)
            cosine = (vectors * reference).sum(1)
            print(f"{name:13} {rate:6.1f} chunks/s, cosine to MiniLM fp32 min {cosine.min():.3f} mean {cosine.mean():.3f}")


def evaluate_student(args: argparse.Namespace) -> None:
    weeks = args.weeks.split(",")
    speed(args.student / "onnx", args.realtimeqa, weeks[0])
    workdir = args.workdir
    evalset = realtimeqa_set(args.realtimeqa, weeks, workdir / "articles")
    settings = load_settings().model_copy(update={"data_dir": workdir, "articles_dir": None, "collection": "student"})
    services = Services(settings, embedder=StudentEmbedder(args.student / "onnx"))
    runs = evaluate(evalset, settings, workdir, reuse=True, services=services)
    print(format_table(build_report(evalset, runs, workdir)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    trainer = commands.add_parser("train")
    trainer.add_argument("--train", type=Path, required=True, help="the RealTimeQA training folder")
    trainer.add_argument("--out", type=Path, required=True)
    trainer.add_argument("--every", type=int, default=4, help="use every n-th training week")
    trainer.add_argument("--chunks", type=int, default=10000)
    trainer.add_argument("--layers", default="0,2,5", help="MiniLM's layers the student starts from")
    trainer.add_argument("--epochs", type=int, default=1)
    trainer.add_argument("--batch", type=int, default=16)
    trainer.add_argument("--lr", type=float, default=1e-4)
    evaluator = commands.add_parser("eval")
    evaluator.add_argument("--realtimeqa", type=Path, required=True, help="the RealTimeQA dev folder")
    evaluator.add_argument("--student", type=Path, required=True, help="the --out of train")
    evaluator.add_argument("--workdir", type=Path, required=True, help="where the weeks are indexed")
    evaluator.add_argument("--weeks", default=",".join(DEV_WEEKS), help="the weeks (default: the six dev weeks)")
    args = parser.parse_args()
    if args.command == "train":
        train(args)
    else:
        evaluate_student(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
