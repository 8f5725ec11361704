"""Training newsbot's reader on the RealTimeQA training weeks: `newsbot train-reader`.

Distant supervision, as the eval README describes: for each training question, the sentences of
its own search results (cleaned, split and enumerated exactly as at answer time) are candidates;
a sentence holding the gold answer is evidence, the best-matching sentences that do not hold it
are hard negatives, and a question whose gold occurs in none of its articles gives only
negatives (which is how the reader learns to say "not here").

Steps, each seeded:
1. `question_pools`: candidates per question, the 48 sharing most question terms;
2. `train_encoder`: the bundled MiniLM fine-tuned with sentence-transformers' trainer
   (MultipleNegativesRankingLoss: question -> answering sentence, one hard negative, in-batch negatives);
3. `export_encoder`: torch.onnx export with mean pooling and normalisation in the graph,
   int8 dynamic quantization with onnxruntime;
4. `fit_weights`: logistic regression over the reader's features (`read/reader.py`).
Selection figures come from the dev weeks (never trained on): `dev_figures`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.evaluation.datasets import corpus_record, load_jsonl, realtimeqa_questions, realtimeqa_weeks
from retrieval.evaluation.metrics import normalise
from retrieval.index.encoder import OnnxEncoder, export_encoder
from retrieval.index.keywords import tokenize
from retrieval.ingest.articles import ArticleError, article_from_record
from retrieval.ingest.chunking import chunk_article
from retrieval.passages import Passage, Query
from retrieval.read.candidates import Candidate, candidates, lexical_share, sentence_features
from retrieval.read.reader import FEATURES, ReaderWeights, feature_matrix
from retrieval.read.vectors import reader_text

logger = logging.getLogger(__name__)

# The files of a reader's encoder (the rest of its folder is the feature weights and the reports).
ENCODER_FILES = ("model.onnx", "tokenizer.json", "encoder.json")
MAX_FALSE_REFUSAL = 0.10  # the bound on refusing answerable questions
DEFAULT_THRESHOLD = 0.10


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained reader; written into the model card."""

    seed: int = 13
    candidates_per_question: int = 48
    positives_per_question: int = 3
    negatives_pool: int = 8
    epochs: float = 2.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    max_tokens: int = 96
    # Every `weight_every`-th week is held out of the encoder's training and fits the feature weights:
    # on questions the encoder learned, its cosine looks far surer than it is on new ones.
    weight_every: int = 6
    weight_questions: int = 800  # of those weeks' questions, at most this many fit the weights
    chunk_size: int = 800
    chunk_overlap: int = 150
    limit: int = 0  # questions at most (0: all); for a quick smoke run


@dataclass
class TrainingQuestion:
    """One question with its gold answer and the candidate sentences of its own search results."""

    id: str
    question: str
    gold: str
    as_of: date | None
    candidates: list[Candidate] = field(default_factory=list)
    week: str = ""
    labels: list[bool] = field(default_factory=list)
    lexical: list[float] = field(default_factory=list)

    @property
    def answerable(self) -> bool:
        return any(self.labels)


def gold_pattern(gold: str) -> re.Pattern[str]:
    """The gold answer as a whole word or phrase ("Italy", not "Italy" inside "Italyan")."""
    return re.compile(r"(?<!\w)" + re.escape(normalise(gold)) + r"(?!\w)")


def question_pools(folder: Path, config: TrainingConfig) -> Iterator[TrainingQuestion]:
    """Each question of every week in `folder`, with its candidates (see the module docstring)."""
    for week in realtimeqa_weeks(folder):
        results = {str(line["question_id"]): line.get("search_result") or [] for line in load_jsonl(folder / f"{week}_gcs.jsonl")}
        for question in realtimeqa_questions(folder, week):
            passages = list(_passages(results.get(question.id, []), config))
            pool = _pool(question.id, question.question, question.golds[0], question.as_of, passages, config)
            pool.week = week
            yield pool


