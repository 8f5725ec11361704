"""A smoke run of the reader's training (`newsbot train-reader`) on a handful of questions made from the sample articles.

Real parts throughout: the bundled MiniLM trained as a pair model with torch, the torch.onnx export and
int8 quantization, the logistic regressions; only the data is tiny. CI never trains the shipped reader.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from config.settings import BUNDLED_ARTICLES
from retrieval.evaluation.training import (
    MODEL_FILES,
    TrainingConfig,
    TrainingQuestion,
    calibrated,
    other_pools,
    question_pools,
    split_for_weights,
    train_reader,
    training_groups,
)
from retrieval.index.embedding import default_model_path
from retrieval.passages import Passage
from retrieval.read.candidates import candidates
from retrieval.read.reader import FEATURES, ReaderModel, ReaderWeights, bundled_model

QUESTIONS = [
    ("How many additional troops did Ash Carter announce for Iraq?", ["560", "1000", "250", "5000"], 0),
    ("Which city fell to Daesh in May?", ["Basra", "Ramadi", "Erbil", "Najaf"], 1),
    ("How far is Mosul from Baghdad?", ["50 miles", "225 miles", "900 miles", "1,200 miles"], 1),
    ("Who won the 2018 FIFA World Cup?", ["Brazil", "France", "Germany", "Spain"], 1),
]


# The quiz author's evidence for the troops question: which of the sentences holding "560" answers.
EVIDENCE = {0: "Carter announced that 560 more troops would be sent to Iraq to help retake Mosul."}


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
                        "evidence": EVIDENCE.get(i, ""),
                    }
                )
                + "\n"
            )
            gcs.write(json.dumps({"question_id": qid, "search_result": results}) + "\n")


@pytest.mark.model
def test_training_writes_a_reader_that_loads(tmp_path: Path) -> None:
    data = tmp_path / "weeks"
    _week(data)
    config = TrainingConfig(epochs=2, questions_per_step=2, weight_questions=10, weight_every=2, pool=12)
    pools = list(question_pools(data, config))
    assert [q.answerable for q in pools] == [True, True, True, False]  # the World Cup is in no sample article
    assert all(len(q.candidates) <= config.candidates_per_question for q in pools)
    assert pools[0].choices == tuple(QUESTIONS[0][1]) and "560 more troops" in pools[0].evidence

    out = tmp_path / "reader"
    # The same week as "dev" only exercises the report; real runs report on weeks never trained on.
    report = train_reader(data, out, base=default_model_path(), dev=data, config=config, progress=lambda _: None)
    for name in ("model.onnx", "tokenizer.json", "encoder.json", "reader.json", "training.json"):
        assert (out / name).is_file(), name
    weights = ReaderWeights.read(out / "reader.json")
    assert len(weights.coef) == len(FEATURES) and weights.gate_coef[FEATURES.index("recency")] == 0.0
    # The cosine of sentence and question decides whether to answer, not which sentence answers.
    assert weights.coef[FEATURES.index("dense")] == 0.0 and weights.gate_coef[FEATURES.index("dense")] != 0.0
    assert weights.pool == 12 and weights.threshold == report["held_out"]["threshold"]
    assert report["data"]["questions"] == len(QUESTIONS) and report["dev"]["questions_with_gold"] == 3
    assert report["loss"][1] < report["loss"][0] * 1.5  # two epochs on three questions: the loss does not blow up
    # The exported int8 graph loads as the product loads it, and scores a pair with one number.
    model = ReaderModel(out)
    scores = model.scores("How far is Mosul from Baghdad?", ["Mosul lies about 225 miles north of Baghdad.", "It rained."])
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_a_group_pairs_the_evidence_sentence_with_wrong_choices_and_question_terms() -> None:
    def passage(n: int, text: str) -> Passage:
        return Passage(0, f"d{n}", f"d{n}:0000", "Iraq troops", text, 0.0)

    sentences = [
        "Carter said 560 troops would help retake Mosul from the militants.",  # the evidence's sentence
        "Officials said 560 was a number that had been discussed for weeks.",  # holds the gold too
        "An earlier deployment of 250 troops arrived in Iraq last spring.",  # names a wrong choice
        "The troops will advise Iraqi forces near Mosul and Qayyarah.",
        "Weather in Baghdad was hot and dry on Monday afternoon.",
    ]
    found = candidates([passage(n, s) for n, s in enumerate(sentences)])
    question = TrainingQuestion(
        "q",
        "How many additional troops did Carter announce?",
        "560",
        None,
        candidates=found,
        labels=[True, True, False, False, False],
        lexical=[0.3, 0.5, 0.4, 0.4, 0.0],
        choices=("560", "1000", "250", "5000"),
        evidence="Carter announced that 560 more troops would help retake Mosul.",
    )
    config = TrainingConfig(group=4, positives_per_question=1)
    ((asked, texts),) = training_groups([question], config)
    assert asked == question.question and len(texts) == 4
    assert texts[0].startswith("Carter said 560")  # the evidence chooses among the gold sentences, not term overlap
    assert texts[1].startswith("An earlier deployment of 250")  # the wrong choice first among the negatives
    assert not any("Officials said 560" in t for t in texts[1:])  # a sentence holding the gold is never a negative


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


@pytest.mark.model
def test_weights_alone_are_refitted_on_a_kept_pair_model(tmp_path: Path) -> None:
    data = tmp_path / "weeks"
    _week(data)
    config = TrainingConfig(weight_questions=10, weight_every=2)
    out = tmp_path / "reader"
    report = train_reader(
        data, out, base=default_model_path(), dev=None, config=config, model_from=bundled_model(), progress=lambda _: None
    )
    for name in MODEL_FILES:  # the bundled pair model, byte for byte: no training happened
        assert (out / name).read_bytes() == (bundled_model() / name).read_bytes(), name
    weights = ReaderWeights.read(out / "reader.json")
    assert len(weights.coef) == len(FEATURES) and report["model_from"] == str(bundled_model()) and report["loss"] is None


def test_questions_are_also_read_against_other_weeks_candidates() -> None:
    def question(qid: str, week: str, text: str, sentence: str) -> TrainingQuestion:
        passage = Passage(0, qid, f"{qid}:0000", "News", sentence, 0.0)
        return TrainingQuestion(qid, text, "gold", None, candidates=candidates([passage]), week=week)

    dam = question("dam", "w1", "Why did the Kallaru dam fail?", "The Kallaru dam failed after heavy rain in the valley.")
    same_week = question("bridge", "w1", "Who built the Kallaru bridge?", "The Kallaru dam and bridge were built by Maria Lopez.")
    similar = question("flood", "w2", "How high did the river rise?", "The river rose as the Kallaru dam overflowed its banks.")
    other = question("vote", "w3", "Who won the vote in Lagos?", "Voters in Lagos chose a new governor on Saturday morning.")
    pools = [dam, same_week, similar, other]
    pairs = list(other_pools(pools, similar=1, random_pools=1, seed=13))
    assert all(q.week != o.week for q, o in pairs)  # never a question of its own week
    assert [o.id for q, o in pairs if q.id == "dam"][0] == "flood"  # the most similar first, then a random one
    # A question sharing no word with any other week's candidates has no similar pool, only a random one.
    assert len([o for q, o in pairs if q.id == "vote"]) == 1
    assert all(len([o for q, o in pairs if q.id == qid]) in (1, 2) for qid in ("dam", "bridge", "flood"))
    assert list(other_pools(pools, similar=0, random_pools=0, seed=13)) == []


def test_the_threshold_refuses_at_most_the_allowed_share_of_answerable_questions() -> None:
    present = [0.30, 0.02, 0.11, 0.07, 0.25, 0.09, 0.40, 0.05, 0.18, 0.13]
    for share, refused in ((0.0, 0), (0.1, 1), (0.25, 2), (0.5, 5)):
        threshold = calibrated(present, share)
        assert sum(p < threshold for p in present) == refused  # exactly the allowed number, not fewer
    assert calibrated(present, 0.1) == 0.05  # the second lowest: the lowest alone is refused
    assert calibrated([], 0.05) > 0.0


def test_the_final_set_is_never_trained_on(tmp_path: Path) -> None:
    """Questions of a final-set week (docs/selection.md) are left out of the training pools."""
    from retrieval.evaluation.selection import FINAL_WEEKS
    from retrieval.evaluation.training import question_pools

    source = Path(__file__).resolve().parent / "data" / "realtimeqa"
    final = sorted(FINAL_WEEKS)[0]
    for name in ("qa", "gcs"):
        shutil.copy(source / f"20990101_{name}.jsonl", tmp_path / f"20990101_{name}.jsonl")
        shutil.copy(source / f"20990108_{name}.jsonl", tmp_path / f"{final}_{name}.jsonl")
    weeks = {pool.week for pool in question_pools(tmp_path, TrainingConfig())}
    assert weeks == {"20990101"}
