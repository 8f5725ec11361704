"""What named entities cost: tagging at question time (the few best candidates) against tagging at ingest (every sentence).

Loads spaCy's small English pipeline (tok2vec and ner only), tags every sentence of the bundled
sample articles (what ingest would have to do), then answers the seed and direct questions with the
hand-weighted scorer plain, with the short answer alone and with entities weighed, and prints the time per
question each way (each mode twice, interleaved).

    .venv/bin/python bench/entities.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from config import load_settings
from config.settings import BUNDLED_ARTICLES
from retrieval.evaluation.datasets import load_jsonl
from retrieval.ingest.articles import load_text_file
from retrieval.ingest.text import split_sentences
from retrieval.read.entities import EntityTagger
from retrieval.service import Services

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [ROOT / "tests" / "data" / "seed_qa_dev.jsonl", ROOT / "tests" / "data" / "seed_qa_direct.jsonl"]


def main() -> None:
    started = time.perf_counter()
    tagger = EntityTagger()
    print(f"pipeline loaded in {time.perf_counter() - started:.2f} s: {tagger.nlp.pipe_names}")
    sentences = [s for path in sorted(BUNDLED_ARTICLES.glob("*.txt")) for s in split_sentences(load_text_file(path).text)]
    started = time.perf_counter()
    tagger.entities(sentences)
    seconds = time.perf_counter() - started
    print(
        f"ingest-time tagging: {len(sentences)} sentences in {seconds:.2f} s, {1000 * seconds / len(sentences):.1f} ms a sentence"
    )

    questions = [item["question"] for path in QUESTIONS for item in load_jsonl(path) if item["type"] != "briefing"]
    # Plain scorer; the short answer alone (its 8 best sentences tagged, nothing reweighed); entities weighed too.
    modes = {"plain": (False, False), "short answer": (False, True), "entities": (True, True)}
    with tempfile.TemporaryDirectory() as folder:
        timings: dict[str, list[float]] = {}
        base = Services(load_settings(data_dir=folder, reader="off", entities=False))
        base.ingestor.ingest([BUNDLED_ARTICLES])
        for mode in [*modes, *modes]:
            entities, short = modes[mode]
            settings = load_settings(data_dir=folder, reader="off", entities=entities, short_answer=short)
            services = Services(settings, embedder=base.embedder)
            services.warm_up()
            if services.tagger is not None:
                services.tagger._kept.clear()  # every question's candidates tagged afresh
            for question in questions:
                answer = services.answerer.answer(question)
                timings.setdefault(mode, []).append(answer.timings_ms["total"])
    plain = statistics.median(timings["plain"])
    for mode, values in timings.items():
        p50 = statistics.median(values)
        print(f"ask p50, {mode}: {p50:.0f} ms over {len(values)} questions (x{p50 / plain:.2f} of plain, same run)")


if __name__ == "__main__":
    main()
