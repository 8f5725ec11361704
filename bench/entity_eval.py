"""`newsbot eval` of the hand-weighted scorer without and with entity weights, in one pass over one index.

The same harness as `newsbot eval --realtimeqa` (index_systems, ask_all, build_report): the first
system is `reader = "off"` without entities, each further one the same scorer with entities and one
setting of `EntityWeights`. Sentence vectors are remembered across systems, so each further system
costs its retrieval and tagging only (its latency figures are therefore not comparable; measure
latency with `bench/entities.py`).

    .venv/bin/python bench/entity_eval.py ../shared/eval/realtimeqa-train --weeks W1,W2 \
        --workdir DIR --limit 100 --out DIR [--weights NAME=pool,fits,near,unfit_figure,unfit_name,evidence,mismatch,short ...]
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import fields
from pathlib import Path
from typing import cast

import numpy as np

from config import load_settings
from retrieval.answer.answerer import Answerer
from retrieval.answer.briefing import Briefer
from retrieval.answer.extractive import DEFAULT_ENTITY_WEIGHTS, EntityWeights, ExtractiveGenerator
from retrieval.evaluation.datasets import choose_weeks, limit_questions, realtimeqa_set
from retrieval.evaluation.harness import SystemRun, ask_all, index_systems, prepare_workdir
from retrieval.evaluation.report import build_report, format_table, write_reports
from retrieval.index.embedding import Embedder
from retrieval.read.entities import shared_tagger


class RememberingEmbedder:
    """An embedder that computes each text's vector once (the systems read the same sentences)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._kept: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> object:
        return getattr(self.embedder, name)

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._kept))
        if missing:
            for text, vector in zip(missing, self.embedder.embed(missing)):
                with self._lock:
                    self._kept[text] = vector
        with self._lock:
            return np.asarray([self._kept[t] for t in texts])


def weights(value: str) -> tuple[str, EntityWeights]:
    name, _, numbers = value.partition("=")
    parts = numbers.split(",")
    names = [f.name for f in fields(EntityWeights)]
    if len(parts) != len(names):
        raise argparse.ArgumentTypeError(f"expected NAME={','.join(names)}")
    return name, EntityWeights(int(parts[0]), *(float(p) for p in parts[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weeks", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=weights, nargs="*", default=[("entities", DEFAULT_ENTITY_WEIGHTS)])
    args = parser.parse_args()
    settings = load_settings(reader="off", entities=False)
    weeks = choose_weeks(args.folder, args.weeks)
    evalset = realtimeqa_set(args.folder, weeks, args.workdir / "articles")
    if args.limit:
        evalset.questions = limit_questions(evalset.questions, args.limit)
    prepare_workdir(args.workdir, reuse=True)
    from retrieval.evaluation.harness import eval_services

    services = eval_services(settings, args.workdir)
    embedder = cast(Embedder, RememberingEmbedder(services.embedder))
    services._embedder = embedder  # the plain scorer reads the remembered vectors too
    runs = index_systems(evalset, settings, args.workdir, reuse=True, services=services)
    base_run, base_answerer, _ = runs[0]
    base_run.name = "off"
    base = ExtractiveGenerator(
        embedder, services.retriever.term_weight, threshold=settings.refusal_threshold, max_sentences=settings.answer_sentences
    )
    systems: list[tuple[SystemRun, Answerer, Briefer | None]] = [
        (base_run, Answerer(services.retriever, base, top_k=settings.top_k), None)
    ]
    for name, found in args.weights:
        generator = ExtractiveGenerator(
            embedder,
            services.retriever.term_weight,
            threshold=settings.refusal_threshold,
            max_sentences=settings.answer_sentences,
            tagger=shared_tagger(),
            entity_weights=found,
        )
        systems.append((SystemRun(name, base_run.ingest), Answerer(services.retriever, generator, top_k=settings.top_k), None))
    results = ask_all(systems, evalset.questions, top_k=max(10, settings.top_k))
    report = build_report(evalset, results, args.workdir)
    print(format_table(report))
    print("reports:", *write_reports(report, args.out, evalset.name))


if __name__ == "__main__":
    main()
