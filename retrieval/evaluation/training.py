"""Training newsbot's reader on the RealTimeQA training weeks: `newsbot train-reader`.

Distant supervision, as the eval README describes: for each training question, the sentences of
its own search results (cleaned, split and enumerated exactly as at answer time) are candidates;
a sentence holding the gold answer is evidence, the sentences that do not are negatives, and a
question whose gold occurs in none of its articles gives only negatives (which is how the gate
learns to say "not here").

Steps, each seeded:
1. `question_pools`: candidates per question, the 64 sharing most question terms, with the quiz's
   choices and evidence sentence;
2. `training_groups`: one answering sentence against `group - 1` that do not. Of the sentences
   holding the gold, the one closest to the quiz author's evidence sentence answers (the evidence's
   own words are never shown: their style differs from the articles', and a model learns the style);
   the negatives are sentences that name a wrong choice of the quiz, then those sharing most of the
   question's terms;
3. `train_pair_model`: a cross-encoder, the bundled MiniLM's first `layers` layers read
   "question [SEP] sentence | headline", mean-pooled, with a fresh linear head (at its own learning
   rate), trained listwise: softmax cross-entropy of the answering sentence against its group;
4. `export_pair_model`: torch.onnx export with the pooling and the head in the graph, int8 dynamic
   quantization with onnxruntime;
5. `fit_weights`: logistic regressions over the pair score, the bundled embedding model's cosine of
   sentence and question, and the cheap features (`read/reader.py`), on whole weeks the pair model
   never saw, with the refusal threshold calibrated on the same weeks.
The dev weeks (`--dev`) are only read for the model card's figures: nothing is chosen on them.
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
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.evaluation.datasets import corpus_record, load_jsonl, realtimeqa_questions, realtimeqa_weeks
from retrieval.evaluation.matching import normalise
from retrieval.evaluation.selection import development_weeks
from retrieval.index.embedding import Embedder, OnnxEmbedder
from retrieval.index.encoder import OnnxEncoder, export_int8, mean_pool
from retrieval.index.keywords import tokenize
from retrieval.ingest.articles import ArticleError, article_from_record
from retrieval.ingest.chunking import chunk_article
from retrieval.passages import Passage, Query
from retrieval.read.candidates import Candidate, candidates, lexical_share, sentence_features
from retrieval.read.reader import FEATURES, ReaderWeights, chosen, feature_matrix, pair_text

logger = logging.getLogger(__name__)

# The files of a reader's pair model (the rest of its folder is the feature weights and the reports).
MODEL_FILES = ("model.onnx", "tokenizer.json", "encoder.json")
CURVE = tuple(round(0.05 * n, 2) for n in range(1, 20))  # the thresholds a refusal curve shows


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained reader; written into the model card."""

    seed: int = 13
    candidates_per_question: int = 64
    positives_per_question: int = 2  # training groups a question gives at most (each with another answering sentence)
    group: int = 8  # candidates a group: one that answers, the rest not
    typed_negatives: int = 2  # of the negatives, at most this many name a wrong choice of the quiz
    epochs: float = 1.5
    questions_per_step: int = 4
    learning_rate: float = 8e-5  # the MiniLM body
    head_learning_rate: float = 2e-3  # the fresh linear head
    warmup_ratio: float = 0.1
    layers: int = 3  # of MiniLM's 6: half the cost a pair at answer time
    max_tokens: int = 64
    pool: int = 24  # candidates read a question: the prior's best (`read/reader.py`)
    # Every `weight_every`-th week is held out of the pair model's training; the feature weights are
    # fitted and the refusal threshold calibrated on it: on questions the model learned, its score
    # looks far surer than it is on new ones.
    weight_every: int = 6
    weight_questions: int = 800  # of those weeks' questions, at most this many fit the weights
    # The threshold refuses at most this share of the held-out questions whose gold is among the read candidates.
    # Through the whole pipeline on twelve held-out weeks, thresholds refusing 0.045 and 0.064 of them refused
    # 0.028 and 0.042 of the own-article questions, and 0.497 and 0.583 of those from outside the collection
    # (bench/RESULTS.md, "The reader on by default").
    max_false_refusal: float = 0.06
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
    choices: tuple[str, ...] = ()
    evidence: str = ""

    @property
    def answerable(self) -> bool:
        return any(self.labels)


