"""The built-in answer generator: picks the sentences that answer the question and cites each one.

No language model: every word of an answer is a sentence quoted verbatim from a retrieved
passage, so numbers and names are exactly as the articles give them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from retrieval.answer.types import REFUSAL, Citation, Draft
from retrieval.index.embedding import Embedder
from retrieval.index.keywords import tokenize
from retrieval.ingest.chunking import indexed_text
from retrieval.ingest.text import split_sentences
from retrieval.passages import Passage, Query

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

_NUMBER = re.compile(r"(?<![\w.])\$?\d[\d,]*(?:\.\d+)?(?:\s?(?:%|percent|million|billion|trillion|thousand))?")
_NUMBER_WORDS = re.compile(
    r"\b(hundreds?|thousands?|millions?|billions?|dozens?|two|three|four|five|six|seven|"
    r"eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|half)\b",
    re.I,
)
_YEAR = re.compile(r"^(1[89]|20)\d\d$")
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
    found = set()
    for match in _NUMBER.finditer(text):
        value = match.group(0).replace("$", "").replace(",", "").strip()
        if not _YEAR.match(value):
            found.add(value.lower())
    return found


@dataclass(frozen=True)
class SentenceFeatures:
    """What is measured of one candidate sentence against a question; each roughly 0 to 1.

    The extractive answerer weighs them with `ScoreWeights`; a trained reader can learn from the same features.
    """

    dense: float  # cosine similarity of the sentence and the question (meaning)
    coverage: float  # share of the question's term weight in the sentence, its passage counting for a little (words)
    answer_type: float  # 1.0 when the sentence holds a new thing of the kind asked for (a figure for "how many")
    support: float  # how widely its answer-like thing is repeated across the retrieved articles
    recency: float  # how close to the as-of date its article was published (`Query.recency`)


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
        return self.dense * features.dense + self.coverage * features.coverage + self.answer_type * fits

    def rank(self, features: SentenceFeatures) -> float:
        """The score with the article's recency: which answering sentence is quoted first."""
        return self.score(features) + self.recency * features.recency


DEFAULT_WEIGHTS = ScoreWeights()
# Only the best few sentences can disagree: within this much of the best rank, among the top three.
CONFLICT_MARGIN = 0.1
# A further sentence joins the answer when it ranks within this much of the best ...
FOLLOWER_MARGIN = 0.15
# ... and does not repeat a chosen one (cosine similarity of the two sentences below this).
SAME_SENTENCE_COSINE = 0.85


@dataclass
class Candidate:
    """A sentence of a retrieved passage that might answer the question, with how well it does."""

    sentence: str
    passage: Passage
    order: int
    terms: set[str] = field(default_factory=set)
    features: SentenceFeatures | None = None
    score: float = 0.0  # how well the sentence answers the question: what the refusal threshold judges
    rank: float = 0.0  # the score with the article's recency: which answering sentence is quoted first
    vector: np.ndarray | None = None


def sentence_features(
    query: Query,
    candidates: list[Candidate],
    similarities: np.ndarray,
    term_weights: dict[str, float],
    weights: ScoreWeights = DEFAULT_WEIGHTS,
) -> list[SentenceFeatures]:
    """The features of each candidate sentence, given its cosine similarity to the question and the question's term weights."""
    total = sum(term_weights.values()) or 1.0
    kind = answer_type(query.text)
    question_words = {w.lower() for w in re.findall(r"[\w'’-]+", query.text)}
    question_figures = figures(query.text)
    support = _support(kind, candidates, question_words, question_figures)
    contexts: dict[str, set[str]] = {}
    found: list[SentenceFeatures] = []
    for candidate, similarity in zip(candidates, similarities):
        passage = candidate.passage
        if passage.chunk_id not in contexts:
            contexts[passage.chunk_id] = set(tokenize(indexed_text(passage.title, passage.published, passage.text)))
        context = contexts[passage.chunk_id]
        covered = sum(w for t, w in term_weights.items() if t in candidate.terms)
        around = sum(w for t, w in term_weights.items() if t in context)
        found.append(
            SentenceFeatures(
                dense=float(similarity),
                coverage=(weights.sentence_terms * covered + weights.passage_terms * around) / total,
                answer_type=_fits(kind, candidate.sentence, question_words, question_figures),
                support=support.get(candidate.order, 0.0),
                recency=query.recency(passage.published_on),
            )
        )
    return found


