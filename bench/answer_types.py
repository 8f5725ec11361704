"""How well the answer-type rules read the training weeks' questions (retrieval/read/answertypes.py).

For every question of the development weeks (the RealTimeQA training weeks less the final set of
docs/selection.md): is it typed, and when it is, is its gold choice an entity of that type? The gold
is tagged where the quiz's evidence states it (the evidence's sentence through spaCy's NER, the
entity covering the gold), else alone. Prints the share typed, the agreement per type, and examples.

    .venv/bin/python bench/answer_types.py ../shared/eval/realtimeqa-train [--examples 3]
"""

from __future__ import annotations

import argparse
import html
import json
import re
from collections import Counter
from pathlib import Path

from retrieval.read.answertypes import expected_type
from retrieval.read.entities import EntityTagger

FINAL_SET = set(
    "20220902,20221202,20230407,20230811,20231215,20240202,20240830,20241011,"
    "20250103,20250214,20250328,20250509,20250620,20250912,20251024".split(",")
)


def gold_labels(tagger: EntityTagger, gold: str, evidence: str) -> set[str]:
    """The entity labels spaCy gives the gold where the evidence states it, else the gold alone."""
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", evidence or ""))).strip()
    at = text.lower().find(gold.lower())
    if at >= 0:
        start = max(0, text.rfind(". ", 0, at) + 1)
        stop = text.find(". ", at + len(gold))
        sentence = text[start : stop + 1 if stop >= 0 else len(text)].strip()
        at = sentence.lower().find(gold.lower())
        labels = {e.label for e in tagger.entities([sentence])[0] if e.start < at + len(gold) and e.end > at}
        if labels:
            return labels
    return {e.label for e in tagger.entities([gold])[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--examples", type=int, default=3, help="mismatches shown per type")
    args = parser.parse_args()
    tagger = EntityTagger()
    weeks = sorted({p.name[:8] for p in args.folder.glob("20*_qa.jsonl")} - FINAL_SET)
    total = 0
    typed: Counter[str] = Counter()
    agree: Counter[str] = Counter()
    misses: dict[str, list[str]] = {}
    for week in weeks:
        for line in (args.folder / f"{week}_qa.jsonl").read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            question = item["question_sentence"]
            gold = item["choices"][int(item["answer"][0])]
            total += 1
            kind = expected_type(question)
            if kind is None:
                continue
            typed[kind.name] += 1
            labels = gold_labels(tagger, gold, item.get("evidence", ""))
            if labels & kind.labels:
                agree[kind.name] += 1
            else:
                misses.setdefault(kind.name, []).append(f"{question} -> {gold!r} {sorted(labels)}")
    n_typed = sum(typed.values())
    print(f"development weeks: {len(weeks)}, questions: {total}")
    fits = sum(agree.values())
    print(f"typed: {n_typed} ({n_typed / total:.1%}); gold of the expected type: {fits} ({fits / n_typed:.1%} of typed)")
    print(f"{'type':<14}{'typed':>7}{'gold fits':>11}")
    for name, count in typed.most_common():
        print(f"{name:<14}{count:>7}{agree[name] / count:>11.1%}")
    for name, lines in misses.items():
        for line in lines[: args.examples]:
            print(f"  miss {name}: {line}")


if __name__ == "__main__":
    main()
