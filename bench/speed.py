"""Benchmark for "fast on a laptop CPU": the table of issue #11, measured in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/speed.py --realtimeqa ../shared/eval/realtimeqa \
        [--index /work/rtqa] [--scale-workdir DIR --sizes 15000,100000,1000000]

Rows (every speed is compared as a ratio within this run; the machine is shared and noisy):

1. ingest: one RealTimeQA week (2023-01-06) as JSON Lines, from an empty index, newsbot with its
   defaults against the naive LangChain pipeline (`retrieval/evaluation/naive.py`: 1000/200 splits,
   the same MiniLM in sentence-transformers with torch, as the tutorials run it). Both have their
   model loaded before the clock starts. The reader reads at question time: it adds nothing to ingest.
2. reload when nothing changed: the same week ingested again into the same index, against the
   first ingest.
3. ask p50 / p95 with the defaults (the reader on), over the weeks' questions on `--index` (a `newsbot eval` index
   of the six weeks; without it, the one week just ingested).
4. four questions at once: the same questions answered by four threads against one at a time. Both
   timed passes follow an untimed one over the same questions (the index's caches warm) and start
   with the reader's remembered pair scores dropped (each question new, as in use). Then the
   same through `--processes` answer worker processes (setting answer_processes), four at once
   against one at a time through them.
5. retrieval at size: `bench/scale.py` (synthetic collections), when `--scale-workdir` is given;
   then `newsbot serve`'s memory at each size, in one process and with `--processes` answer workers
   (`bench/serve_memory.py`).

Quality (answer accuracy and recall@4 on the dev weeks) is measured by `newsbot eval`, not here.
This prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import Settings, load_settings  # noqa: E402
from retrieval.answer.answerer import Answerer  # noqa: E402
from retrieval.evaluation.datasets import realtimeqa_set  # noqa: E402
from retrieval.evaluation.harness import eval_services  # noqa: E402
from retrieval.evaluation.metrics import percentile  # noqa: E402
from retrieval.evaluation.naive import NaiveRetriever  # noqa: E402
from retrieval.index.embedding import SentenceTransformerEmbedder  # noqa: E402
from retrieval.index.store import make_client  # noqa: E402
from retrieval.service import Services  # noqa: E402

INGEST_WEEK = "20230106"
DEV_WEEKS = "20230106,20230113,20230120,20230127,20230203,20230210"


def ingest_rows(paths: list[Path], settings: Settings, scratch: Path) -> dict[str, Any]:
    """Ingest wall times: ours, the naive pipeline, and ours again with nothing changed."""
    figures: dict[str, Any] = {}
    services = eval_services(settings, scratch / "newsbot")
    services.embedder.embed(["warm-up"])
    started = time.perf_counter()
    report = services.ingestor.ingest(paths, prune=True)
    figures["newsbot"] = time.perf_counter() - started
    figures["newsbot chunks"] = report.chunks_embedded
    started = time.perf_counter()
    again = services.ingestor.ingest(paths, prune=True)
    figures["reload"] = time.perf_counter() - started
    assert again.chunks_embedded == 0, "nothing changed, yet something was embedded"
    torch_embedder = SentenceTransformerEmbedder(batch_size=32, threads=0)  # the tutorial's defaults
    torch_embedder.embed(["warm-up"])
    naive_dir = scratch / "naive"
    naive = NaiveRetriever(make_client(settings.model_copy(update={"data_dir": naive_dir})), torch_embedder)
    started = time.perf_counter()
    naive_report = naive.ingest(paths)
    figures["naive"] = time.perf_counter() - started
    figures["naive chunks"] = naive_report.chunks_embedded
    return figures


def ask_rows(services: Services, questions: list[tuple[str, Any]]) -> dict[str, Any]:
    """Ask latency one at a time, then the throughput of four threads against one."""
    answerer: Answerer = services.answerer
    services.warm_up()
    for text, as_of in questions:  # the index's caches warm for both timed passes ...
        answerer.answer(text, as_of=as_of)
    reader = services.reader

    def as_new() -> None:  # ... but every question new to the reader and its passages' windows to search, as in use
        if reader is not None:
            reader.forget()
        services.retriever.forget_windows()

    totals: list[float] = []
    retrieves: list[float] = []
    as_new()
    started = time.perf_counter()
    for text, as_of in questions:
        timings = answerer.answer(text, as_of=as_of).timings_ms
        totals.append(timings["total"])
        retrieves.append(timings["retrieve"])
    one_at_a_time = time.perf_counter() - started
    as_new()
    with ThreadPoolExecutor(4) as pool:
        started = time.perf_counter()
        list(pool.map(lambda q: answerer.answer(q[0], as_of=q[1]), questions))
        four_at_once = time.perf_counter() - started
    return {
        "questions": len(questions),
        "ask p50": percentile(totals, 50),
        "ask p95": percentile(totals, 95),
        "retrieve p50": percentile(retrieves, 50),
        "chunks": services.store.count(),
        "concurrency": one_at_a_time / four_at_once,
    }


def workers_rows(services: Services, questions: list[tuple[str, Any]], processes: int) -> dict[str, Any]:
    """Four at once against one at a time with questions answered in `processes` worker processes
    (setting answer_processes), both through the workers; and one at a time in this process, for scale.
    Each timed pass follows an untimed one and starts with the workers' remembered questions dropped."""
    from retrieval.workers import AnswerWorkers

    workers = AnswerWorkers(services.settings, processes)
    try:
        workers.start()
        for _ in range(processes):  # every worker warm: untimed passes spread over all of them
            with ThreadPoolExecutor(processes) as pool:
                list(pool.map(lambda q: workers.answer(q[0], as_of=q[1]), questions))
        workers.forget()
        latencies: list[float] = []
        started = time.perf_counter()
        for text, as_of in questions:
            asked = time.perf_counter()
            workers.answer(text, as_of=as_of)
            latencies.append((time.perf_counter() - asked) * 1000)
        one_at_a_time = time.perf_counter() - started
        workers.forget()
        with ThreadPoolExecutor(4) as pool:
            started = time.perf_counter()
            list(pool.map(lambda q: workers.answer(q[0], as_of=q[1]), questions))
            four_at_once = time.perf_counter() - started
    finally:
        workers.close()
    if services.reader is not None:
        services.reader.forget()
    services.retriever.forget_windows()
    started = time.perf_counter()
    for text, as_of in questions:
        services.answerer.answer(text, as_of=as_of)
    in_process = time.perf_counter() - started
    return {
        "concurrency": one_at_a_time / four_at_once,
        "against in-process": in_process / four_at_once,
        "ask p50": percentile(latencies, 50),
        "ask p95": percentile(latencies, 95),
    }