def gold_pattern(gold: str) -> re.Pattern[str]:
    """The gold answer as a whole word or phrase ("Italy", not "Italy" inside "Italyan")."""
    return re.compile(r"(?<!\w)" + re.escape(normalise(gold)) + r"(?!\w)")


def question_pools(folder: Path, config: TrainingConfig) -> Iterator[TrainingQuestion]:
    """Each question of every week in `folder` but the final set's, with its candidates (see the module docstring)."""
    weeks = realtimeqa_weeks(folder)
    kept = development_weeks(weeks)
    if len(kept) < len(weeks):
        logger.info("%d weeks of the final set left out of training (docs/selection.md)", len(weeks) - len(kept))
    for week in kept:
        results = {str(line["question_id"]): line.get("search_result") or [] for line in load_jsonl(folder / f"{week}_gcs.jsonl")}
        quiz = {str(line["question_id"]): line for line in load_jsonl(folder / f"{week}_qa.jsonl")}
        for question in realtimeqa_questions(folder, week):
            passages = list(_passages(results.get(question.id, []), config))
            pool = _pool(question.id, question.question, question.golds[0], question.as_of, passages, config)
            pool.week = week
            record = quiz.get(question.id, {})
            pool.choices = tuple(str(c) for c in record.get("choices") or ())
            # The evidence is a page extract: tags and all.
            pool.evidence = re.sub(r"<[^>]+>", " ", str(record.get("evidence") or ""))
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


def _shared_words(a: str, b: str) -> float:
    """The share of `a`'s words that `b` holds too."""
    words = set(re.findall(r"\w+", a.lower()))
    return len(words & set(re.findall(r"\w+", b.lower()))) / (len(words) or 1)


def training_groups(pools: list[TrainingQuestion], config: TrainingConfig) -> list[tuple[str, list[str]]]:
    """(question, [answering candidate, then `group - 1` that do not]) for each answerable question (see the module docstring)."""
    rng = random.Random(config.seed)
    groups = []
    for q in pools:
        golds = [i for i, label in enumerate(q.labels) if label]
        negatives = [i for i, label in enumerate(q.labels) if not label]
        if not golds or not negatives:
            continue
        # The gold sentence the quiz's evidence names (most of its words), else the one sharing most question terms.
        golds.sort(key=lambda i: (-_shared_words(q.evidence, q.candidates[i].sentence) if q.evidence else 0.0, -q.lexical[i]))
        wrong = [gold_pattern(c) for c in q.choices if normalise(c) and normalise(c) != normalise(q.gold)]
        typed = [i for i in negatives if any(p.search(normalise(q.candidates[i].sentence)) for p in wrong)]
        lexical = sorted(negatives, key=lambda i: -q.lexical[i])[: 2 * config.group]
        for positive in golds[: config.positives_per_question]:
            rng.shuffle(lexical)
            picked = list(dict.fromkeys(typed[: config.typed_negatives] + lexical))[: config.group - 1]
            while len(picked) < config.group - 1:
                picked.append(rng.choice(negatives))
            groups.append((q.question, [pair_text(q.candidates[i]) for i in [positive, *picked]]))
    rng.shuffle(groups)
    return groups