def split_for_weights(pools: list[TrainingQuestion], every: int) -> tuple[list[TrainingQuestion], list[TrainingQuestion]]:
    """(the encoder's questions, the feature weights' questions): every `every`-th week goes to the weights.

    Whole weeks, so that no news event of a weights question was seen by the encoder. With fewer weeks
    than `every` (a smoke run), every `every`-th question instead.
    """
    weeks = sorted({q.week for q in pools})
    if len(weeks) >= every:
        held = set(weeks[every - 1 :: every])
        encoder, weights = [q for q in pools if q.week not in held], [q for q in pools if q.week in held]
    else:
        encoder, weights = [q for i, q in enumerate(pools) if i % every != every - 1], pools[every - 1 :: every]
    if not any(q.answerable for q in weights) or not any(q.answerable for q in encoder):
        logger.warning("too few questions to hold any out for the feature weights: both are fitted on all of them")
        return pools, pools
    return encoder, weights


def _passages(search_result: list[dict[str, Any]], config: TrainingConfig) -> Iterator[Passage]:
    """The chunks of a question's search results as passages, as retrieval would return them."""
    seen: set[str] = set()
    for raw in search_result:
        url = raw.get("url")
        if not url or url in seen or not isinstance(raw.get("text"), str) or not raw["text"].strip():
            continue
        seen.add(url)
        try:
            article = article_from_record(corpus_record(raw), path=Path("search_result.jsonl"), line=None)
        except ArticleError:
            continue
        published = article.published.isoformat() if article.published else None
        for chunk in chunk_article(article, config.chunk_size, config.chunk_overlap):
            cid = f"{article.doc_id}:{chunk.index:04d}"
            yield Passage(0, article.doc_id, cid, article.title, chunk.text, 0.0, published=published)


def _pool(
    qid: str, text: str, gold: str, as_of: date | None, passages: list[Passage], config: TrainingConfig
) -> TrainingQuestion:
    found = candidates(passages)
    question = TrainingQuestion(qid, text, gold, as_of)
    if not found:
        return question
    weights = pool_term_weights(text, passages)
    lexical = lexical_share(found, weights)
    keep = sorted(sorted(range(len(found)), key=lambda i: -lexical[i])[: config.candidates_per_question])
    pattern = gold_pattern(gold)
    question.candidates = [found[i] for i in keep]
    for order, candidate in enumerate(question.candidates):
        candidate.order = order
    question.lexical = [lexical[i] for i in keep]
    question.labels = [bool(pattern.search(normalise(c.sentence))) for c in question.candidates]
    return question


def pool_term_weights(question: str, passages: list[Passage]) -> dict[str, float]:
    """The question's terms weighted by rarity among the pool's passages (the collection's idf at answer time)."""
    df = Counter(term for passage in passages for term in set(tokenize(passage.text)))
    n = len(passages)
    return {term: math.log(1 + (n + 1) / (df.get(term, 0) + 0.5)) for term in dict.fromkeys(tokenize(question))}


def encoder_examples(pools: list[TrainingQuestion], config: TrainingConfig) -> list[dict[str, str]]:
    """(question, answering sentence, hard negative) triplets: the best-matching gold sentences, each with a
    best-matching sentence of the same articles that does not hold the gold."""
    rng = random.Random(config.seed)
    rows = []
    for q in pools:
        ranked = sorted(range(len(q.candidates)), key=lambda i: -q.lexical[i])
        positives = [i for i in ranked if q.labels[i] and q.lexical[i] > 0][: config.positives_per_question]
        negatives = [i for i in ranked if not q.labels[i]][: config.negatives_pool]
        if not positives or not negatives:
            continue
        rng.shuffle(negatives)
        for n, i in enumerate(positives):
            positive, negative = q.candidates[i], q.candidates[negatives[n % len(negatives)]]
            rows.append(
                {
                    "anchor": q.question,
                    "positive": reader_text(positive.sentence, positive.passage.title),
                    "negative": reader_text(negative.sentence, negative.passage.title),
                }
            )
    rng.shuffle(rows)
    return rows


