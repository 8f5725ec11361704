"""Scale benchmark: hybrid retrieval on synthetic collections of 15k, 100k and 1M chunks.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/scale.py --workdir /work/lab/scale                  # 15k, 100k, 1m
    HF_HUB_OFFLINE=1 .venv/bin/python bench/scale.py --sizes 15k,100k --workdir /work/lab/scale --out before.json

Each collection is written through the project's store (`ArticleStore`, `chunk_metadata`, the real
chunker) into `--workdir/chunks-<size>` and kept there, so a rerun measures without rebuilding.
The articles are made of real sentences, recombined at random: from the bundled sample articles and,
when present, the RealTimeQA search results in `--realtimeqa`. Each article gets a title from the
same sources, an outlet and a published date spread over 2020-2023, so a 30-day filter keeps about 2 %
of the chunks and a 365-day one about a quarter. Vectors are random unit vectors (dimension 384), and
questions are embedded by a fake embedder that turns each question into its own random unit vector:
the dense side then costs what it costs at this size, though its neighbours mean nothing. What the
real model costs to embed a question is measured on its own and reported beside.

Every size is measured in a fresh process (so its resident memory is its own): open the store, build
the keyword index (`HybridRetriever.refresh`), then ask the questions with no date filter, a 30-day and
a 365-day filter. The time of each question is split into the store calls that check the live
collection, the dense query, BM25, and the rest (fusion, story grouping, windows). `--ids` saves the
chunk ids retrieved for each question, to check that a change to search leaves results as they were.
This prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from config import load_settings  # noqa: E402
from config.settings import BUNDLED_ARTICLES  # noqa: E402
from retrieval.index.store import ArticleStore, chunk_metadata  # noqa: E402
from retrieval.ingest.articles import Article, iter_files, load_file  # noqa: E402
from retrieval.ingest.chunking import Chunk, chunk_article  # noqa: E402
from retrieval.ingest.text import split_sentences  # noqa: E402
from retrieval.passages import Passage, Query  # noqa: E402
from retrieval.search.hybrid import HybridRetriever  # noqa: E402

DIMENSION = 384
FIRST_DAY = date(2020, 1, 1)
DAYS = 4 * 365
OUTLETS = ("Daily Wire", "River Post", "Metro Herald", "The Ledger", "Evening Star", "Coast Times", "Capital Review")
FILTERS = {"none": None, "30 days": 30, "365 days": 365}
DEFAULT_REALTIMEQA = ROOT.parent / "shared" / "eval" / "realtimeqa"
SEED = ROOT / "tests" / "data" / "seed_qa_dev.jsonl"


# -- the synthetic collection ---------------------------------------------------------------------


def size_of(text: str) -> int:
    """ "15k" -> 15000, "1m" -> 1000000."""
    match = re.fullmatch(r"(\d+)([km]?)", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 15k, 100k, 1m, 2500)")
    return int(match[1]) * {"": 1, "k": 1000, "m": 1_000_000}[match[2]]


def source_text(realtimeqa: Path) -> tuple[list[str], list[str]]:
    """Sentences and titles of real articles: the bundled samples and the RealTimeQA search results."""
    sentences: list[str] = []
    titles: list[str] = []
    for path in iter_files([BUNDLED_ARTICLES]):
        for article in load_file(path)[0]:
            titles.append(article.title)
            sentences += split_sentences(article.text)
    for path in sorted(realtimeqa.glob("*_gcs.jsonl")) if realtimeqa.is_dir() else []:
        for line in path.read_text(encoding="utf-8").splitlines():
            for result in json.loads(line).get("search_result") or []:
                if result.get("title"):
                    titles.append(str(result["title"]))
                sentences += split_sentences(str(result.get("text") or ""))
    sentences = list(dict.fromkeys(s for s in sentences if 40 <= len(s) <= 400))
    return sentences, list(dict.fromkeys(titles))


def synthetic_articles(size: int, sentences: list[str], titles: list[str]) -> Iterator[tuple[Article, list[Chunk], np.ndarray]]:
    """Articles of recombined sentences, their chunks and a random unit vector for each; about `size` chunks in all."""
    rng = np.random.default_rng(size)
    made = 0
    number = 0
    while made < size:
        picks = rng.integers(0, len(sentences), int(rng.integers(6, 40)))
        paragraphs = [" ".join(sentences[i] for i in picks[start : start + 3]) for start in range(0, len(picks), 3)]
        source = OUTLETS[int(rng.integers(0, len(OUTLETS)))]
        article = Article.build(
            title=titles[int(rng.integers(0, len(titles)))],
            text="\n\n".join(paragraphs),
            path=Path(f"synthetic/{number:07d}.txt"),
            key=f"synthetic:{size}:{number}",
            source=source,
            url=f"https://{source.lower().replace(' ', '')}.example/{number}",
            published=FIRST_DAY + timedelta(days=int(rng.integers(0, DAYS))),
        )
        chunks = chunk_article(article, 800, 150)
        vectors = rng.standard_normal((len(chunks), DIMENSION), dtype=np.float32)
        yield article, chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        made += len(chunks)
        number += 1


def build(size: int, workdir: Path, realtimeqa: Path) -> dict[str, Any]:
    """Write the collection of `size` chunks into `workdir` unless an earlier run did; its build figures."""
    marker = workdir / "built.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    if (workdir / "chroma").exists():
        raise SystemExit(f"{workdir} holds an unfinished build: delete it and run again")
    sentences, titles = source_text(realtimeqa)
    print(f"building {size:,} chunks from {len(sentences):,} sentences and {len(titles):,} titles", flush=True)
    store = ArticleStore.from_settings(load_settings(data_dir=str(workdir)))
    collection = store.live()
    batch = store.max_batch
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    start = time.perf_counter()
    articles = chunks = 0
    for article, article_chunks, embeddings in synthetic_articles(size, sentences, titles):
        # `ArticleStore.add` writes one article a call; batching many into one `add` is what makes 1M buildable.
        for chunk in article_chunks:
            ids.append(chunk.chunk_id)
            texts.append(chunk.text)
            metas.append(chunk_metadata(article, chunk))
        vectors.append(embeddings)
        articles += 1
        if len(ids) >= batch:
            collection.add(ids=ids, embeddings=np.concatenate(vectors), documents=texts, metadatas=metas)  # type: ignore[arg-type]
            chunks += len(ids)
            ids, texts, metas, vectors = [], [], [], []
            if chunks // 50_000 != (chunks - batch) // 50_000:
                elapsed = time.perf_counter() - start
                print(f"  {chunks:,} chunks in {elapsed:.0f} s ({chunks / elapsed:.0f}/s)", flush=True)
    if ids:
        collection.add(ids=ids, embeddings=np.concatenate(vectors), documents=texts, metadatas=metas)  # type: ignore[arg-type]
        chunks += len(ids)
    figures = {"chunks": chunks, "articles": articles, "build_s": round(time.perf_counter() - start, 1)}
    marker.write_text(json.dumps(figures))
    return figures


# -- measuring ------------------------------------------------------------------------------------


class Clock:
    """Time spent in labelled calls during one question."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def timed(self, label: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.spent[label] = self.spent.get(label, 0.0) + time.perf_counter() - start

        return wrapper


