"""The built-in answer generator: picks the sentences that answer the question and cites each one.

No language model: every word of an answer is a sentence quoted verbatim from a retrieved
passage, so numbers and names are exactly as the articles give them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from retrieval.answer.types import REFUSAL, Citation, Draft
from retrieval.index.embedding import Embedder
from retrieval.index.keywords import tokenize
from retrieval.passages import Passage, Query
from retrieval.read.answertypes import AnswerType, expected_type
from retrieval.read.candidates import (
    NUMBER,
    YEAR,
    Candidate,
    SentenceFeatures,
    candidates,
    lexical_share,
    normal,
    sentence_features,
    term_weights,
)
from retrieval.read.entities import EntityTagger, entity_features, new_entities, short_answer
from retrieval.read.reader import Reader


@dataclass(frozen=True)
class ScoreWeights:
    """How the features make a sentence's score (what the refusal threshold judges) and its rank."""

    dense: float = 0.45
    coverage: float = 0.40
    answer_type: float = 0.15
    # The answer-type feature is half "holds the kind of thing asked for", half "repeated across articles".
    own_type: float = 0.5
    support: float = 0.5
    # Coverage: the sentence's own terms count three times as much as its passage's.
    sentence_terms: float = 0.75
    passage_terms: float = 0.25
    # Recency orders the answering sentences (which is quoted first); it does not decide whether to answer.
    recency: float = 0.1

    def score(self, features: SentenceFeatures) -> float:
        """How well the sentence answers the question."""
        fits = self.own_type * features.answer_type + self.support * features.support
        coverage = self.sentence_terms * features.coverage + self.passage_terms * features.context
        return self.dense * features.dense + self.coverage * coverage + self.answer_type * fits

    def rank(self, features: SentenceFeatures) -> float:
        """The score with the article's recency: which answering sentence is quoted first."""
        return self.score(features) + self.recency * features.recency


DEFAULT_WEIGHTS = ScoreWeights()
# Only the best few sentences can disagree: among the top three, ranked within this share of the best's rank.
# Shares, not differences: the hand-set weights rank from about 0.5 to 0.9, the reader's probabilities from
# about 0.05 to 0.5, and a difference of 0.1 means a near tie for one and a distant second for the other.
CONFLICT_MARGIN = 0.15
# A further sentence joins the answer when it ranks within this much of the best (a difference: with the
# reader's probabilities nearly always, so that an answer quotes its two best sentences) ...
FOLLOWER_MARGIN = 0.15
# ... and does not repeat a chosen one (the two sentences share less than this share of their terms).
SAME_SENTENCE_TERMS = 0.6


@dataclass(frozen=True)
class EntityWeights:
    """How named entities of the expected answer type move the hand-weighted scorer (`read/entities.py`).

    Only the `pool` sentences ranked best are tagged (about 4 ms a sentence). Of those, a sentence that
    names an entity of the kind asked for that the question does not name gains `fits`, and up to
    `near` more the nearer it stands to the question's rare terms; when one of them does, the others
    lose `unfit_figure` (the question asks for a figure or a date) or `unfit_name` (a name). That
    moves the rank (which sentence is quoted) and, times `evidence`, the score the refusal threshold
    judges. When the question's type is known and none of them names one, every score loses
    `mismatch`: evidence that the articles do not hold what was asked (a person, and no new person).
    """

    # Chosen on six development weeks (bench/RESULTS.md, "Answer types and named entities") among four settings,
    # the one with the most own-article questions answered and no more out-of-collection questions answered.
    pool: int = 8
    fits: float = 0.05
    near: float = 0.05
    # Figures and dates are tagged reliably, names less so: a sentence without one counts against less.
    unfit_figure: float = 0.15
    unfit_name: float = 0.05
    evidence: float = 0.0
    mismatch: float = 0.03


DEFAULT_ENTITY_WEIGHTS = EntityWeights()
# The best few sentences tagged for the short answer only: no rank or score moves, so the reply quotes what it
# would quote without entities, and only the short answer is added.
UNWEIGHTED = EntityWeights(fits=0.0, near=0.0, unfit_figure=0.0, unfit_name=0.0, evidence=0.0, mismatch=0.0)


