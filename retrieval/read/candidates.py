"""The sentences of retrieved passages that might answer a question, and what is measured of each.

Every answerer reads the same candidates and features: the hand-weighted extractive answerer
(`answer/extractive.py`) and the trained reader (`read/reader.py`), which learns how much each
feature counts from the training weeks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from retrieval.index.keywords import tokenize
from retrieval.ingest.chunking import indexed_text
from retrieval.ingest.text import split_sentences
from retrieval.passages import Passage, Query
from retrieval.read.entities import EntityFeatures

# What kind of thing a question asks for, recognised from its wording.
_ANSWER_TYPES: list[tuple[str, re.Pattern[str]]] = [
    (
        "number",
        re.compile(
            r"\b(how (many|much|far|long|old|big|large|high|tall|often)|what (is|was|were|are) the "
            r"(number|total|amount|cost|price|percentage|share|rate|size|population|toll|figure|distance)|"
            r"the (total )?(number|amount|cost|price|percentage|population|death toll) of)\b",
            re.I,
        ),
    ),
    ("date", re.compile(r"\b(when\b|(in |on )?(which|what) (year|date|day|month)\b)", re.I)),
    ("person", re.compile(r"\b(who|whom|whose)\b", re.I)),
    (
        "place",
        re.compile(
            r"\b(where\b|(in |at |from )?(which|what) (city|country|town|state|province|region|base|air ?base|"
            r"place|capital|village|county|nation|continent|island|airport|port)\b)",
            re.I,
        ),
    ),
    ("name", re.compile(r"\b(which|what|name)\b", re.I)),
]

NUMBER = re.compile(r"(?<![\w.])\$?\d[\d,]*(?:\.\d+)?(?:\s?(?:%|percent|million|billion|trillion|thousand))?")
YEAR = re.compile(r"^(1[89]|20)\d\d$")
_NUMBER_WORDS = re.compile(
    r"\b(hundreds?|thousands?|millions?|billions?|dozens?|two|three|four|five|six|seven|"
    r"eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|half)\b",
    re.I,
)
_MONTH_WORDS = re.compile(
    r"\b(jan(uary)?|feb(ruary)?|march|april|may|june|july|aug(ust)?|sept?(ember)?|"
    r"oct(ober)?|nov(ember)?|dec(ember)?|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday|yesterday|today)\b",
    re.I,
)
_NAME_RUN = re.compile(r"\b[A-Z][\w.&'’-]*(?:\s+(?:(?:of|de|the|&)\s+)?[A-Z][\w.&'’-]*)*")
_SENTENCE_STARTERS = frozenset("The A An He She It They We I In On At But And As After When This That".split())
_CAPITALISED = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-zA-Z'’-]+")


def answer_type(question: str) -> str | None:
    """ "number", "date", "person", "place", "name", or None for open questions."""
    asking = [part for part in re.split(r"(?<=[.!?])\s+", question.strip()) if part]
    for part in reversed(asking[-2:]):
        for kind, pattern in _ANSWER_TYPES:
            if pattern.search(part):
                return kind
    return None


def figures(text: str) -> set[str]:
    """The figures a sentence states (not years), normalised: "4,600" and "4600" are one figure."""
    return set(_figures(text))


# Every question reads the sentences of the passages it retrieved, and the same passages come back
# for many questions: what is measured of a text alone (its terms, sentences, figures, names) is
# remembered rather than measured again. Thread-safe; a few tens of MB at most.
_TEXTS_KEPT = 65536


@lru_cache(maxsize=_TEXTS_KEPT)
def _figures(text: str) -> frozenset[str]:
    found = set()
    for match in NUMBER.finditer(text):
        value = match.group(0).replace("$", "").replace(",", "").strip()
        if not YEAR.match(value):
            found.add(value.lower())
    return frozenset(found)


@lru_cache(maxsize=_TEXTS_KEPT)
def terms_of(text: str) -> frozenset[str]:
    """The distinct search terms of a text (`tokenize`), remembered."""
    return frozenset(tokenize(text))


@lru_cache(maxsize=_TEXTS_KEPT // 8)
def _sentences(text: str) -> tuple[str, ...]:
    return tuple(split_sentences(text))


@lru_cache(maxsize=_TEXTS_KEPT)
def _name_runs(sentence: str) -> tuple[str, ...]:
    return tuple(_NAME_RUN.findall(sentence))


@lru_cache(maxsize=_TEXTS_KEPT)
def _capitalised(sentence: str) -> frozenset[str]:
    return frozenset(word.lower() for word in _CAPITALISED.findall(sentence))


@lru_cache(maxsize=_TEXTS_KEPT)
def normal(text: str) -> str:
    """Words only, lower-cased: how sentences are compared for sameness."""
    return re.sub(r"\W+", " ", text).strip().lower()


@dataclass(frozen=True)
class SentenceFeatures:
    """What is measured of one candidate sentence against a question; each roughly 0 to 1."""

    dense: float  # cosine similarity of the sentence and the question (meaning)
    coverage: float  # share of the question's term weight in the sentence itself (words)
    context: float  # the same share in the sentence's passage, headline and date
    answer_type: float  # 1.0 when the sentence holds a new thing of the kind asked for (a figure for "how many")
    support: float  # how widely its answer-like thing is repeated across the retrieved articles
    recency: float  # how close to the as-of date its article was published (`Query.recency`)
    headline: float  # 1.0 for an article's headline
    lead: float  # 1.0 for a sentence of the article's first chunk (news puts the facts first)


@dataclass
class Candidate:
    """A sentence of a retrieved passage that might answer the question, with how well it does."""

    sentence: str
    passage: Passage
    order: int
    terms: set[str] = field(default_factory=set)
    lead: bool = False
    features: SentenceFeatures | None = None
    score: float = 0.0  # how well the sentence answers the question: what the refusal gate judges
    rank: float = 0.0  # what orders the answering sentences (which is quoted first)
    # Its named entities of the kind asked for, and the one it names alone (the short answer), where it was tagged.
    entities: EntityFeatures | None = None
    short: str | None = None
    named: tuple[str, ...] = ()  # every entity of the kind asked for that it names beyond the question, where tagged

    @property
    def headline(self) -> bool:
        return self.sentence == self.passage.title


def candidates(passages: list[Passage]) -> list[Candidate]:
    """Each distinct sentence (and headline) of the passages that could be quoted as an answer.

    A sentence of three words or fewer says too little; one that is itself a question (a headline
    such as "Why did the dam fail?") restates what was asked rather than answering it.
    """
    seen: set[str] = set()
    found: list[Candidate] = []
    for passage in passages:
        lead = passage.chunk_id.endswith(":0000")
        # A headline often states the answer in the fewest words.
        for sentence in (passage.title, *_sentences(passage.text)):
            key = normal(sentence)
            if len(key.split()) < 4 or key in seen or sentence.rstrip().endswith("?"):
                continue
            seen.add(key)
            found.append(Candidate(sentence, passage, len(found), terms=set(terms_of(sentence)), lead=lead))
    return found


def lexical_share(candidates: list[Candidate], term_weights: dict[str, float]) -> list[float]:
    """The share of the question's term weight that each candidate sentence holds."""
    total = sum(term_weights.values()) or 1.0
    return [sum(w for t, w in term_weights.items() if t in c.terms) / total for c in candidates]


