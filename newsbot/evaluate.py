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
import sys
from pathlib import Path

from config import Settings
from config.settings import BUNDLED_ARTICLES
from retrieval.evaluation.datasets import EvalDataError, choose_weeks, limit_questions, realtimeqa_set, seed_set
from retrieval.evaluation.harness import NAIVE, evaluate
from retrieval.evaluation.report import build_report, format_table, write_reports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--seed", type=Path, metavar="FILE", help="seed-style QA file (seed_qa_dev.jsonl format)")
    source.add_argument("--realtimeqa", type=Path, metavar="DIR", help="RealTimeQA folder (WEEK_qa/_gcs.jsonl)")
    parser.add_argument(
        "--articles", type=Path, metavar="DIR", help="articles the --seed questions are about (default: the articles directory)"
    )
    parser.add_argument("--weeks", metavar="W1,W2", help="RealTimeQA weeks, YYYYMMDD, comma-separated (default: all)")
    parser.add_argument("--compare", choices=[NAIVE], help="also run the plain LangChain pipeline, side by side")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the scratch index from an earlier run (only changed articles are embedded)"
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="with --reuse: re-embed our index (after changing chunking or cleaning code), keep the naive one",
    )
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="scratch index directory (default DATA_DIR/eval/NAME)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where the JSON and Markdown reports go (default: the workdir)")
    parser.add_argument(
        "--limit", type=int, metavar="N", help="ask only the first N answerable and N out-of-collection questions"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit is not None and args.limit < 1:
        print("newsbot eval: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.seed:
            evalset = seed_set(args.seed, args.articles or settings.articles_dir or BUNDLED_ARTICLES)
            workdir = args.workdir or settings.data_dir / "eval" / evalset.name
        else:
            weeks = choose_weeks(args.realtimeqa, args.weeks)
            name = "realtimeqa-" + "_".join(weeks)
            workdir = args.workdir or settings.data_dir / "eval" / name
            evalset = realtimeqa_set(args.realtimeqa, weeks, workdir / "articles")
    except (EvalDataError, OSError, json.JSONDecodeError) as exc:
        print(f"newsbot eval: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        evalset.questions = limit_questions(evalset.questions, args.limit)
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
