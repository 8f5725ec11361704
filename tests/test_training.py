"""A smoke run of the reader's training (`newsbot train-reader`) on a handful of questions made from the sample articles.

Real parts throughout: sentence-transformers' trainer on the bundled MiniLM, the torch.onnx export and
int8 quantization, the logistic regression; only the data is tiny. CI never trains the shipped reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from config.settings import BUNDLED_ARTICLES
from retrieval.evaluation.training import TrainingConfig, TrainingQuestion, question_pools, split_for_weights, train_reader
from retrieval.index.embedding import default_model_path
from retrieval.index.encoder import OnnxEncoder
from retrieval.read.reader import FEATURES, ReaderWeights

QUESTIONS = [
    ("How many additional troops did Ash Carter announce for Iraq?", ["560", "1000", "250", "5000"], 0),
    ("Which city fell to Daesh in May?", ["Basra", "Ramadi", "Erbil", "Najaf"], 1),
    ("How far is Mosul from Baghdad?", ["50 miles", "225 miles", "900 miles", "1,200 miles"], 1),
    ("Who won the 2018 FIFA World Cup?", ["Brazil", "France", "Germany", "Spain"], 1),
]


def _week(folder: Path) -> None:
    """One RealTimeQA-format week: each question with the sample articles as its search results."""
    results = []
    for path in sorted(BUNDLED_ARTICLES.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        results.append({"url": f"https://example.org/{path.stem}", "title": "", "text": text, "publish_date": "2016/07/11"})
    folder.mkdir(parents=True)
    with (folder / "20990101_qa.jsonl").open("w", encoding="utf-8") as qa, (folder / "20990101_gcs.jsonl").open("w") as gcs:
        for i, (question, choices, answer) in enumerate(QUESTIONS):
            qid = f"20990101_{i}"
            qa.write(
                json.dumps(
                    {
                        "question_id": qid,
                        "question_date": "2016/07/12",
                        "question_sentence": question,
                        "choices": choices,
                        "answer": [str(answer)],
                    }
                )
                + "\n"
            )
            gcs.write(json.dumps({"question_id": qid, "search_result": results}) + "\n")


@pytest.mark.model
def test_training_writes_a_reader_that_loads(tmp_path: Path) -> None:
    data = tmp_path / "weeks"
    _week(data)
    config = TrainingConfig(epochs=1, batch_size=4, weight_questions=10, weight_every=2)
    pools = list(question_pools(data, config))
    assert [q.answerable for q in pools] == [True, True, True, False]  # the World Cup is in no sample article
    assert all(len(q.candidates) <= config.candidates_per_question for q in pools)

    out = tmp_path / "reader"
    # The same week as "dev" only exercises the selection figures; real runs select on weeks never trained on.
    report = train_reader(data, out, base=default_model_path(), dev=data, config=config, progress=lambda _: None)
    for name in ("model.onnx", "tokenizer.json", "encoder.json", "reader.json", "training.json"):
        assert (out / name).is_file(), name
    assert not (out / "work").exists()  # the intermediate checkpoint is not left behind
    weights = ReaderWeights.read(out / "reader.json")
    assert len(weights.coef) == len(FEATURES) and weights.gate_coef[FEATURES.index("recency")] == 0.0
    assert report["data"]["questions"] == len(QUESTIONS)
    assert report["dev"]["questions_with_gold"] == 3 and weights.threshold == report["dev"]["threshold"]
    vectors = OnnxEncoder(out).embed(["How far is Mosul from Baghdad?", "Mosul lies about 225 miles north of Baghdad."])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_the_feature_weights_are_fitted_on_whole_weeks_the_encoder_never_sees() -> None:
    def question(week: str, n: int, answerable: bool = True) -> TrainingQuestion:
        return TrainingQuestion(f"{week}_{n}", "q?", "gold", None, labels=[answerable], week=week)

    weeks = [f"2022{month:02d}01" for month in range(1, 13)]
    pools = [question(week, n) for week in weeks for n in range(3)]
    encoder, weights = split_for_weights(pools, 6)
    assert sorted({q.week for q in weights}) == [weeks[5], weeks[11]]  # every sixth week, whole
    assert not {q.week for q in encoder} & {q.week for q in weights}
    assert len(encoder) + len(weights) == len(pools)
    # Held-out weeks with no answerable question cannot fit the weights: then all questions do both.
    unanswerable = [question(q.week, int(q.id[-1]), answerable=q.week not in (weeks[5], weeks[11])) for q in pools]
    assert split_for_weights(unanswerable, 6) == (unanswerable, unanswerable)