def _pair_model(base: Path, layers: int) -> Any:
    """The bundled MiniLM's first `layers` layers, mean-pooled, with a fresh linear head: one score a pair."""
    import torch
    from transformers import AutoModel

    class PairModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = AutoModel.from_pretrained(str(base), local_files_only=True)
            self.body.encoder.layer = self.body.encoder.layer[:layers]
            self.body.config.num_hidden_layers = layers
            self.head = torch.nn.Linear(self.body.config.hidden_size, 1)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.body(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            return self.head(mean_pool(hidden, attention_mask))

    return PairModel()


def _tokenize_pairs(tokenizer: Any, pairs: list[tuple[str, str]], max_tokens: int) -> dict[str, Any]:
    """As the product reads a pair (`OnnxEncoder`): longest-first truncation, segment ids all 0."""
    import torch

    encoded = tokenizer(
        [q for q, _ in pairs], [t for _, t in pairs], truncation=True, max_length=max_tokens, padding=True, return_tensors="pt"
    )
    encoded["token_type_ids"] = torch.zeros_like(encoded["input_ids"])
    return dict(encoded)


def train_pair_model(groups: list[tuple[str, list[str]]], base: Path, config: TrainingConfig) -> tuple[Any, Any]:
    """Fine-tune the pair model on the groups (listwise: the answering candidate against its group); (model, tokenizer)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = _pair_model(base, config.layers)
    optimiser = torch.optim.AdamW(
        [
            {"params": model.body.parameters(), "lr": config.learning_rate},
            {"params": model.head.parameters(), "lr": config.head_learning_rate},
        ],
        weight_decay=0.01,
    )
    steps = max(1, int(math.ceil(len(groups) / config.questions_per_step) * config.epochs))
    warmup = max(1, int(steps * config.warmup_ratio))

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to 0
        return (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / max(1, steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    rng = random.Random(config.seed)
    model.train()
    bar = tqdm(total=steps, desc="training the reader", unit="step", disable=None)
    losses: list[float] = []
    step = 0
    while step < steps:
        order = list(range(len(groups)))
        rng.shuffle(order)
        for start in range(0, len(order), config.questions_per_step):
            if step >= steps:
                break
            batch = [groups[i] for i in order[start : start + config.questions_per_step]]
            pairs = [(question, text) for question, texts in batch for text in texts]
            logits = model(**_tokenize_pairs(tokenizer, pairs, config.max_tokens)).view(len(batch), config.group)
            loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long))
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.item()))
            step += 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
                logger.info("step %d/%d, loss %.3f", step, steps, np.mean(losses[-50:]))
    bar.close()
    model.eval()
    model.losses = (round(float(np.mean(losses[:50])), 3), round(float(np.mean(losses[-50:])), 3))
    return model, tokenizer


def export_pair_model(model: Any, tokenizer: Any, out: Path, max_tokens: int) -> None:
    """`model.onnx` (int8), `tokenizer.json` and `encoder.json` (dimension 1: a score) for `OnnxEncoder`.

    torch.onnx traces the model with the pooling and the head inside the graph (`export_int8`); the
    weights are int8. No model hub, no `optimum`.
    """
    sample = _tokenize_pairs(
        tokenizer, [("a question to trace?", "a sentence to trace the graph with"), ("q?", "another")], max_tokens
    )
    export_int8(model, sample, out, "score")
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    (out / "encoder.json").write_text(json.dumps({"dimension": 1, "max_tokens": max_tokens}) + "\n")


@dataclass
class ReadQuestion:
    """A question's candidates as the reader reads them: the prior's `pool` best, their feature rows and labels."""

    question: TrainingQuestion
    rows: np.ndarray
    labels: np.ndarray


def read_pool(
    question: TrainingQuestion, scorer: OnnxEncoder, embedder: Embedder, pool: int, found: list[Candidate] | None = None
) -> ReadQuestion:
    """The reader's feature rows for the candidates of `found` (the question's own by default), as at answer time."""
    found = question.candidates if found is None else found
    if not found:
        return ReadQuestion(question, np.zeros((0, len(FEATURES)), dtype=np.float32), np.zeros(0, dtype=bool))
    passages = list({c.passage.chunk_id: c.passage for c in found}.values())
    weights = pool_term_weights(question.question, passages)
    measured = sentence_features(Query(question.question, as_of=question.as_of), found, np.zeros(len(found)), weights)
    keep = chosen(measured, pool)
    read = [found[i] for i in keep]
    scores = scorer.embed([(question.question, pair_text(c)) for c in read])[:, 0]
    vectors = embedder.embed([question.question] + [c.sentence for c in read])
    dense = [replace(measured[i], dense=float(v @ vectors[0])) for i, v in zip(keep, vectors[1:])]
    pattern = gold_pattern(question.gold)
    labels = np.asarray([bool(pattern.search(normalise(c.sentence))) for c in read])
    return ReadQuestion(question, feature_matrix(dense, scores), labels)


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


# What each regression leaves out, as chosen on twelve held-out training weeks through the whole pipeline
# (bench/RESULTS.md, "The reader on by default"). The cosine of sentence and question tells whether the
# articles speak of what was asked, not which sentence answers it: in the gate it refused 0.497 of the
# questions from outside the collection against 0.303 without it (false refusal 0.028 and 0.014), in the
# ranking it quoted the gold for 71 of 144 own-article questions against 79. Recency orders answers; it never admits one.
RANKING_LEFT_OUT = ("dense",)
GATE_LEFT_OUT = ("recency",)


def fit_weights(read: list[ReadQuestion], elsewhere: list[ReadQuestion]) -> dict[str, Any]:
    """Two logistic regressions of "holds the gold" on the reader's features, over the read candidates.

    The questions should be ones the pair model was not trained on (`split_for_weights`).
    `coef` orders the answering sentences, so it is fitted on questions read against their own
    candidates (recency included: of two reports, the one near the as-of date is quoted first).
    `gate_coef` decides whether any sentence answers at all: it also learns from the questions read
    against another week's candidates (`elsewhere`), as retrieval from a whole collection often brings
    passages about something else. Each leaves out what the measurement says it should
    (`RANKING_LEFT_OUT`, `GATE_LEFT_OUT`).
    """
    rows = np.concatenate([r.rows for r in read])
    labels = np.concatenate([r.labels for r in read]).astype(np.float32)
    ranking = _fit(rows, labels, RANKING_LEFT_OUT)
    gate = _fit(
        np.concatenate([rows, *(r.rows for r in elsewhere)]),
        np.concatenate([labels, *(r.labels.astype(np.float32) for r in elsewhere)]),
        GATE_LEFT_OUT,
    )
    return {
        "features": list(FEATURES),
        "coef": ranking[0],
        "intercept": ranking[1],
        "gate_coef": gate[0],
        "gate_intercept": gate[1],
        "questions": len(read),
        "candidates": int(len(labels)),
        "elsewhere_reads": len(elsewhere),
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


def _fitted(weights: dict[str, Any], threshold: float = 0.0, pool: int = 24) -> ReaderWeights:
    return ReaderWeights(
        tuple(weights["coef"]), weights["intercept"], tuple(weights["gate_coef"]), weights["gate_intercept"], threshold, pool
    )


def figures(
    read: list[ReadQuestion], elsewhere: list[ReadQuestion], weights: ReaderWeights, max_false_refusal: float
) -> dict[str, Any]:
    """How often the best-read sentence holds the gold, and the refusal curve: what a threshold refuses of each kind.

    `read`: questions read against their own candidates; `elsewhere`: read against another week's
    (`other_pools`), whose best gate probability should be under the threshold. The threshold is the
    highest that refuses at most `max_false_refusal` of the questions whose gold is among the read candidates
    (`calibrated`).
    """
    top1 = top2 = prior_top1 = n = 0
    present: list[float] = []
    absent: list[float] = []
    for r in read:
        if not len(r.rows):
            absent.append(0.0)
            continue
        gate = float(weights.evidence(r.rows).max())
        if r.labels.any():
            order = np.argsort(-weights.probability(r.rows))
            n += 1
            top1 += bool(r.labels[order[0]])
            top2 += bool(r.labels[order[:2]].any())
            prior_top1 += bool(r.labels[int(np.argmax(r.rows[:, FEATURES.index("coverage")]))])
            present.append(gate)
        else:
            absent.append(gate)
    other = [float(weights.evidence(r.rows).max()) if len(r.rows) else 0.0 for r in elsewhere]

    def below(values: list[float], t: float) -> float | None:
        return round(float(np.mean(np.asarray(values) < t)), 3) if values else None

    threshold = calibrated(present, max_false_refusal)
    shown = sorted({*CURVE, threshold})
    return {
        "questions_with_gold": n,
        "top1": round(top1 / max(n, 1), 3),
        "top2": round(top2 / max(n, 1), 3),
        "coverage_top1": round(prior_top1 / max(n, 1), 3),
        "best_probability_median_gold_present": round(float(np.median(present)), 3) if present else None,
        "best_probability_median_gold_absent": round(float(np.median(absent)), 3) if absent else None,
        "refusal_curve": [
            {
                "threshold": t,
                "false_refusal": below(present, t),
                "refused_absent": below(absent, t),
                "refused_other_week": below(other, t),
            }
            for t in shown
        ],
        "threshold": threshold,
    }


def calibrated(present: list[float], max_false_refusal: float) -> float:
    """The highest threshold that refuses at most `max_false_refusal` of the questions whose best probabilities are `present`.

    Exact, not read off a grid: the k-th lowest of them, k the refusals allowed (rounded down to 4 places,
    so that it still admits that question).
    """
    if not present:
        return CURVE[0]
    ranked = sorted(present)
    allowed = int(max_false_refusal * len(ranked))
    return math.floor(ranked[min(allowed, len(ranked) - 1)] * 1e4) / 1e4


def _elsewhere(
    pools: list[TrainingQuestion], scorer: OnnxEncoder, embedder: Embedder, config: TrainingConfig
) -> list[ReadQuestion]:
    """Each question read against the most similar other week's candidates and a random one's."""
    return [
        read_pool(q, scorer, embedder, config.pool, other.candidates)
        for q, other in other_pools(pools, similar=1, random_pools=1, seed=config.seed)
    ]


def train_reader(
    data: Path,
    out: Path,
    *,
    base: Path,
    dev: Path | None = None,
    config: TrainingConfig | None = None,
    model_from: Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole recipe: pools, pair model, export, feature weights and threshold; writes the model folder `out`.

    `model_from`: a trained reader's folder whose pair model is kept as it is: only the feature weights
    are fitted (the held-out weeks are the same, as the split depends only on the data and the config).
    """
    config = config or TrainingConfig()
    started = time.perf_counter()
    pools = list(question_pools(data, config))
    if config.limit:
        pools = pools[: config.limit]
    progress(f"{len(pools)} training questions, {sum(q.answerable for q in pools)} with the gold among their candidates")
    model_pools, weight_pools = split_for_weights(pools, config.weight_every)
    losses = None
    if model_from is None:
        groups = training_groups(model_pools, config)
        progress(
            f"{len(groups)} training groups from {len(model_pools)} questions; training the pair model "
            f"({len(weight_pools)} questions of every {config.weight_every}th week held out for the feature weights)"
        )
        model, tokenizer = train_pair_model(groups, base, config)
        losses = model.losses
        progress(f"pair model trained in {time.perf_counter() - started:.0f} s (loss {losses[0]} -> {losses[1]}); exporting")
        export_pair_model(model, tokenizer, out, config.max_tokens)
    else:
        progress(f"keeping the pair model of {model_from}; fitting the feature weights on {len(weight_pools)} questions")
        out.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            if (model_from / name).resolve() != (out / name).resolve():
                shutil.copyfile(model_from / name, out / name)
    scorer = OnnxEncoder(out, threads=2)
    embedder = OnnxEmbedder(base, batch_size=16, threads=2)  # as the product embeds (setting embedding_batch_size)
    held = [q for q in weight_pools if q.candidates]
    random.Random(config.seed).shuffle(held)
    held = held[: config.weight_questions]
    read = [read_pool(q, scorer, embedder, config.pool) for q in held]
    elsewhere = _elsewhere(held, scorer, embedder, config)
    weights = fit_weights(read, elsewhere)
    progress(f"feature weights: {dict(zip(FEATURES, weights['coef']))}, gate: {dict(zip(FEATURES, weights['gate_coef']))}")
    calibration = figures(read, elsewhere, _fitted(weights), config.max_false_refusal)
    progress(f"held-out training weeks: {calibration}")
    report: dict[str, Any] = {
        "config": asdict(config),
        "data": {
            "folder": str(data),
            "weeks": len(realtimeqa_weeks(data)),
            "questions": len(pools),
            "model_questions": len(model_pools),
            "weight_questions": len(weight_pools),
            "weight_weeks": sorted({q.week for q in weight_pools}),
        },
        "model_from": str(model_from) if model_from else None,
        "loss": losses,
        "weights": weights,
        "held_out": calibration,
    }
    shipped = _fitted(weights, calibration["threshold"], config.pool)
    if dev is not None:
        dev_pools = list(question_pools(dev, config))
        dev_read = [read_pool(q, scorer, embedder, config.pool) for q in dev_pools]
        report["dev"] = figures(dev_read, _elsewhere(dev_pools, scorer, embedder, config), shipped, config.max_false_refusal)
        progress(f"dev (reported, not chosen on): {report['dev']}")
    report["seconds"] = round(time.perf_counter() - started, 1)
    reader = {key: weights[key] for key in ("features", "coef", "intercept", "gate_coef", "gate_intercept")}
    (out / "reader.json").write_text(json.dumps({**reader, "threshold": shipped.threshold, "pool": config.pool}, indent=1) + "\n")
    (out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