class ExtractiveGenerator:
    """Scores each sentence of the top passages against the question and quotes the best.

    A sentence's score mixes its meaning (cosine similarity to the question), its words (the
    share of the question's rare terms it contains, weighted by inverse document frequency, with
    the surrounding passage counting for a little) and whether it holds the kind of thing asked
    for (a figure for "how many", a date for "when", a name for "who"/"where"/"which"): see
    `SentenceFeatures` and `ScoreWeights`.
    A sentence that is itself a question is never quoted: it restates what was asked (a headline
    such as "Why did the dam fail?") rather than answering it. Among the answering sentences,
    those from articles published close to the question's as-of date are quoted first, as
    retrieval prefers them ("Which team ... this week?" is answered by this week's report, not
    last year's).
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
    ) -> None:
        self.embedder = embedder
        self.term_weight = term_weight
        self.threshold = threshold
        self.max_sentences = max_sentences
        self.max_passages = max_passages
        self.max_embedded = max_embedded
        self.weights = weights

    def score(self, query: Query, passages: list[Passage]) -> list[Candidate]:
        """Every candidate sentence, best first."""
        candidates = self._candidates(passages)
        if not candidates:
            return []
        terms = list(dict.fromkeys(tokenize(query.text)))
        term_weights = {term: self.term_weight(term) for term in terms}
        if len(candidates) > self.max_embedded:
            # Only the sentences sharing the most question terms are worth embedding.
            shared = [sum(w for t, w in term_weights.items() if t in c.terms) for c in candidates]
            keep = sorted(range(len(candidates)), key=lambda i: (-shared[i], i))[: self.max_embedded]
            candidates = [candidates[i] for i in sorted(keep)]
        vectors = self.embedder.embed([query.text] + [c.sentence for c in candidates])
        question_vector, sentence_vectors = vectors[0], vectors[1:]
        similarities = sentence_vectors @ question_vector
        features = sentence_features(query, candidates, similarities, term_weights, self.weights)
        for candidate, found, vector in zip(candidates, features, sentence_vectors):
            candidate.features = found
            candidate.score = self.weights.score(found)
            candidate.rank = self.weights.rank(found)
            candidate.vector = vector
        return sorted(candidates, key=lambda c: c.rank, reverse=True)

    def admits(self, query: Query, passages: list[Passage]) -> bool:
        """The evidence gate: some sentence of the passages scores at least the refusal threshold."""
        return self._admits(self.score(query, passages))

    def _admits(self, ranked: list[Candidate]) -> bool:
        return bool(ranked) and max(c.score for c in ranked) >= self.threshold

    def generate(self, query: Query, passages: list[Passage]) -> Draft:
        ranked = self.score(query, passages)
        if not self._admits(ranked):
            return Draft(REFUSAL, refused=True, citations=[])
        best = ranked[0]
        # Only the best few sentences can disagree: a figure far down the list is another matter.
        contenders = [c for c in ranked[:3] if c.rank >= best.rank - CONFLICT_MARGIN]
        disagreement = self._disagreement(query, contenders)
        if disagreement:
            return self._write(disagreement, conflict=True)
        chosen = [best]
        for candidate in ranked[1:]:
            if len(chosen) >= self.max_sentences or candidate.rank < best.rank - FOLLOWER_MARGIN:
                break
            if all(_cosine(candidate, other) < SAME_SENTENCE_COSINE for other in chosen):
                chosen.append(candidate)
        return self._write(chosen, conflict=False)

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
                        if value_a != value_b and len(shared) >= 3 and shared & asked:
                            return [first, second]
        return None

    def _candidates(self, passages: list[Passage]) -> list[Candidate]:
        seen: set[str] = set()
        found: list[Candidate] = []
        for passage in passages[: self.max_passages]:
            # A headline often states the answer in the fewest words.
            for sentence in [passage.title, *split_sentences(passage.text)]:
                key = _normal(sentence)
                if len(key.split()) < 4 or key in seen or sentence.rstrip().endswith("?"):
                    continue
                seen.add(key)
                found.append(Candidate(sentence, passage, len(found), terms=set(tokenize(sentence))))
        return found

    def _write(self, chosen: list[Candidate], *, conflict: bool) -> Draft:
        numbers: dict[str, int] = {}
        quotes: dict[str, list[str]] = {}
        by_doc: dict[str, Passage] = {}
        parts: list[str] = []
        for candidate in chosen:
            # The same sentence in another outlet's copy of the story is cited with it.
            key = _normal(candidate.sentence)
            backing = [candidate.passage] + [d for d in candidate.passage.duplicates if key in _normal(d.text)]
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


def _normal(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


def _framed_figures(sentence: str, asked: set[str]) -> list[tuple[str, set[str]]]:
    """Each figure the question does not already give, with the terms around it."""
    found = []
    for match in _NUMBER.finditer(sentence):
        value = match.group(0).replace("$", "").replace(",", "").strip().lower()
        if _YEAR.match(value) or value in asked:
            continue
        before = tokenize(sentence[: match.start()])[-8:]
        after = tokenize(sentence[match.end() :])[:4]
        found.append((value, set(before + after)))
    return found


def _answers(kind: str | None, sentence: str, question_words: set[str], question_figures: set[str]) -> set[str]:
    """The things in a sentence that could be the answer: new figures, or new names."""
    if kind in ("number", "date"):
        return figures(sentence) - question_figures if kind == "number" else set(_MONTH_WORDS.findall(sentence.lower()))
    found = set()
    for run in _NAME_RUN.findall(sentence):
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
        return 1.0 if (figures(sentence) - question_figures) or _NUMBER_WORDS.search(sentence) else 0.0
    if kind == "date":
        return 1.0 if _MONTH_WORDS.search(sentence) or re.search(r"\b(1[89]|20)\d\d\b", sentence) else 0.0
    names = {word.lower() for word in _CAPITALISED.findall(sentence)} - question_words
    return 1.0 if names else 0.0


def _cosine(a: Candidate, b: Candidate) -> float:
    assert a.vector is not None and b.vector is not None
    return float(np.dot(a.vector, b.vector))


def mark(sentence: str, numbers: list[int]) -> str:
    """Put the citation markers before the closing full stop: "... troops [1][2]."."""
    sentence = sentence.strip()
    marks = "".join(f"[{n}]" for n in numbers)
    if sentence.endswith(".") and not sentence.endswith(".."):
        return f"{sentence[:-1]} {marks}."
    return f"{sentence} {marks}"