def train_encoder(rows: list[dict[str, str]], base: Path, out: Path, config: TrainingConfig) -> Path:
    """Fine-tune the sentence-transformers model at `base` on the triplets; the trained model's folder."""
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    model = SentenceTransformer(str(base), device="cpu", local_files_only=True)
    model.max_seq_length = config.max_tokens
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_ratio=config.warmup_ratio,
        # Two sentences of one question in a batch would be each other's false negatives.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="no",
        logging_steps=20,
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=MultipleNegativesRankingLoss(model),
    )
    trainer.train()
    trained = out / "sentence-transformer"
    model.save(str(trained))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return trained


def features(
    question: TrainingQuestion, encoder: OnnxEncoder, pool: list[Candidate] | None = None, vectors: np.ndarray | None = None
) -> np.ndarray:
    """The reader's feature rows for the candidates of `pool` (the question's own by default), measured as at answer time.

    `vectors`: the pool's candidate vectors, when already encoded; else they are encoded in one batch with
    the question (as the shipped reader's weights were fitted: int8 activations are quantised per batch,
    so batching moves the figures a little, by one dev question of 144 in the pipeline).
    """
    found = question.candidates if pool is None else pool
    if not found:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    if vectors is None:
        encoded = encoder.embed([question.question] + [reader_text(c.sentence, c.passage.title) for c in found])
        asked, vectors = encoded[0], encoded[1:]
    else:
        asked = encoder.embed([question.question])[0]
    similarities = vectors @ asked
    passages = list({c.passage.chunk_id: c.passage for c in found}.values())
    weights = pool_term_weights(question.question, passages)
    measured = sentence_features(Query(question.question, as_of=question.as_of), found, similarities, weights)
    return feature_matrix(measured, similarities)


def candidate_vectors(found: list[Candidate], encoder: OnnxEncoder) -> np.ndarray:
    """The reader's vector of each candidate sentence."""
    return encoder.embed([reader_text(c.sentence, c.passage.title) for c in found])


def other_pools(
    pools: list[TrainingQuestion], *, similar: int, random_pools: int, seed: int
) -> Iterator[tuple[TrainingQuestion, TrainingQuestion]]:
    """(question, another week's question) pairs: the question is to be read against the other's candidates.

    Retrieval answers from the whole collection, so a question's passages are not all about it: some
    tell of the same subject in another week (`similar`: the other weeks' questions whose candidates
    hold the most of its term weight), some of nothing it asks (`random_pools`, drawn with `seed`).
    Read against them, the question has (almost always) no answer: the gate should refuse it.
    """
    rng = random.Random(seed)
    others = [q for q in pools if q.candidates]
    holders: dict[str, list[int]] = {}
    for n, other in enumerate(others):
        for term in frozenset().union(*(c.terms for c in other.candidates)):
            holders.setdefault(term, []).append(n)
    for q in others:
        elsewhere = [n for n, o in enumerate(others) if o.week != q.week]
        if not elsewhere:
            continue
        shared: dict[int, float] = {}
        for term, weight in pool_term_weights(q.question, [c.passage for c in q.candidates]).items():
            for n in holders.get(term, ()):
                shared[n] = shared.get(n, 0.0) + weight
        ranked = sorted((n for n in shared if others[n].week != q.week), key=lambda n: (-shared[n], n))
        for n in ranked[:similar]:
            yield q, others[n]
        for n in rng.sample(elsewhere, min(random_pools, len(elsewhere))):
            yield q, others[n]