class TimedStore:
    """The store, with the time of each call charged to "chroma" (nearest-neighbour queries, inside "dense") or "store"."""

    def __init__(self, store: ArticleStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        label = "chroma" if "query" in name or "nearest" in name else "store"
        start = time.perf_counter()
        value = getattr(self._store, name)  # a property (live_name) does its work here
        self._clock.spent[label] = self._clock.spent.get(label, 0.0) + time.perf_counter() - start
        return self._clock.timed(label, value) if callable(value) else value


class RandomEmbedder:
    """Each text's own random unit vector (the same on every run): the dense side at size, without a model."""

    dimension = DIMENSION
    version = "random"

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIMENSION) for text in texts]
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)


def questions(realtimeqa: Path, n: int) -> list[str]:
    """RealTimeQA questions (then the seed questions), `n` at most."""
    found: list[str] = []
    for path in sorted(realtimeqa.glob("*_qa.jsonl")) if realtimeqa.is_dir() else []:
        found += [json.loads(line)["question_sentence"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    found += [json.loads(line)["question"] for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    # Every few weeks' first questions rather than one week's: a spread of topics.
    return found[::3][:n] if len(found) >= 3 * n else found[:n]


def window(question: str, days: int | None) -> tuple[date | None, date | None]:
    """A date range of `days` days somewhere in the collection's span, the same for a question on every run."""
    if days is None:
        return None, None
    since = FIRST_DAY + timedelta(days=zlib.crc32(question.encode()) % (DAYS - days))
    return since, since + timedelta(days=days - 1)


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def shown(passages: list[Passage]) -> list[list[str]]:
    """What a result is, by ids: each passage's chunk, its window and the duplicates folded into it."""
    return [[p.chunk_id, *p.window, *(d.chunk_id for d in p.duplicates)] for p in passages]


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(size: int, workdir: Path, realtimeqa: Path, n_questions: int, real_model: bool) -> dict[str, Any]:
    """Open the collection, build the keyword index, ask the questions: the figures (and the ids found)."""
    figures: dict[str, Any] = {"size": size, **json.loads((workdir / "built.json").read_text())}
    figures["rss_start_mb"] = rss_mb()
    clock = Clock()
    store = ArticleStore.from_settings(load_settings(data_dir=str(workdir)))
    retriever = HybridRetriever(TimedStore(store, clock), RandomEmbedder(), top_k=10)
    start = time.perf_counter()
    retriever.refresh()
    figures["refresh_s"] = time.perf_counter() - start
    figures["refresh_fetch_s"] = clock.spent.get("store", 0.0)
    figures["rss_index_mb"] = rss_mb()
    keywords = retriever.keywords
    keywords.search = clock.timed("bm25", keywords.search)  # type: ignore[method-assign]
    # The dense side: Chroma's index, or for a date range the scan of the range's vectors.
    retriever.nearest = clock.timed("dense", retriever.nearest)  # type: ignore[method-assign]

    asked = questions(realtimeqa, n_questions)
    retriever.retrieve(Query(asked[0]))  # first-call costs (Chroma loading its HNSW) are not a question's
    found: dict[str, dict[str, list[list[str]]]] = {}
    for label, days in FILTERS.items():
        parts: dict[str, list[float]] = {"total": [], "store": [], "dense": [], "bm25": [], "rest": []}
        found[label] = {}
        for question in asked:
            since, until = window(question, days)
            clock.spent = {}
            start = time.perf_counter()
            passages = retriever.retrieve(Query(question, since=since, until=until))
            total = time.perf_counter() - start
            found[label][question] = shown(passages)
            parts["total"].append(total)
            for part in ("store", "dense", "bm25"):
                parts[part].append(clock.spent.get(part, 0.0))
            parts["rest"].append(total - sum(clock.spent.get(part, 0.0) for part in ("store", "dense", "bm25")))
        figures[label] = {
            **{f"{part}_p50": ms(values, 0.5) for part, values in parts.items()},
            "total_p95": ms(parts["total"], 0.95),
            "passages": statistics.mean(len(p) for p in found[label].values()),
        }
    figures["rss_after_mb"] = rss_mb()
    if real_model:
        # The models `newsbot serve` loads: the ONNX embedder (the default) and the reader.
        from retrieval.index.embedding import OnnxEmbedder
        from retrieval.read.reader import ReaderModel

        embedder = OnnxEmbedder(threads=1)
        embedder.embed(["warm-up"])
        ReaderModel().scores("warm-up", ["the model is loaded"])
        times = []
        for question in asked[:20]:
            start = time.perf_counter()
            embedder.embed([question])
            times.append(time.perf_counter() - start)
        figures["embed_p50"] = ms(times, 0.5)
        figures["rss_model_mb"] = rss_mb()
    figures["ids"] = found
    return figures


# -- the table ------------------------------------------------------------------------------------


Row = tuple[str, Callable[[dict[str, Any]], str]]


def latency_rows(label: str) -> list[Row]:
    """Total p50 / p95 of one kind of question, and where the median question spends its time."""

    def total(r: dict[str, Any]) -> str:
        return f"{r[label]['total_p50']:.1f} / {r[label]['total_p95']:.1f}"

    def parts(r: dict[str, Any]) -> str:
        return " / ".join(f"{r[label][part + '_p50']:.1f}" for part in ("store", "dense", "bm25", "rest"))

    return [(f"[{label}] p50 / p95 ms", total), (f"[{label}] store / dense / bm25 / rest p50 ms", parts)]


def table(results: list[dict[str, Any]]) -> str:
    """The figures of each size, one column a size (Markdown)."""
    rows: list[Row] = [
        ("chunks (articles)", lambda r: f"{r['chunks']:,} ({r['articles']:,})"),
        ("build s (once, then cached)", lambda r: f"{r['build_s']:,.0f}"),
        ("keyword index: refresh s (fetch s)", lambda r: f"{r['refresh_s']:.1f} ({r['refresh_fetch_s']:.1f})"),
        ("RSS MB: index built / after questions", lambda r: f"{r['rss_index_mb']:,.0f} / {r['rss_after_mb']:,.0f}"),
    ]
    if all("rss_model_mb" in r for r in results):
        rows.append(("RSS MB with the models loaded (embedder, reader)", lambda r: f"{r['rss_model_mb']:,.0f}"))
        rows.append(("real question embedding p50 ms", lambda r: f"{r['embed_p50']:.1f}"))
    for label in FILTERS:
        rows += latency_rows(label)
    lines = ["| | " + " | ".join(f"{r['size']:,}" for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    lines += ["| " + name + " | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="15k,100k,1m", help="collection sizes in chunks, comma-separated")
    parser.add_argument("--workdir", type=Path, required=True, help="where the collections are built and kept")
    parser.add_argument("--realtimeqa", type=Path, default=DEFAULT_REALTIMEQA, help="RealTimeQA files, for text")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--no-model", action="store_true", help="skip the real question-embedding cost")
    parser.add_argument("--out", type=Path, help="write the figures (JSON) here")
    parser.add_argument("--ids", type=Path, help="write the chunk ids found for each question (JSON) here")
    parser.add_argument("--build", type=size_of, help=argparse.SUPPRESS)  # one step, in its own process
    parser.add_argument("--measure", type=size_of, help=argparse.SUPPRESS)
    args = parser.parse_args()

    def home(size: int) -> Path:
        return args.workdir / f"chunks-{size}"

    if args.build:
        print(json.dumps(build(args.build, home(args.build), args.realtimeqa)))
        return
    if args.measure:
        result = measure(args.measure, home(args.measure), args.realtimeqa, args.questions, not args.no_model)
        print(json.dumps(result))
        return

    results = []
    for size in [size_of(s) for s in args.sizes.split(",")]:
        common = ["--workdir", str(args.workdir), "--realtimeqa", str(args.realtimeqa), "--questions", str(args.questions)]
        subprocess.run([sys.executable, __file__, "--build", str(size), *common], check=True)
        run = subprocess.run(
            [sys.executable, __file__, "--measure", str(size), *common, *(["--no-model"] if args.no_model else [])],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        result = json.loads(run.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"{size:,} chunks measured", flush=True)
    if args.ids:
        args.ids.write_text(json.dumps({r["size"]: r["ids"] for r in results}))
    for result in results:
        del result["ids"]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
