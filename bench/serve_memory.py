"""Memory of the answering side of `newsbot serve`, in its own process or in answer worker processes.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_memory.py --data-dir /work/lab/scale/chunks-100000 --processes 0
    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_memory.py --data-dir /work/lab/scale/chunks-100000 --processes 2

`--data-dir` is an index (a collection `bench/scale.py` built, or any `newsbot` data directory). With
`--processes 0` this process loads what the bot loads at start (models, keyword index) and answers
the questions itself; with N, it holds only the store, as the bot then does, and N worker processes
(setting answer_processes) answer. Then the resident memory (RSS) and the proportional set size
(PSS: pages shared between processes, such as libraries, counted once in all) of every process.
The seed questions (tests/data/seed_qa_dev.jsonl) are asked twice, four at a time. This prints numbers; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import load_settings  # noqa: E402
from retrieval.service import Services  # noqa: E402


def memory_mb(pid: int) -> tuple[float, float]:
    """RSS and PSS of a process, in MB (from /proc)."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the index")
    parser.add_argument("--processes", type=int, default=2, help="answer worker processes (0: this one answers)")
    parser.add_argument("--reader", default="bundled", help="the reader setting (bundled: as the speed rows run)")
    parser.add_argument("--json", action="store_true", help="end with the totals as one JSON line")
    args = parser.parse_args()
    settings = load_settings(data_dir=str(args.data_dir), reader=args.reader)
    questions = [json.loads(line)["question"] for line in (ROOT / "tests" / "data" / "seed_qa_dev.jsonl").open()]
    services = Services(settings)
    print(f"{services.store.count():,} chunks in {args.data_dir}", file=sys.stderr)
    pids = {"this process": os.getpid()}
    if args.processes:
        from retrieval.workers import AnswerWorkers

        workers = AnswerWorkers(settings, args.processes)
        workers.start()
        with ThreadPoolExecutor(4) as pool:  # four at once: every worker answers some
            list(pool.map(workers.answer, questions * 2))
        pids |= {f"worker {n + 1}": pid for n, pid in enumerate(workers.pids())}
    else:
        services.warm_up()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(services.answerer.answer, questions * 2))
    total_rss = total_pss = 0.0
    for name, pid in pids.items():
        rss, pss = memory_mb(pid)
        total_rss, total_pss = total_rss + rss, total_pss + pss
        print(f"{name:14} RSS {rss:8,.0f} MB   PSS {pss:8,.0f} MB")
    print(f"{'all':14} RSS {total_rss:8,.0f} MB   PSS {total_pss:8,.0f} MB  (answer_processes = {args.processes})")
    if args.json:
        print(json.dumps({"processes": args.processes, "rss_mb": total_rss, "pss_mb": total_pss}))
    if args.processes:
        workers.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