def sentence_features(
    query: Query,
    candidates: list[Candidate],
    similarities: np.ndarray,
    term_weights: dict[str, float],
    *,
    with_support: bool = True,
) -> list[SentenceFeatures]:
    """The features of each candidate, given its cosine similarity to the question and the question's term weights.

    `with_support=False` leaves `support` at 0 for a scorer that gives it no weight: measuring it (every
    candidate's names or figures, across articles) was a tenth of a question's time.
    """
    total = sum(term_weights.values()) or 1.0
    kind = answer_type(query.text)
    question_words = {w.lower() for w in re.findall(r"[\w'’-]+", query.text)}
    question_figures = figures(query.text)
    support = _support(kind, candidates, question_words, question_figures) if with_support else {}
    # What depends only on the passage (its share of the question's terms, its recency) is measured once a passage.
    passages: dict[str, tuple[float, float]] = {}
    found: list[SentenceFeatures] = []
    for candidate, similarity, covered in zip(candidates, similarities, lexical_share(candidates, term_weights)):
        passage = candidate.passage
        if passage.chunk_id not in passages:
            context = terms_of(indexed_text(passage.title, passage.published, passage.text))
            passages[passage.chunk_id] = (
                sum(w for t, w in term_weights.items() if t in context) / total,
                query.recency(passage.published_on),
            )
        context_share, recency = passages[passage.chunk_id]
        found.append(
            SentenceFeatures(
                dense=float(similarity),
                coverage=covered,
                context=context_share,
                answer_type=_fits(kind, candidate.sentence, question_words, question_figures),
                support=support.get(candidate.order, 0.0),
                recency=recency,
                headline=float(candidate.headline),
                lead=float(candidate.lead),
            )
        )
    return found


def term_weights(query: Query, weight: Callable[[str], float]) -> dict[str, float]:
    """The question's distinct terms, each with its weight (its rarity in the collection)."""
    return {term: weight(term) for term in dict.fromkeys(tokenize(query.text))}


def _answers(kind: str | None, sentence: str, question_words: set[str], question_figures: set[str]) -> set[str]:
    """The things in a sentence that could be the answer: new figures, or new names."""
    if kind in ("number", "date"):
        return figures(sentence) - question_figures if kind == "number" else set(_MONTH_WORDS.findall(sentence.lower()))
    found = set()
    for run in _name_runs(sentence):
        words = [w for w in run.split() if w.lower() not in question_words]
        if words and run.split()[0] not in _SENTENCE_STARTERS:
            found.add(" ".join(words).lower())
    return found


def _support(
    kind: str | None, candidates: list[Candidate], question_words: set[str], question_figures: set[str]
) -> dict[int, float]:
    """For each candidate, how widely its best answer-like thing is repeated across articles (0 to 1).

    Redundancy is evidence: the name or figure that many retrieved articles give in sentences about
    the question is more likely the answer than one that a single sentence mentions.
    """
    if kind == "date":
        return {}
    docs: dict[str, set[str]] = {}
    found: dict[int, set[str]] = {}
    for candidate in candidates:
        answers = _answers(kind, candidate.sentence, question_words, question_figures)
        found[candidate.order] = answers
        holders = {candidate.passage.doc_id, *(d.doc_id for d in candidate.passage.duplicates)}
        for answer in answers:
            docs.setdefault(answer, set()).update(holders)
    if not docs:
        return {}
    top = max(len(holders) for holders in docs.values())
    if top < 2:
        return {}
    return {order: max((len(docs[a]) for a in answers), default=0) / top for order, answers in found.items()}


def _fits(kind: str | None, sentence: str, question_words: set[str], question_figures: set[str]) -> float:
    """1.0 when the sentence holds a new thing of the kind asked for, else 0.0."""
    if kind is None:
        return 0.0
    if kind == "number":
        return 1.0 if (_figures(sentence) - question_figures) or _NUMBER_WORDS.search(sentence) else 0.0
    if kind == "date":
        return 1.0 if _MONTH_WORDS.search(sentence) or re.search(r"\b(1[89]|20)\d\d\b", sentence) else 0.0
    names = _capitalised(sentence) - question_words
    return 1.0 if names else 0.0
