"""Benchmark: ingest time, chunks/s, and `ask` latency p50/p95, on the sample articles and RealTimeQA weeks.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_ingest_ask.py                      # sample articles only
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_ingest_ask.py \
        --realtimeqa ../shared/eval/realtimeqa --weeks 20230106                       # plus one RealTimeQA week

Each set is indexed from scratch in a temporary directory (or in `--workdir`, kept afterwards) with
the configured settings; the model is loaded before the clock starts. Latency is the answerer's own
`timings_ms` over the set's questions: the seed dev questions for the sample articles, the chosen
weeks' questions (with their dates as `as_of`) for RealTimeQA. `--reuse` keeps an index built by an
earlier run or by `newsbot eval` (same directory layout) and then reports the ingest figures that
were recorded when it was built. This prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import Settings, load_settings  # noqa: E402
from config.settings import BUNDLED_ARTICLES  # noqa: E402
from retrieval.evaluation.datasets import EvalSet, realtimeqa_set, seed_set  # noqa: E402
from retrieval.evaluation.harness import BUILDS_FILE, OURS, eval_services, ingest_figures, load_builds  # noqa: E402
from retrieval.evaluation.metrics import percentile  # noqa: E402


def bench(evalset: EvalSet, settings: Settings, workdir: Path, *, reuse: bool) -> dict[str, Any]:
    """Index the set (timed) and ask its questions (timed); the figures as a dict."""
    if not reuse and (workdir / "chroma").exists():
        shutil.rmtree(workdir / "chroma")
        (workdir / BUILDS_FILE).unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    services = eval_services(settings, workdir)
    services.embedder.embed(["warm-up"])
    builds = load_builds(workdir)
    report = services.ingestor.ingest(list(evalset.paths), prune=True)
    store = services.store
    ingest = ingest_figures(
        f"{OURS}:{store.live_name}",
        report.chunks_embedded,
        store.count(),
        report.seconds,
        len(report.added) + len(report.updated) + len(report.unchanged),
        builds,
    )
    (workdir / BUILDS_FILE).write_text(json.dumps(builds, indent=2), encoding="utf-8")
    services.retriever.refresh()
    totals: list[float] = []
    retrieves: list[float] = []
    generates: list[float] = []
    for question in evalset.questions:
        timings = services.answerer.answer(question.question, as_of=question.as_of).timings_ms
        totals.append(timings["total"])
        retrieves.append(timings["retrieve"])
        generates.append(timings["generate"])
    return {
        "set": evalset.name,
        "articles": ingest["articles"],
        "chunks": ingest["chunks"],
        "ingest_s": ingest["seconds"],
        "chunks_per_s": ingest["chunks_per_s"],
        "ingest_reused": ingest.get("reused", False),
        "questions": len(totals),
        "ask_p50_ms": percentile(totals, 50),
        "ask_p95_ms": percentile(totals, 95),
        "retrieve_p50_ms": percentile(retrieves, 50),
        "generate_p50_ms": percentile(generates, 50),
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
    }


def _print(row: dict[str, Any]) -> None:
    reused = " (recorded when the reused index was built)" if row["ingest_reused"] else ""
    print(
        f"{row['set']}: {row['articles']} articles, {row['chunks']} chunks "
        f"(chunk_size {row['chunk_size']}, overlap {row['chunk_overlap']})"
    )
    print(f"  ingest  {row['ingest_s']:.1f} s, {row['chunks_per_s']} chunks/s{reused}")
    print(
        f"  ask     p50 {row['ask_p50_ms']:.0f} ms, p95 {row['ask_p95_ms']:.0f} ms over {row['questions']} questions "
        f"(retrieve p50 {row['retrieve_p50_ms']:.0f} ms, generate p50 {row['generate_p50_ms']:.0f} ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=Path, default=BUNDLED_ARTICLES)
    parser.add_argument("--questions", type=Path, default=ROOT / "tests" / "data" / "seed_qa_dev.jsonl")
    parser.add_argument("--realtimeqa", type=Path, metavar="DIR", help="RealTimeQA folder; omit to skip")
    parser.add_argument("--weeks", default="20230106", metavar="W1,W2", help="RealTimeQA weeks (default 20230106)")
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="keep the RealTimeQA index here")
    parser.add_argument("--reuse", action="store_true", help="reuse the index in --workdir")
    parser.add_argument("--skip-sample", action="store_true", help="skip the sample articles")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = parser.parse_args()
    if args.reuse and not args.workdir:
        parser.error("--reuse needs --workdir")
    settings = load_settings()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="newsbot-bench-") as scratch:
        if not args.skip_sample:
            rows.append(bench(seed_set(args.questions, args.articles), settings, Path(scratch) / "sample", reuse=False))
            _print(rows[-1])
        if args.realtimeqa:
            weeks = [week.strip() for week in args.weeks.split(",") if week.strip()]
            workdir = args.workdir or Path(scratch) / "realtimeqa"
            evalset = realtimeqa_set(args.realtimeqa, weeks, workdir / "articles")
            evalset.questions = [q for q in evalset.questions if q.week in weeks]  # the weeks' own questions
            rows.append(bench(evalset, settings, workdir, reuse=args.reuse))
            _print(rows[-1])
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
