"""The harness: index an eval set's articles in a scratch directory and ask every question through the answerer.

The index is built in a scratch directory (DATA_DIR/eval/NAME unless a workdir is given), every
question is asked through `Services(...).answerer` with its date as `as_of`; with `compare="naive"`
the LangChain tutorial pipeline (naive.py) answers the same questions on the same articles.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from config import Settings
from retrieval.answer.answerer import Answerer
from retrieval.answer.briefing import Briefer
from retrieval.answer.types import Answer
from retrieval.evaluation.datasets import EvalDataError, EvalQuestion, EvalSet
from retrieval.evaluation.metrics import QuestionResult, score_answer
from retrieval.service import Services

logger = logging.getLogger(__name__)

OURS, NAIVE = "newsbot", "naive"
BUILDS_FILE = "builds.json"


@dataclass
class SystemRun:
    """One pipeline's ingest figures and answers."""

    name: str
    ingest: dict[str, Any]
    answers: list[tuple[EvalQuestion, Answer]] = field(default_factory=list)

    @property
    def results(self) -> list[QuestionResult]:
        return [score_answer(question, answer) for question, answer in self.answers]


def eval_services(settings: Settings, workdir: Path) -> Services:
    """Services on the scratch directory; the collection is named after the chunking, so changing it rebuilds."""
    collection = f"eval-c{settings.chunk_size}-o{settings.chunk_overlap}"
    return Services(settings.model_copy(update={"data_dir": workdir, "articles_dir": None, "collection": collection}))


def load_builds(workdir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((workdir / BUILDS_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def ingest_figures(key: str, embedded: int, total: int, seconds: float, articles: int, builds: dict[str, Any]) -> dict[str, Any]:
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


def evaluate(
    evalset: EvalSet,
    settings: Settings,
    workdir: Path,
    *,
    compare: str | None = None,
    reuse: bool = False,
    rebuild: bool = False,
    services: Services | None = None,
) -> list[SystemRun]:
    """Index the set's articles (ours, and the naive pipeline if asked) and ask every question."""
    prepare_workdir(workdir, reuse=reuse)
    runs = index_systems(evalset, settings, workdir, compare=compare, reuse=reuse, rebuild=rebuild, services=services)
    return ask_all(runs, evalset.questions, top_k=max(10, settings.top_k))


def prepare_workdir(workdir: Path, *, reuse: bool) -> None:
    """A scratch directory for the eval index: emptied unless `reuse`, and never one that eval did not build."""
    if not reuse and (workdir / "chroma").exists():
        if not (workdir / BUILDS_FILE).exists():  # never wipe an index that `newsbot eval` did not build
            raise EvalDataError(
                f"{workdir} holds an index that newsbot eval did not build; "
                "choose another --workdir, or pass --reuse to add to it"
            )
        shutil.rmtree(workdir / "chroma")
        (workdir / BUILDS_FILE).unlink()
    workdir.mkdir(parents=True, exist_ok=True)


def index_systems(
    evalset: EvalSet,
    settings: Settings,
    workdir: Path,
    *,
    compare: str | None = None,
    reuse: bool = False,
    rebuild: bool = False,
    services: Services | None = None,
) -> list[tuple[SystemRun, Answerer, Briefer | None]]:
    """Index the set's articles for each system; each system's run (with its ingest figures), answerer and briefer."""
    builds = load_builds(workdir)
    services = services or eval_services(settings, workdir)
    fingerprint = ingest_fingerprint()
    if reuse and rebuild:
        _drop_ours(services, builds)
        services = eval_services(settings, workdir)
    elif reuse and builds.get("fingerprint") not in (None, fingerprint):
        print(
            "newsbot eval: the cleaning or chunking code changed since this index was built; "
            "unchanged articles keep their old chunks (pass --rebuild to re-embed them)",
            file=sys.stderr,
        )
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
    articles = len(report.added) + len(report.updated) + len(report.unchanged)
    figures = ingest_figures(f"{OURS}:{store.live_name}", report.chunks_embedded, store.count(), report.seconds, articles, builds)
    ours = SystemRun(OURS, figures)
    ours.ingest["skipped"] = len(report.skipped)
    runs: list[tuple[SystemRun, Answerer, Briefer | None]] = [(ours, services.answerer, services.briefer)]

    if compare == NAIVE:
        from retrieval.evaluation.naive import NAIVE_COLLECTION, NaiveRetriever
        from retrieval.index.store import make_client

        naive = NaiveRetriever(make_client(services.settings), services.embedder, top_k=top_k)
        naive_report = naive.ingest(list(evalset.paths))
        naive_figures = ingest_figures(
            f"{NAIVE}:{NAIVE_COLLECTION}",
            naive_report.chunks_embedded,
            naive_report.chunks_total,
            naive_report.seconds,
            naive_report.documents,
            builds,
        )
        # Same extractive generator as ours, so answers and refusals compare too (retrieval is the difference).
        # It has no briefer: a briefing seed is asked of it as a question.
        runs.append((SystemRun(NAIVE, naive_figures), Answerer(naive, services.generator, top_k=top_k), None))
    (workdir / BUILDS_FILE).write_text(json.dumps(builds, indent=2), encoding="utf-8")
    services.retriever.refresh()  # build the keyword index before the clock starts
    return runs


def ask_all(
    runs: list[tuple[SystemRun, Answerer, Briefer | None]], questions: list[EvalQuestion], *, top_k: int
) -> list[SystemRun]:
    """Ask every question of every system, as of the question's date; the runs with their answers.

    A briefing seed ("Brief me on the campaign to retake Mosul.") goes to the system's briefer, as
    `/brief` would, where it has one.
    """
    for system, answerer, briefer in runs:
        bar = tqdm(questions, desc=f"asking ({system.name})", unit="q", disable=None, leave=False)
        for question in bar:
            if briefer is not None and question.seed_type == "briefing":
                answer = briefing_answer(question.question, briefer)
            else:
                answer = answerer.answer(question.question, as_of=question.as_of, top_k=top_k)
            system.answers.append((question, answer))
        bar.close()
    return [system for system, _, _ in runs]


def briefing_answer(request: str, briefer: Briefer) -> Answer:
    """The briefing on `request` as an answer to score: its bullets' text, its sources; no bullets is a refusal."""
    started = time.perf_counter()
    briefing = briefer.brief(request)
    return Answer(
        question=request,
        text=" ".join(point.text for point in briefing.points) or briefing.message,
        refused=briefing.empty,
        citations=briefing.sources,
        timings_ms={"total": (time.perf_counter() - started) * 1000},
    )