@dataclass(frozen=True)
class ShortAnswer:
    """The one entity of the asked-for type that the quoted sentence names, and what the other tagged sentences say of it."""

    text: str
    # Articles whose tagged sentences name it (the quoted sentence's own included): one source, or several.
    agreeing: int
    # How far the quoted sentence ranks above the best tagged sentence that names another entity of the type
    # and not this one (1.0 when none does): a near rival means the pick between the two was close.
    margin: float
    evidence: float


class ExtractiveGenerator:
    """Scores each sentence of the top passages against the question and quotes the best.

    With a `reader` (the default in the product), a sentence's score is the trained reader's
    probability that it holds the answer (`read/reader.py`). Without one, the score is the
    hand-weighted mix of `ScoreWeights`: its meaning (cosine similarity to the question), its
    words (the share of the question's rare terms it contains, with the surrounding passage
    counting for a little) and whether it holds the kind of thing asked for (a figure for "how
    many", a date for "when", a name for "who"/"where"/"which"), plus recency for the order.
    Either way a sentence that is itself a question is never quoted: it restates what was asked
    (a headline such as "Why did the dam fail?") rather than answering it.
    It is also the evidence gate (`admits`) of every answer generator: no sentence scoring
    `threshold` or more, no answer.
    """

    def __init__(
        self,
        embedder: Embedder,
        term_weight: Callable[[str], float],
        *,
        threshold: float,
        max_sentences: int = 2,
        max_passages: int = 8,
        max_embedded: int = 48,
        weights: ScoreWeights = DEFAULT_WEIGHTS,
        reader: Reader | None = None,
        tagger: EntityTagger | None = None,
        entity_weights: EntityWeights = DEFAULT_ENTITY_WEIGHTS,
        short_answers: bool = True,
    ) -> None:
        self.embedder = embedder
        self.term_weight = term_weight
        self.threshold = threshold
        self.max_sentences = max_sentences
        self.max_passages = max_passages
        self.max_embedded = max_embedded
        self.weights = weights
        self.reader = reader
        self.tagger = tagger
        self.entity_weights = entity_weights
        self.short_answers = short_answers

    def score(self, query: Query, passages: list[Passage]) -> list[Candidate]:
        """Every candidate sentence of the top passages, best first."""
        shown = passages[: self.max_passages]
        if self.reader is not None:
            return self.reader.read(query, shown)
        found = candidates(shown)
        if not found:
            return []
        weights = term_weights(query, self.term_weight)
        if len(found) > self.max_embedded:
            # Only the sentences sharing the most question terms are worth embedding.
            shared = lexical_share(found, weights)
            keep = sorted(range(len(found)), key=lambda i: (-shared[i], i))[: self.max_embedded]
            found = [found[i] for i in sorted(keep)]
        vectors = self.embedder.embed([query.text] + [c.sentence for c in found])
        question_vector, sentence_vectors = vectors[0], vectors[1:]
        similarities = sentence_vectors @ question_vector
        features = sentence_features(query, found, similarities, weights)
        for candidate, found_features in zip(found, features):
            candidate.features = found_features
            candidate.score = self.weights.score(found_features)
            candidate.rank = self.weights.rank(found_features)
        ranked = sorted(found, key=lambda c: c.rank, reverse=True)
        kind = expected_type(query.text)
        if self.tagger is not None and kind is not None:
            ranked = self._weigh_entities(query, kind, ranked, weights)
        return ranked

    def _weigh_entities(
        self, query: Query, kind: AnswerType, ranked: list[Candidate], weights: dict[str, float]
    ) -> list[Candidate]:
        """Tag the best few sentences: those naming a new entity of the asked-for type rise, none at all lowers every score."""
        assert self.tagger is not None
        ew = self.entity_weights
        pool, rest = ranked[: ew.pool], ranked[ew.pool :]
        # The question's rare terms: those weighing at least the mean of its terms.
        mean = sum(weights.values()) / (len(weights) or 1)
        rare = {t for t, w in weights.items() if w >= mean}
        for candidate, entities in zip(pool, self.tagger.entities([c.sentence for c in pool])):
            candidate.entities = entity_features(kind, candidate.sentence, entities, query.text, rare)
            candidate.short = short_answer(kind, candidate.sentence, entities, query.text)
            candidate.named = tuple(e.text for e in new_entities(kind, candidate.sentence, entities, query.text))
        if not any(c.entities is not None and c.entities.fits for c in pool):
            for candidate in ranked:
                candidate.score -= ew.mismatch
            return ranked
        for candidate in pool:
            found = candidate.entities
            assert found is not None
            unfit = ew.unfit_figure if kind.figure else ew.unfit_name
            change = ew.fits * found.fits + ew.near * found.near - unfit * (1.0 - found.fits)
            candidate.rank += change
            candidate.score += ew.evidence * change
        # Only the tagged sentences are weighed again, so only they change places.
        return sorted(pool, key=lambda c: c.rank, reverse=True) + rest

    def admits(self, query: Query, passages: list[Passage]) -> bool:
        """The evidence gate: some sentence of the passages scores at least the refusal threshold."""
        return self._admits(self.score(query, passages))

    def _admits(self, ranked: list[Candidate]) -> bool:
        return bool(ranked) and max(c.score for c in ranked) >= self.threshold

    def generate(self, query: Query, passages: list[Passage]) -> Draft:
        ranked = self.score(query, passages)
        evidence = max((c.score for c in ranked), default=0.0)
        if not self._admits(ranked):
            return Draft(REFUSAL, refused=True, citations=[], evidence=evidence)
        best = ranked[0]
        # Only the best few sentences can disagree: a figure far down the list is another matter.
        contenders = [c for c in ranked[:3] if c.rank >= best.rank * (1 - CONFLICT_MARGIN)]
        disagreement = self._disagreement(query, contenders)
        if disagreement:
            return replace(self._write(disagreement, conflict=True), evidence=evidence)
        chosen = [best]
        for candidate in ranked[1:]:
            if len(chosen) >= self.max_sentences or candidate.rank < best.rank - FOLLOWER_MARGIN:
                break
            if all(_shared_terms(candidate, other) < SAME_SENTENCE_TERMS for other in chosen):
                chosen.append(candidate)
        draft = replace(self._write(chosen, conflict=False), evidence=evidence)
        if self.short_answers and best.short:
            return lead_with(draft, spelled_out(best.short, best.sentence, query.text))
        return draft

    def _disagreement(self, query: Query, contenders: list[Candidate]) -> list[Candidate] | None:
        """Two top sentences from different articles that give different figures for the same thing.

        "The same thing" means the words framing the two figures overlap in three terms or more,
        one of them from the question ("total number of US troops in Iraq to around 4,700" against
        "total authorised number of US forces in Iraq to more than 4,600").
        """
        asked = set(tokenize(query.text))
        framed = [(c, _framed_figures(c.sentence, asked)) for c in contenders]
        for i, (first, first_frames) in enumerate(framed):
            for second, second_frames in framed[i + 1 :]:
                if second.passage.doc_id == first.passage.doc_id:
                    continue
                for value_a, frame_a in first_frames:
                    for value_b, frame_b in second_frames:
                        shared = frame_a & frame_b
                        if figure_kind(value_a) != figure_kind(value_b):
                            continue  # "$25 billion" and "4,600" troops are not two values of one thing
                        if value_a != value_b and len(shared) >= 3 and shared & asked:
                            return [first, second]
        return None

    def _write(self, chosen: list[Candidate], *, conflict: bool) -> Draft:
        numbers: dict[str, int] = {}
        quotes: dict[str, list[str]] = {}
        by_doc: dict[str, Passage] = {}
        parts: list[str] = []
        for candidate in chosen:
            # The same sentence in another outlet's copy of the story is cited with it.
            key = normal(candidate.sentence)
            backing = [candidate.passage] + [d for d in candidate.passage.duplicates if key in normal(d.text)]
            marks = []
            for passage in backing:
                by_doc.setdefault(passage.doc_id, passage)
                n = numbers.setdefault(passage.doc_id, len(numbers) + 1)
                if candidate.sentence not in quotes.setdefault(passage.doc_id, []):
                    quotes[passage.doc_id].append(candidate.sentence)
                marks.append(n)
            parts.append(mark(candidate.sentence, sorted(set(marks))))
        text = " ".join(parts)
        if conflict:
            text = "The sources differ on this. " + " ".join(
                f"One says: {part}" if index == 0 else f"Another says: {part}" for index, part in enumerate(parts)
            )
        citations = [Citation.of(n, by_doc[doc_id], " … ".join(quotes[doc_id])) for doc_id, n in numbers.items()]
        return Draft(text, refused=False, citations=citations, conflict=conflict)


