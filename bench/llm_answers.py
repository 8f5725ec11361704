"""Benchmark: the LLM backend beside the extractive default, on the seed questions, with a real llama.cpp server.

    .venv/bin/python bench/llm_answers.py                               # Qwen2.5-Coder-0.5B-Instruct (the dev extra's)
    .venv/bin/python bench/llm_answers.py --model FILE.gguf --name NAME  # another GGUF
    .venv/bin/python bench/llm_answers.py --base-url http://127.0.0.1:8090/v1   # a server already running
    .venv/bin/python bench/llm_answers.py --realtimeqa ../shared/eval/realtimeqa --weeks 20230106 --limit 20
                                                    # a RealTimeQA week's own-article questions instead

The sample articles are indexed in a temporary directory; every seed question (briefings aside: they
go to the briefer, not the answer backend) is answered twice from the same retrieval: by the
extractive default and by the LLM backend, streamed as the bot streams it. With `--realtimeqa`, the
week's articles are indexed instead and its first `--limit` counted questions whose gold is in their own
search results (the "own-article" split) are asked, each as of its week; a correct answer contains the
gold and cites an article quoting it (the seed questions: the seed bar). Printed, per backend:
the share of answered fact questions carrying at least one model-written sentence, the sentences
shown that no cited passage backs (must be 0), the seed bar passed (accuracy), how the LLM answers
came about (model, fallback and why), and p50/p95 seconds to the first shown sentence and to the
whole reply. The server gets one thread by default (`--threads`): on two shared cores, two threads
were slower than one. This prints numbers; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import load_settings  # noqa: E402
from config.settings import BUNDLED_ARTICLES  # noqa: E402
from retrieval.answer.types import Answer  # noqa: E402
from retrieval.evaluation.datasets import load_jsonl, realtimeqa_set  # noqa: E402
from retrieval.evaluation.metrics import judge_seed, percentile, score_answer, unbacked_sentences  # noqa: E402
from retrieval.service import Services  # noqa: E402


def timed(services: Services, item: Item) -> tuple[Answer, float, float]:
    """The answer, seconds to its first shown text (streamed, else the whole reply), and seconds to the whole reply."""
    started = time.perf_counter()
    first: list[float] = []

    def shown(text: str) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    answer = services.answerer.answer(item.question, as_of=item.as_of, on_text=shown)
    total = time.perf_counter() - started
    return answer, (first[0] if first else total), total


class Item:
    """One question to ask, and how to judge its answer."""

    def __init__(self, key: str, kind: str, question: str, judge: Callable[[Answer], bool], as_of: date | None = None) -> None:
        self.key, self.kind, self.question, self.judge, self.as_of = key, kind, question, judge, as_of


def seed_items(paths: list[Path]) -> list[Item]:
    items = [item for path in paths for item in load_jsonl(path) if item.get("type") != "briefing"]
    return [
        Item(item["id"], item["type"], item["question"], partial(lambda it, a: judge_seed(it, a).passed, item)) for item in items
    ]


def realtimeqa_items(folder: Path, weeks: list[str], limit: int, articles_dir: Path) -> tuple[list[Path], list[Item]]:
    evalset = realtimeqa_set(folder, weeks, articles_dir)
    own = [q for q in evalset.questions if q.kind == "counted" and q.own_articles][:limit]
    items = [Item(q.id, "fact", q.question, partial(lambda q, a: score_answer(q, a).cited_correct, q), q.as_of) for q in own]
    return evalset.paths, items


def run(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        if args.realtimeqa:
            paths, items = realtimeqa_items(args.realtimeqa, args.weeks.split(","), args.limit, Path(workdir))
        else:
            paths, items = [BUNDLED_ARTICLES], seed_items(args.seed)
        plain = Services(load_settings(data_dir=str(Path(workdir) / "var")))
        report = plain.ingestor.ingest(paths)
        assert report.added, report  # a RealTimeQA week has a few articles with no text left: skipped, said
        llm_settings = load_settings(
            data_dir=str(Path(workdir) / "var"),
            answer_backend="llm",
            llm_model=f"openai:{args.name}",
            llm_base_url=base_url,
            llm_passages=args.passages,
            llm_max_tokens=args.max_tokens,
            llm_timeout_seconds=args.timeout,
            llm_token_timeout_seconds=args.timeout,
        )
        llm = Services(llm_settings, embedder=plain.embedder, store=plain.store, retriever=plain.retriever)
        rows = []
        for item in items:
            extractive, _, _ = timed(plain, item)
            answer, first, total = timed(llm, item)
            row = {
                "id": item.key,
                "type": item.kind,
                "extractive_passed": item.judge(extractive),
                "llm_passed": item.judge(answer),
                "backend": answer.backend,
                "fallback": answer.fallback,
                "refused": answer.refused,
                "dropped": answer.dropped,
                "unbacked": unbacked_sentences(answer),
                "first_seconds": round(first, 2),
                "total_seconds": round(total, 2),
                "answer": answer.text,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    facts = [row for row in rows if row["type"] == "fact" and not row["refused"]]
    answered_by_model = [row for row in facts if row["backend"] == "llm"]
    answered = [row for row in rows if not row["refused"]]  # a refusal shows no sentence (the gate's took 0.2 s)
    firsts = [row["first_seconds"] for row in answered]
    totals = [row["total_seconds"] for row in answered]
    return {
        "questions": len(rows),
        "answered_fact_questions": len(facts),
        "with_a_model_sentence": len(answered_by_model),
        "model_sentence_share": round(len(answered_by_model) / len(facts), 3) if facts else None,
        "unsupported_shown": sum(len(row["unbacked"]) for row in rows),
        "sentences_dropped": sum(row["dropped"] for row in rows),
        "passed_llm": sum(row["llm_passed"] for row in rows),
        "passed_extractive": sum(row["extractive_passed"] for row in rows),
        "how": dict(Counter(row["fallback"] or ("refused" if row["refused"] else "model") for row in rows)),
        "first_p50": percentile(firsts, 50),
        "first_p95": percentile(firsts, 95),
        "total_p50": percentile(totals, 50),
        "total_p95": percentile(totals, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=Path, nargs="+", default=[ROOT / "tests" / "data" / "seed_qa_dev.jsonl"])
    parser.add_argument("--realtimeqa", type=Path, help="a RealTimeQA folder: ask its own-article questions instead")
    parser.add_argument("--weeks", default="20230106", help="with --realtimeqa: weeks, comma-separated")
    parser.add_argument("--limit", type=int, default=20, help="with --realtimeqa: questions asked")
    parser.add_argument("--base-url", help="an OpenAI-compatible server already running (default: start llama.cpp's)")
    parser.add_argument("--model", type=Path, help="a GGUF for the server started here (default: the dev extra's 0.5B)")
    parser.add_argument("--name", default="qwen2.5-coder-0.5b-instruct", help="the model name sent to the server")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--passages", type=int, default=3, help="llm_passages")
    parser.add_argument("--max-tokens", type=int, default=160, help="llm_max_tokens")
    parser.add_argument("--timeout", type=float, default=300.0, help="llm_timeout_seconds and llm_token_timeout_seconds")
    args = parser.parse_args()
    if args.base_url:
        summary = run(args, args.base_url)
    else:
        from tests.llamaserver import LlamaServer

        log = Path(tempfile.gettempdir()) / "newsbot-bench-llama.log"
        server = LlamaServer(log, threads=args.threads, model=args.model)
        server.start()
        try:
            summary = run(args, server.base_url)
        finally:
            server.stop()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
