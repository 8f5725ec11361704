"""`newsbot eval`: answer a QA set through the bot's own answerer and report the figures.

Two inputs: a seed-style QA file with its article folder (`--seed FILE --articles DIR`), or a
RealTimeQA folder and some of its weeks (`--realtimeqa DIR --weeks W1,W2`). The index is built
in a scratch directory (DATA_DIR/eval/NAME unless `--workdir`), every question is asked through
`Services(...).answerer` with its date as `as_of`, and the figures defined in the eval README
are printed as a table and written as JSON and Markdown. `--compare naive` adds the LangChain
tutorial pipeline (retrieval/naive.py) on the same articles and questions.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from config import Settings
from config.settings import BUNDLED_ARTICLES
from retrieval.answer.answerer import Answerer
from retrieval.answer.types import Answer
from retrieval.evaluation.scoring import (
    RECALL_AT,
    EvalDataError,
    EvalQuestion,
    QuestionResult,
    judge_seed,
    load_jsonl,
    load_realtimeqa,
    realtimeqa_weeks,
    score_answer,
    seed_questions,
    summarise,
    write_corpus,
)
from retrieval.service import Services

logger = logging.getLogger(__name__)

OURS, NAIVE = "newsbot", "naive"
BUILDS_FILE = "builds.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--seed", type=Path, metavar="FILE", help="seed-style QA file (seed_qa_dev.jsonl format)")
    source.add_argument("--realtimeqa", type=Path, metavar="DIR", help="RealTimeQA folder (WEEK_qa/_gcs.jsonl)")
    parser.add_argument("--articles", type=Path, metavar="DIR",
                        help="articles the --seed questions are about (default: the articles directory)")
    parser.add_argument("--weeks", metavar="W1,W2", help="RealTimeQA weeks, YYYYMMDD, comma-separated (default: all)")
    parser.add_argument("--compare", choices=[NAIVE], help="also run the plain LangChain pipeline, side by side")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the scratch index from an earlier run (only changed articles are embedded)")
    parser.add_argument("--rebuild", action="store_true",
                        help="with --reuse: re-embed our index (after changing chunking or cleaning code), "
                             "keep the naive one")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="scratch index directory (default DATA_DIR/eval/NAME)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where the JSON and Markdown reports go (default: the workdir)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="ask only the first N answerable and N out-of-collection questions")


@dataclass
class EvalSet:
    """What to index and what to ask."""

    name: str
    paths: list[Path]
    questions: list[EvalQuestion]
    info: dict[str, Any] = field(default_factory=dict)
    seed_items: list[dict[str, Any]] | None = None


@dataclass
class SystemRun:
    """One pipeline's ingest figures and answers."""

    name: str
    ingest: dict[str, Any]
    answers: list[tuple[EvalQuestion, Answer]] = field(default_factory=list)

    @property
    def results(self) -> list[QuestionResult]:
        return [score_answer(question, answer) for question, answer in self.answers]


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit is not None and args.limit < 1:
        print("newsbot eval: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.seed:
            evalset = seed_set(args.seed, args.articles or settings.articles_dir or BUNDLED_ARTICLES)
            workdir = args.workdir or settings.data_dir / "eval" / evalset.name
        else:
            weeks = _weeks(args.realtimeqa, args.weeks)
            name = "realtimeqa-" + "_".join(weeks)
            workdir = args.workdir or settings.data_dir / "eval" / name
            evalset = realtimeqa_set(args.realtimeqa, weeks, workdir / "articles")
    except (EvalDataError, OSError, json.JSONDecodeError) as exc:
        print(f"newsbot eval: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        evalset.questions = _limited(evalset.questions, args.limit)
    try:
        runs = evaluate(evalset, settings, workdir, compare=args.compare, reuse=args.reuse, rebuild=args.rebuild)
    except EvalDataError as exc:
        print(f"newsbot eval: {exc}", file=sys.stderr)
        return 2
    report = build_report(evalset, runs, workdir)
    print(format_table(report))
    out = args.out or workdir
    json_path, md_path = write_reports(report, out, evalset.name)
    print(f"\nreports: {json_path} {md_path}")
    return 0


# -- the question sets -----------------------------------------------------------------------


def _weeks(folder: Path, spec: str | None) -> list[str]:
    if spec:
        return [week.strip() for week in spec.split(",") if week.strip()]
    weeks = realtimeqa_weeks(folder)
    if not weeks:
        raise EvalDataError(f"no RealTimeQA weeks (WEEK_qa.jsonl + WEEK_gcs.jsonl) in {folder}")
    return weeks


def seed_set(qa_file: Path, articles: Path) -> EvalSet:
    """The seed questions about a folder of articles."""
    if not articles.exists():
        raise EvalDataError(f"articles folder not found: {articles}")
    items = load_jsonl(qa_file)
    return EvalSet(
        name=f"seed-{articles.resolve().name}",
        paths=[articles],
        questions=seed_questions(items),
        info={"dataset": "seed", "qa_file": str(qa_file), "articles": str(articles)},
        seed_items=items,
    )


def realtimeqa_set(folder: Path, weeks: list[str], articles_dir: Path) -> EvalSet:
    """RealTimeQA weeks: the corpus written as JSON Lines articles, counted and out-of-collection questions."""
    data = load_realtimeqa(folder, weeks)
    corpus_file = articles_dir / "realtimeqa.jsonl"
    write_corpus(data.corpus, corpus_file)
    return EvalSet(
        name="realtimeqa-" + "_".join(weeks),
        paths=[corpus_file],
        questions=data.counted + data.out_of_collection,
        info={
            "dataset": "realtimeqa",
            "folder": str(folder),
            "weeks": weeks,
            "articles": len(data.corpus),
            "questions_in_weeks": data.questions_total,
            "counted": len(data.counted),
            "out_of_collection": len(data.out_of_collection),
            "out_of_collection_same_weeks": data.uncounted_same_weeks,
        },
    )


def _limited(questions: list[EvalQuestion], limit: int) -> list[EvalQuestion]:
    kept: list[EvalQuestion] = []
    seen: dict[str, int] = {}
    for question in questions:
        if seen.get(question.kind, 0) < limit:
            kept.append(question)
            seen[question.kind] = seen.get(question.kind, 0) + 1
    return kept


# -- building the indexes and asking ---------------------------------------------------------


def eval_services(settings: Settings, workdir: Path) -> Services:
    """Services on the scratch directory; the collection is named after the chunking, so changing it rebuilds."""
    collection = f"eval-c{settings.chunk_size}-o{settings.chunk_overlap}"
    return Services(settings.model_copy(update={"data_dir": workdir, "articles_dir": None, "collection": collection}))


def load_builds(workdir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((workdir / BUILDS_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def ingest_figures(key: str, embedded: int, total: int, seconds: float, articles: int,
                    builds: dict[str, Any]) -> dict[str, Any]:
    """This run's ingest figures, or the recorded ones of the run that embedded the reused index.

    Only a build from empty is recorded in `builds`: an incremental run (a few changed articles)
    reports its own figures with the full build's beside them, and does not replace them.
    """
    if embedded == 0 and key in builds:
        return {**builds[key], "reused": True}
    figures: dict[str, Any] = {
        "articles": articles,
        "chunks": total,
        "chunks_embedded": embedded,
        "seconds": round(seconds, 1),
        "chunks_per_s": round(embedded / seconds, 1) if seconds > 0 else None,
        "reused": False,
        "incremental": embedded < total,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if embedded < total and key in builds:
        figures["full_build"] = builds[key]
    elif embedded == total:
        builds[key] = dict(figures)
    return figures


def _drop_ours(services: Services, builds: dict[str, Any]) -> None:
    """Delete our eval collections (alias registry and versions) so the next ingest embeds everything again."""
    from retrieval.index.store import make_client

    client = make_client(services.settings)
    prefix = f"{services.settings.collection}-"
    for collection in client.list_collections():
        name = collection if isinstance(collection, str) else collection.name
        if name.startswith(prefix):
            client.delete_collection(name)
    for key in [key for key in builds if key.startswith(f"{OURS}:")]:
        del builds[key]


def ingest_fingerprint() -> str:
    """A hash of the code that decides what gets embedded (cleaning and chunking): a changed hash needs --rebuild."""
    import hashlib
    from importlib import resources

    root = resources.files("retrieval.ingest")
    digest = hashlib.sha1()
    for name in ("articles.py", "text.py", "chunking.py"):
        path = root / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:12]


def evaluate(evalset: EvalSet, settings: Settings, workdir: Path, *, compare: str | None = None,
             reuse: bool = False, rebuild: bool = False, services: Services | None = None) -> list[SystemRun]:
    """Index the set's articles (ours, and the naive pipeline if asked) and ask every question."""
    if not reuse and (workdir / "chroma").exists():
        if not (workdir / BUILDS_FILE).exists():  # never wipe an index that `newsbot eval` did not build
            raise EvalDataError(f"{workdir} holds an index that newsbot eval did not build; "
                                "choose another --workdir, or pass --reuse to add to it")
        shutil.rmtree(workdir / "chroma")
        (workdir / BUILDS_FILE).unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    builds = load_builds(workdir)
    services = services or eval_services(settings, workdir)
    fingerprint = ingest_fingerprint()
    if reuse and rebuild:
        _drop_ours(services, builds)
        services = eval_services(settings, workdir)
    elif reuse and builds.get("fingerprint") not in (None, fingerprint):
        print("newsbot eval: the cleaning or chunking code changed since this index was built; "
              "unchanged articles keep their old chunks (pass --rebuild to re-embed them)", file=sys.stderr)
    if not reuse or rebuild:  # a reused index without one stays unknown
        builds["fingerprint"] = fingerprint
    (workdir / BUILDS_FILE).write_text(json.dumps(builds, indent=2), encoding="utf-8")  # marks the scratch dir
    top_k = max(10, settings.top_k)

    print(f"indexing {', '.join(map(str, evalset.paths))} into {workdir}", file=sys.stderr)
    services.embedder.embed(["warm-up"])  # load the model first: ingest time is embedding, not start-up
    report = services.ingestor.ingest(list(evalset.paths), prune=True)
    for error in report.skipped:
        logger.warning("skipped %s", error)
    store = services.store
    ours = SystemRun(OURS, ingest_figures(
        f"{OURS}:{store.live_name}", report.chunks_embedded, store.count(), report.seconds,
        len(report.added) + len(report.updated) + len(report.unchanged), builds))
    ours.ingest["skipped"] = len(report.skipped)
    runs = [(ours, services.answerer)]

    if compare == NAIVE:
        from retrieval.evaluation.naive import NAIVE_COLLECTION, NaiveRetriever
        from retrieval.index.store import make_client

        naive = NaiveRetriever(make_client(services.settings), services.embedder, top_k=top_k)
        naive_report = naive.ingest(list(evalset.paths))
        naive_run = SystemRun(NAIVE, ingest_figures(
            f"{NAIVE}:{NAIVE_COLLECTION}", naive_report.chunks_embedded, naive_report.chunks_total,
            naive_report.seconds, naive_report.documents, builds))
        # Same extractive generator as ours, so answers and refusals compare too (retrieval is the difference).
        runs.append((naive_run, Answerer(naive, services.generator, top_k=top_k)))
    (workdir / BUILDS_FILE).write_text(json.dumps(builds, indent=2), encoding="utf-8")

    services.retriever.refresh()  # build the keyword index before the clock starts
    for system, answerer in runs:
        bar = tqdm(evalset.questions, desc=f"asking ({system.name})", unit="q", disable=None, leave=False)
        for question in bar:
            answer = answerer.answer(question.question, as_of=question.as_of, top_k=top_k)
            system.answers.append((question, answer))
        bar.close()
    return [system for system, _ in runs]


# -- reports ---------------------------------------------------------------------------------


def build_report(evalset: EvalSet, runs: list[SystemRun], workdir: Path) -> dict[str, Any]:
    """Everything a report file holds: the set, each system's figures, and per-question results."""
    report: dict[str, Any] = {
        "name": evalset.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "newsbot " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("newsbot") else None,
        "workdir": str(workdir),
        **evalset.info,
        "questions_asked": len(evalset.questions),
        "systems": {},
        "questions": {},
    }
    for system in runs:
        results = system.results
        metrics = summarise(results)
        weeks = evalset.info.get("weeks")
        if weeks:  # RealTimeQA: refusals of the chosen weeks' unanswerable questions and of the other weeks'
            for label, inside in (("refusal_out_same_weeks", True), ("refusal_out_other_weeks", False)):
                group = [r.refused for r in results if r.kind == "out" and (r.week in weeks) == inside]
                metrics[label] = sum(group) / len(group) if group else None
        report["systems"][system.name] = {"ingest": system.ingest, "metrics": metrics}
        report["questions"][system.name] = [asdict(result) for result in results]
        if evalset.seed_items is not None:
            by_id = {item["id"]: item for item in evalset.seed_items}
            judged = [judge_seed(by_id[question.id], answer) for question, answer in system.answers]
            counts: dict[str, list[int]] = {}
            for result in judged:
                passed_total = counts.setdefault(result.type, [0, 0])
                passed_total[0] += result.passed
                passed_total[1] += 1
            report["systems"][system.name]["seed"] = {
                "counts": {kind: {"passed": p, "total": t} for kind, (p, t) in counts.items()},
                "failures": [{"id": r.id, "type": r.type, "why": r.why, "answer": r.answer} for r in judged
                             if not r.passed],
            }
    return report


_ROWS: list[tuple[str, str, str]] = [
    *((f"recall@{k}", f"answer-recall@{k}", "ratio") for k in RECALL_AT),
    ("mrr@10", "MRR@10", "ratio"),
    ("accuracy", "answer accuracy", "ratio"),
    ("cited_accuracy", "cited accuracy", "ratio"),
    ("refusal_out", "refusal (out of collection)", "ratio"),
    ("refusal_out_same_weeks", "  of which same weeks", "ratio"),
    ("refusal_out_other_weeks", "  of which other weeks", "ratio"),
    ("false_refusal", "false refusal (answerable)", "ratio"),
    ("latency_p50_ms", "ask latency p50 (ms)", "ms"),
    ("latency_p95_ms", "ask latency p95 (ms)", "ms"),
    ("retrieve_p50_ms", "retrieve latency p50 (ms)", "ms"),
]
_INGEST_ROWS = [("chunks", "chunks indexed"), ("seconds", "ingest time (s)"), ("chunks_per_s", "chunks/s")]


def _cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "ms" or isinstance(value, float):
        return f"{value:.0f}" if unit == "ms" else f"{value:.1f}"
    return str(value)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table."""
    systems = list(report["systems"])
    header = ["metric", *systems]
    rows: list[list[str]] = []
    for key, label, unit in _ROWS:
        if all(key not in report["systems"][s]["metrics"] for s in systems):
            continue
        rows.append([label, *(_cell(report["systems"][s]["metrics"].get(key), unit) for s in systems)])
    for key, label in _INGEST_ROWS:
        cells = []
        for s in systems:
            ingest = report["systems"][s]["ingest"]
            note = " (reused)" if ingest.get("reused") else " (incremental)" if ingest.get("incremental") else ""
            cells.append(_cell(ingest.get(key)) + (note if key != "chunks" else ""))
        rows.append([label, *cells])
    for s_index, s in enumerate(systems):
        seed = report["systems"][s].get("seed")
        if not seed:
            continue
        for kind, count in seed["counts"].items():
            label = f"seed {kind} passed"
            row = next((r for r in rows if r[0] == label), None)
            if row is None:
                row = [label, *([""] * len(systems))]
                rows.append(row)
            row[1 + s_index] = f"{count['passed']}/{count['total']}"
    return header, rows


def format_table(report: dict[str, Any]) -> str:
    """The side-by-side table for a terminal."""
    header, rows = table_rows(report)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    metrics = next(iter(report["systems"].values()))["metrics"]
    lines = [
        f"{report['name']}: {metrics['counted']} answerable questions, {metrics['out']} out of collection",
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(header)),
    ]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    for name, system in report["systems"].items():
        for failure in (system.get("seed") or {}).get("failures", []):
            lines.append(f"{name}: seed {failure['id']} ({failure['type']}) failed: {failure['why']}")
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the table, the set, and the answerable questions our pipeline missed."""
    header, rows = table_rows(report)
    lines = [f"# newsbot eval: {report['name']}", "", f"Run {report['created']}."]
    if report.get("command"):
        lines += ["", f"`{report['command']}`"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    facts = {k: v for k, v in report.items() if k in (
        "dataset", "weeks", "articles", "questions_in_weeks", "counted", "out_of_collection",
        "out_of_collection_same_weeks", "questions_asked", "qa_file")}
    lines += ["", "## Set", ""] + [f"- {key}: {value}" for key, value in facts.items()]
    ours = report["questions"].get(OURS, [])
    missed = [q for q in ours if q["kind"] == "counted" and not q["correct"]]
    if missed:
        lines += ["", f"## Answerable questions {OURS} got wrong ({len(missed)})", "",
                  "| id | question | gold | top-10 rank | refused |", "|---|---|---|---|---|"]
        for q in missed:
            question = q["question"].replace("|", "/")
            lines.append(f"| {q['id']} | {question} | {' / '.join(q['golds'])} | {q['hit_rank'] or '-'} | "
                         f"{'yes' if q['refused'] else 'no'} |")
    return "\n".join(lines) + "\n"


def write_reports(report: dict[str, Any], out: Path, name: str) -> tuple[Path, Path]:
    """Write `eval-NAME.json` and `eval-NAME.md` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"eval-{name}.json"
    md_path = out / f"eval-{name}.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    md_path.write_text(format_markdown(report), encoding="utf-8")
    return json_path, md_path