def figure_kind(value: str) -> str:
    """What a figure (as `_framed_figures` gives it) measures: "money", "share" or "count"."""
    if value.startswith("$") or value.endswith((" dollars", " usd")):
        return "money"
    if value.endswith(("%", "percent")):
        return "share"
    return "count"


def short_candidate(ranked: list[Candidate], evidence: float) -> ShortAnswer | None:
    """The best sentence's short answer, with how many articles' tagged sentences name it and how near a rival ranks
    (what `bench/short_gate.py` measures: no rule on these made short answers right 90 % of the time)."""
    if not ranked or not ranked[0].short:
        return None
    best, text = ranked[0], ranked[0].short
    tagged = [c for c in ranked if c.named]
    agreeing = {c.passage.doc_id for c in tagged if any(same_entity(text, name) for name in c.named)}
    rivals = [c.rank for c in tagged if not any(same_entity(text, name) for name in c.named)]
    margin = best.rank - max(rivals) if rivals else 1.0
    return ShortAnswer(text, len(agreeing | {best.passage.doc_id}), margin, evidence)


def same_entity(one: str, other: str) -> bool:
    """Two mentions of one thing: equal words, or the words of one a whole run of the other's ("Musk", "Elon Musk")."""
    a, b = tokenize_entity(one), tokenize_entity(other)
    if not a or not b:
        return False
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return any(long[i : i + len(short)] == short for i in range(len(long) - len(short) + 1))