def memory_rows(workdir: Path, sizes: str, processes: int) -> list[tuple[str, str, str]]:
    """`newsbot serve`'s answering side at each synthetic size (`bench/serve_memory.py`), in its own
    process and with `processes` answer workers: PSS of all the processes, after questions four at once."""
    import json
    import subprocess

    from scale import size_of  # bench/scale.py, beside this script

    rows = []
    for chunks in [size_of(size) for size in sizes.split(",")]:
        figures = []
        for n in sorted({0, processes}):
            command = [str(ROOT / "bench" / "serve_memory.py"), "--json", "--processes", str(n)]
            run = subprocess.run(
                [sys.executable, *command, "--data-dir", str(workdir / f"chunks-{chunks}")],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            figures.append(json.loads(run.stdout.splitlines()[-1]))
        shown = ", ".join(f"{f['pss_mb']:,.0f} MB with answer_processes = {f['processes']}" for f in figures)
        rows.append((f"`newsbot serve` memory (PSS) at {chunks:,} chunks", shown, "<= 1.5 GB at 100k"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--realtimeqa", type=Path, required=True, metavar="DIR", help="the RealTimeQA dev folder")
    parser.add_argument("--index", type=Path, metavar="DIR", help=f"a `newsbot eval` index of the weeks {DEV_WEEKS}")
    parser.add_argument("--weeks", default=DEV_WEEKS, help="the weeks of --index (their questions are asked)")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--scale-workdir", type=Path, metavar="DIR", help="run bench/scale.py with this cache")
    parser.add_argument("--sizes", default="15000,100000", help="synthetic sizes for bench/scale.py")
    parser.add_argument("--processes", type=int, default=2, help="answer worker processes for the last row (0: skip)")
    args = parser.parse_args()
    settings = load_settings()
    table: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="newsbot-speed-") as scratch:
        week = realtimeqa_set(args.realtimeqa, [INGEST_WEEK], Path(scratch) / "articles")
        if not args.skip_ingest:
            print(f"ingest: week {INGEST_WEEK}, {week.info['articles']} articles", file=sys.stderr)
            ingest = ingest_rows(list(week.paths), settings, Path(scratch))
            print(ingest, file=sys.stderr)
            table += [
                (
                    "ingest wall time, one week, naive / newsbot",
                    f"{ingest['naive'] / ingest['newsbot']:.2f}x "
                    f"(newsbot {ingest['newsbot']:.1f} s, {ingest['newsbot chunks']} chunks; "
                    f"naive {ingest['naive']:.1f} s, {ingest['naive chunks']} chunks)",
                    ">= 3x",
                ),
                (
                    "reload when nothing changed / full ingest",
                    f"{ingest['reload'] / ingest['newsbot']:.1%} ({ingest['reload']:.2f} s)",
                    "<= 5%",
                ),
            ]
        if args.index:
            weeks = [w for w in args.weeks.split(",") if w]
            evalset = realtimeqa_set(args.realtimeqa, weeks, Path(scratch) / "dev-articles")
            services = eval_services(settings, args.index)
        else:
            evalset = week
            services = eval_services(settings, Path(scratch) / "newsbot-ask")
            if services.store.count() == 0:
                services.ingestor.ingest(list(week.paths))
        questions = [(q.question, q.as_of) for q in evalset.questions]
        ask = ask_rows(services, questions)
        print(ask, file=sys.stderr)
        table += [
            (
                f"ask p50 / p95, defaults ({ask['chunks']} chunks, {ask['questions']} questions)",
                f"{ask['ask p50']:.0f} / {ask['ask p95']:.0f} ms",
                "<= 250 / <= 500 ms",
            ),
            (f"retrieval p50 at {ask['chunks']} chunks", f"{ask['retrieve p50']:.1f} ms", "<= 20 ms at 15k"),
            ("4 questions at once: throughput / one at a time", f"{ask['concurrency']:.2f}x", ">= 1.6x"),
        ]
        if args.processes:
            pooled = workers_rows(services, questions, args.processes)
            print(pooled, file=sys.stderr)
            table += [
                (
                    f"  the same, answer_processes = {args.processes}",
                    f"{pooled['concurrency']:.2f}x ({pooled['against in-process']:.2f}x one at a time in one process)",
                    "",
                ),
                (
                    f"ask p50 / p95 through answer_processes = {args.processes}",
                    f"{pooled['ask p50']:.0f} / {pooled['ask p95']:.0f} ms",
                    "",
                ),
            ]
    if args.scale_workdir:
        import subprocess

        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "scale.py"), "--workdir", str(args.scale_workdir), "--sizes", args.sizes],
            check=False,
        )
        table += memory_rows(args.scale_workdir, args.sizes, args.processes)
    width = max(len(row[0]) for row in table)
    print(f"\n{'measure':{width}}  {'this run':60}  target")
    for measure, value, target in table:
        print(f"{measure:{width}}  {value:60}  {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