def fit_weights(pools: list[TrainingQuestion], encoder: OnnxEncoder, config: TrainingConfig) -> dict[str, Any]:
    """Two logistic regressions of "holds the gold" on the reader's features, over at most `weight_questions` questions.

    The questions should be ones the encoder was not trained on (`split_for_weights`).

    `coef` orders the answering sentences (recency included: of two reports, the one near the
    as-of date is quoted first); `gate_coef` decides whether any sentence answers at all and
    leaves recency out (an old article can answer; a recent one that does not is no evidence).
    """
    chosen = [q for q in pools if q.candidates]
    random.Random(config.seed).shuffle(chosen)
    chosen = chosen[: config.weight_questions]
    rows = np.concatenate([features(q, encoder) for q in chosen])
    labels = np.concatenate([np.asarray(q.labels, dtype=np.float32) for q in chosen])
    return {**weights_from(rows, labels), "questions": len(chosen), "candidates": int(len(labels))}


# Features measured but given no weight. `support` (how many articles repeat a sentence's answer-like
# name) lowered the held-out training questions' top-1 from 0.716 to 0.600: the articles a search
# returns for a question all repeat its subject, which is rarely the answer.
UNWEIGHTED = ("support",)


def weights_from(rows: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The ranking and the gate regressions fitted on feature rows (see `fit_weights`)."""
    ranking = _fit(rows, labels, UNWEIGHTED)
    gate = _fit(rows, labels, (*UNWEIGHTED, "recency"))
    return {
        "features": list(FEATURES),
        "coef": ranking[0],
        "intercept": ranking[1],
        "gate_coef": gate[0],
        "gate_intercept": gate[1],
    }


def _fit(rows: np.ndarray, labels: np.ndarray, left_out: tuple[str, ...]) -> tuple[list[float], float]:
    """A logistic regression on the features not `left_out`, whose coefficients are 0."""
    from sklearn.linear_model import LogisticRegression

    used = [i for i, name in enumerate(FEATURES) if name not in left_out]
    model = LogisticRegression(C=1.0, max_iter=2000).fit(rows[:, used], labels)
    coef = [0.0] * len(FEATURES)
    for i, value in zip(used, model.coef_[0]):
        coef[i] = round(float(value), 6)
    return coef, round(float(model.intercept_[0]), 6)


def dev_figures(
    pools: list[TrainingQuestion], encoder: OnnxEncoder, weights: dict[str, Any], config: TrainingConfig | None = None
) -> dict[str, Any]:
    """On questions never trained on: how often the top sentence holds the gold, and how sure the reader is.

    Beside each question's own candidates, it is read against another week's (`other_pools`): the most
    similar ones and random ones, whose best gate probability should be under the threshold.
    """
    config = config or TrainingConfig()
    fitted = ReaderWeights(
        tuple(weights["coef"]), weights["intercept"], tuple(weights["gate_coef"]), weights["gate_intercept"], threshold=0.0
    )
    top1 = top2 = cosine_top1 = lexical_top1 = n = 0
    present: list[float] = []
    absent: list[float] = []
    for q in pools:
        if not q.candidates:
            absent.append(0.0)
            continue
        rows = features(q, encoder)
        p = fitted.probability(rows)
        gate = fitted.evidence(rows)
        labels = np.asarray(q.labels)
        if labels.any():
            n += 1
            order = np.argsort(-p)
            top1 += bool(labels[order[0]])
            top2 += bool(labels[order[:2]].any())
            cosine_top1 += bool(labels[int(np.argmax(rows[:, 0]))])
            lexical_top1 += bool(labels[int(np.argmax(q.lexical))])
            present.append(float(gate.max()))
        else:
            absent.append(float(gate.max()))
    elsewhere: dict[str, list[float]] = {}
    vectors = {q.id: candidate_vectors(q.candidates, encoder) for q in pools if q.candidates}
    for kind, similar, random_pools in (("similar", 1, 0), ("random", 0, 1)):
        elsewhere[kind] = [
            float(fitted.evidence(features(q, encoder, other.candidates, vectors[other.id])).max())
            for q, other in other_pools(pools, similar=similar, random_pools=random_pools, seed=config.seed)
        ]
    thresholds = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)

    def below(values: list[float], t: float) -> float | None:
        return round(float(np.mean(np.asarray(values) < t)), 3) if values else None

    curve: list[dict[str, float | None]] = [
        {
            "threshold": t,
            "false_refusal": below(present, t),
            "refused_absent": below(absent, t),
            "refused_similar_week": below(elsewhere["similar"], t),
            "refused_random_week": below(elsewhere["random"], t),
        }
        for t in thresholds
    ]
    # The refusal threshold: the highest that refuses at most one answerable question in ten.
    affordable = [t for t, point in zip(thresholds, curve) if (point["false_refusal"] or 0.0) <= MAX_FALSE_REFUSAL]
    return {
        "questions_with_gold": n,
        "top1": round(top1 / max(n, 1), 3),
        "top2": round(top2 / max(n, 1), 3),
        "encoder_cosine_top1": round(cosine_top1 / max(n, 1), 3),
        "lexical_top1": round(lexical_top1 / max(n, 1), 3),
        "best_probability_median_gold_present": round(float(np.median(present)), 3) if present else None,
        "best_probability_median_gold_absent": round(float(np.median(absent)), 3) if absent else None,
        "refusal_curve": curve,
        "threshold": max(affordable, default=thresholds[0]),
    }


def train_reader(
    data: Path,
    out: Path,
    *,
    base: Path,
    dev: Path | None = None,
    config: TrainingConfig | None = None,
    encoder_from: Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole recipe: pools, encoder, export, feature weights, dev figures; writes the model folder `out`.

    `encoder_from`: a trained reader's folder whose encoder is kept as it is: only the feature weights
    are fitted (the held-out weeks are the same, as the split depends only on the data and the config).
    """
    config = config or TrainingConfig()
    started = time.perf_counter()
    pools = list(question_pools(data, config))
    if config.limit:
        pools = pools[: config.limit]
    progress(f"{len(pools)} training questions, {sum(q.answerable for q in pools)} with the gold among their candidates")
    encoder_pools, weight_pools = split_for_weights(pools, config.weight_every)
    work = out / "work"
    if encoder_from is None:
        rows = encoder_examples(encoder_pools, config)
        progress(
            f"{len(rows)} training triplets from {len(encoder_pools)} questions; fine-tuning the encoder "
            f"({len(weight_pools)} questions of every {config.weight_every}th week held out for the feature weights)"
        )
        trained = train_encoder(rows, base, work, config)
        progress(f"encoder trained in {time.perf_counter() - started:.0f} s; exporting to int8 ONNX")
        export_encoder(trained, out, config.max_tokens)
    else:
        progress(f"keeping the encoder of {encoder_from}; fitting the feature weights on {len(weight_pools)} questions")
        out.mkdir(parents=True, exist_ok=True)
        for name in ENCODER_FILES:
            if (encoder_from / name).resolve() != (out / name).resolve():
                shutil.copyfile(encoder_from / name, out / name)
    encoder = OnnxEncoder(out, threads=2)
    weights = fit_weights(weight_pools, encoder, config)
    progress(f"feature weights: {dict(zip(FEATURES, weights['coef']))}")
    report: dict[str, Any] = {
        "config": asdict(config),
        "data": {
            "folder": str(data),
            "weeks": len(realtimeqa_weeks(data)),
            "questions": len(pools),
            "encoder_questions": len(encoder_pools),
            "weight_questions": len(weight_pools),
            "weight_weeks": sorted({q.week for q in weight_pools}),
        },
        "encoder_from": str(encoder_from) if encoder_from else None,
        "weights": weights,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if dev is not None:
        dev_pools = list(question_pools(dev, config))
        report["dev"] = dev_figures(dev_pools, encoder, weights, config)
        progress(f"dev: {report['dev']}")
    # Without dev weeks there is nothing to calibrate on: the shipped reader's threshold is a start.
    threshold = report.get("dev", {}).get("threshold", DEFAULT_THRESHOLD)
    (out / "reader.json").write_text(json.dumps({**weights, "threshold": threshold}, indent=1) + "\n")
    (out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return report