def tokenize_entity(text: str) -> list[str]:
    """An entity's words, lower-cased, figures without their thousands separators ("4,600" and "4600" are one)."""
    text = re.sub(r"(?<=\d),(?=\d)", "", text.lower().replace("’", "'"))
    words = (w.strip(".'") for w in re.findall(r"[\w$%.'-]+", text))
    return [w.removesuffix("'s") for w in words if w]


def spelled_out(short: str, sentence: str, question: str) -> str:
    """The short answer with the few words after it that say what it counts: "560" -> "560 more troops".

    Only a figure is extended, and only up to a word of the question, at most three words on
    ("How many additional troops ...?": "560 more troops"); anything else is kept as tagged.
    """
    at = sentence.find(short)
    if at < 0 or not NUMBER.match(short.lstrip("$")):
        return short
    asked = set(tokenize(question))
    following = re.match(r"((?:\s+[\w'’-]+){1,3})", sentence[at + len(short) :])
    if not following:
        return short
    words = following.group(1).split()
    for n in range(len(words), 0, -1):
        if set(tokenize(words[n - 1])) & asked:
            return " ".join([short, *words[:n]])
    return short


def lead_with(draft: Draft, short: str) -> Draft:
    """The reply led by its short answer, cited as the sentence it comes from: "**560 more troops** [1]"."""
    first = re.search(r"(\[\d+\])+", draft.text)
    marks = first.group(0) if first else ""
    return replace(draft, text=f"**{short}** {marks}\n\n{draft.text}", short_answer=short)


def _framed_figures(sentence: str, asked: set[str]) -> list[tuple[str, set[str]]]:
    """Each figure the question does not already give (money keeps its "$"), with the terms around it."""
    found = []
    for match in NUMBER.finditer(sentence):
        value = match.group(0).replace(",", "").strip().lower()
        if sentence[match.end() :].lstrip().lower().startswith(("dollars", "usd", "us dollars")):
            value = "$" + value.lstrip("$")
        if YEAR.match(value.lstrip("$")) or value.lstrip("$") in asked:
            continue
        before = tokenize(sentence[: match.start()])[-8:]
        after = tokenize(sentence[match.end() :])[:4]
        found.append((value, set(before + after)))
    return found


def _shared_terms(a: Candidate, b: Candidate) -> float:
    """The share of the two sentences' terms that both hold (Jaccard): near 1 for one report in two outlets' words."""
    return len(a.terms & b.terms) / (len(a.terms | b.terms) or 1)


def mark(sentence: str, numbers: list[int]) -> str:
    """Put the citation markers before the closing full stop: "... troops [1][2]."."""
    sentence = sentence.strip()
    marks = "".join(f"[{n}]" for n in numbers)
    if sentence.endswith(".") and not sentence.endswith(".."):
        return f"{sentence[:-1]} {marks}."
    return f"{sentence} {marks}"
