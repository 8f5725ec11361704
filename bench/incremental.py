"""Benchmark: a poll adding 10 articles to a large collection, in place against the reload's swap.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/incremental.py --workdir /work/lab/scale [--size 100k] [--articles 10]

Uses the synthetic collection `bench/scale.py` builds (and keeps) in `--workdir/chunks-<size>`; builds it
first when it is missing. Each way is measured in its own process on its own copy of that collection
(copied before the clock starts), with the real embedding model:

- `swap` (how polls were ingested before): `Ingestor.ingest(files, rebuild=True)`, a copy of the live
  collection with the new articles that replaces it, then the search index read again in full
  (`HybridRetriever.refresh`), as the bot did after a poll.
- `in-place`: `Ingestor.ingest(files)`, one journaled change of the live collection, then the search
  index brought up to it (`HybridRetriever.refresh`, which applies the change).

Both start from a search index already built and a question answered (as in a running bot: at this size
a question loads Chroma's own index), and answer a question after. Printed
for each: seconds for the ingest and for the search index, bytes written by the process (/proc/self/io
`write_bytes`), the growth of the data directory on disk, and peak resident memory (before and during the
update). Asserts nothing.
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
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # bench/scale.py, beside this one

from scale import DEFAULT_REALTIMEQA, size_of, source_text, synthetic_articles  # noqa: E402

from config import load_settings  # noqa: E402
from retrieval.passages import Query  # noqa: E402


def written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def disk_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: the peak since reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Start the peak resident memory (VmHWM) from now: the warm-up's peak is not the update's."""
    Path("/proc/self/clear_refs").write_text("5")


def new_articles(folder: Path, count: int) -> list[Path]:
    """`count` articles of the synthetic kind (real sentences recombined), as the JSON records a poll writes."""
    sentences, titles = source_text(DEFAULT_REALTIMEQA)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (article, _, _) in enumerate(synthetic_articles(count * 1000, sentences, titles)):
        if number == count:
            break
        path = folder / f"new-{number}.json"
        record = {"id": f"poll:{number}", "title": article.title, "text": article.text, "source": article.source}
        record["published"] = "2024-01-15"
        path.write_text(json.dumps(record))
        paths.append(path)
    return paths


def measure(way: str, data_dir: Path, files: list[Path]) -> dict[str, Any]:
    """One update of the collection in `data_dir` (this process's own copy), the figures."""
    from retrieval.service import Services

    services = Services(load_settings(data_dir=str(data_dir)))
    services.warm_up()  # the model and the search index of the collection as it is: a running bot
    services.embedder.embed_documents(["The model embeds documents before the clock starts."])
    services.retriever.retrieve(Query("a question before the update"))  # Chroma's own index loaded, as after any
    figures: dict[str, Any] = {"way": way, "chunks_before": services.store.count(), "rss_before_mb": status_mb("VmRSS")}
    reset_peak()
    disk = disk_bytes(data_dir)
    written = written_bytes()
    start = time.perf_counter()
    report = services.ingestor.ingest(files, rebuild=way == "swap")
    figures["ingest_s"] = time.perf_counter() - start
    figures["peak_ingest_mb"] = status_mb("VmHWM")
    reset_peak()
    start = time.perf_counter()
    services.retriever.refresh()
    figures["search_index_s"] = time.perf_counter() - start
    figures["peak_index_mb"] = status_mb("VmHWM")
    figures["total_s"] = figures["ingest_s"] + figures["search_index_s"]
    figures["written_mb"] = (written_bytes() - written) / 1e6
    figures["disk_growth_mb"] = (disk_bytes(data_dir) - disk) / 1e6
    figures["peak_rss_mb"] = max(figures["peak_ingest_mb"], figures["peak_index_mb"])
    figures["added"] = len(report.added)
    figures["chunks_embedded"] = report.chunks_embedded
    figures["chunks_after"] = services.store.count()
    passages = services.retriever.retrieve(Query("What happened in the poll's first article?"))
    figures["question_ok"] = bool(passages)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="where bench/scale.py keeps its collections")
    parser.add_argument("--size", type=size_of, default=size_of("100k"))
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--scratch", type=Path, help="where the copies go (default: a temporary directory)")
    parser.add_argument("--ways", default="in-place,swap")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # WAY:DATA_DIR:FILES_DIR, in its own process
    args = parser.parse_args()

    if args.measure:
        way, data_dir, files = args.measure.split(":")
        print(json.dumps(measure(way, Path(data_dir), sorted(Path(files).glob("*.json")))))
        return

    source = args.workdir / f"chunks-{args.size}"
    if not (source / "built.json").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "scale.py"), "--build", str(args.size), "--workdir", str(args.workdir)],
            check=True,
        )
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="newsbot-incremental-"))
    files = scratch / "poll"
    new_articles(files, args.articles)
    results = []
    for way in args.ways.split(","):
        copy = scratch / way
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy)
        run = subprocess.run(
            [sys.executable, __file__, "--workdir", str(args.workdir), "--measure", f"{way}:{copy}:{files}"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        result = json.loads(run.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
        shutil.rmtree(copy, ignore_errors=True)
    print(f"\n{args.articles} articles added to {results[0]['chunks_before']:,} chunks\n")
    print("| | " + " | ".join(r["way"] for r in results) + " |")
    print("|---" * (len(results) + 1) + "|")
    rows = [
        ("ingest s (embed, write)", "ingest_s", "{:.1f}"),
        ("search index s (in memory, BM25)", "search_index_s", "{:.1f}"),
        ("total s", "total_s", "{:.1f}"),
        ("chunks embedded", "chunks_embedded", "{}"),
        ("MB written by the process", "written_mb", "{:,.0f}"),
        ("data directory growth MB", "disk_growth_mb", "{:,.1f}"),
        ("RSS MB before the update / peak during it", None, ""),
        ("peak RSS MB while ingesting / while the search index is changed", "peaks", ""),
    ]
    for label, key, form in rows:
        if key is None:
            cells = [f"{r['rss_before_mb']:,.0f} / {r['peak_rss_mb']:,.0f}" for r in results]
        elif key == "peaks":
            cells = [f"{r['peak_ingest_mb']:,.0f} / {r['peak_index_mb']:,.0f}" for r in results]
        else:
            cells = [form.format(r[key]) for r in results]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
