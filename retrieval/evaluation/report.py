"""The eval report: each system's figures and seed pass counts, as a terminal table, JSON and Markdown."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrieval.evaluation.datasets import EvalSet
from retrieval.evaluation.harness import OURS, SystemRun
from retrieval.evaluation.metrics import RECALL_AT, SeedReport, judge_seed, refusal_curve, summarise


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
        report["systems"][system.name] = {"ingest": system.ingest, "metrics": metrics, "refusal_curve": refusal_curve(results)}
        report["questions"][system.name] = [asdict(result) for result in results]
        if evalset.seed_items is not None:
            by_id = {item["id"]: item for item in evalset.seed_items}
            seed = SeedReport([judge_seed(by_id[question.id], answer) for question, answer in system.answers])
            report["systems"][system.name]["seed"] = {
                "counts": {kind: {"passed": p, "total": t} for kind, (p, t) in seed.counts().items()},
                "failures": [{"id": r.id, "type": r.type, "why": r.why, "answer": r.answer} for r in seed.failures],
                "short_answers": [
                    {"id": r.id, "short_answer": r.short_answer, "right": r.short_correct}
                    for r in seed.results
                    if r.short_answer is not None
                ],
            }
    return report


_ROWS: list[tuple[str, str, str]] = [
    *((f"recall@{k}", f"answer-recall@{k}", "ratio") for k in RECALL_AT),
    ("mrr@10", "MRR@10", "ratio"),
    ("accuracy", "answer accuracy", "ratio"),
    ("cited_accuracy", "cited accuracy", "ratio"),
    ("accuracy_all", "accuracy, all questions of the weeks", "ratio"),
    ("refusal_out", "refusal (out of collection)", "ratio"),
    ("refusal_out_same_weeks", "  of which same weeks", "ratio"),
    ("refusal_out_other_weeks", "  of which other weeks", "ratio"),
    ("false_refusal", "false refusal (answerable)", "ratio"),
    ("recall@10_own", "gold in the question's own articles: recall@10", "ratio"),
    ("accuracy_own", "  accuracy", "ratio"),
    ("false_refusal_own", "  false refusal", "ratio"),
    ("recall@10_elsewhere", "gold only in other articles: recall@10", "ratio"),
    ("accuracy_elsewhere", "  accuracy", "ratio"),
    ("false_refusal_elsewhere", "  false refusal", "ratio"),
    ("llm_answers", "LLM: answers written by the model", "count"),
    ("llm_refusals", "LLM: refusals (gate or model)", "count"),
    ("llm_fallbacks", "LLM: fell back to the extractive answer", "count"),
    ("llm_fallbacks_error", "  after an error", "count"),
    ("llm_fallbacks_timeout", "  after a timeout", "count"),
    ("llm_fallbacks_unsupported", "  nothing in the reply backed", "count"),
    ("llm_dropped_sentences", "LLM: reply sentences dropped", "count"),
    ("unbacked_shown", "sentences shown with no backing passage", "count"),
    ("short_shown", "short answer shown (of answers)", "ratio"),
    ("short_accuracy", "  short answer right", "ratio"),
    ("short_accuracy_own", "  of which own articles: right", "ratio"),
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
    facts = {
        k: v
        for k, v in report.items()
        if k
        in (
            "dataset",
            "weeks",
            "articles",
            "questions_in_weeks",
            "counted",
            "counted_own_articles",
            "out_of_collection",
            "out_of_collection_same_weeks",
            "questions_asked",
            "qa_file",
        )
    }
    lines += ["", "## Set", ""] + [f"- {key}: {value}" for key, value in facts.items()]
    curve = report["systems"].get(OURS, {}).get("refusal_curve") or []
    if curve:
        lines += [
            "",
            f"## Refusal threshold curve ({OURS}; exact at or above the threshold the run used)",
            "",
            "| threshold | accuracy | accuracy, all | refusal out | false refusal | false refusal, gold in own articles |",
            "|---|---|---|---|---|---|",
        ]
        for point in curve:
            keys = ("accuracy", "accuracy_all", "refusal_out", "false_refusal", "false_refusal_own")
            cells = [point.get(key) for key in keys]
            lines.append(f"| {point['threshold']:.2f} | " + " | ".join(_cell(c, "ratio") for c in cells) + " |")
    ours = report["questions"].get(OURS, [])
    missed = [q for q in ours if q["kind"] == "counted" and not q["correct"]]
    if missed:
        lines += [
            "",
            f"## Answerable questions {OURS} got wrong ({len(missed)})",
            "",
            "| id | question | gold | top-10 rank | refused |",
            "|---|---|---|---|---|",
        ]
        for q in missed:
            question = q["question"].replace("|", "/")
            lines.append(
                f"| {q['id']} | {question} | {' / '.join(q['golds'])} | {q['hit_rank'] or '-'} | "
                f"{'yes' if q['refused'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def write_reports(report: dict[str, Any], out: Path, name: str) -> tuple[Path, Path]:
    """Write `eval-NAME.json` and `eval-NAME.md` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"eval-{name}.json"
    md_path = out / f"eval-{name}.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    md_path.write_text(format_markdown(report), encoding="utf-8")
    return json_path, md_path
