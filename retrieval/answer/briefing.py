"""Briefings: a few dated, cited bullet points on a topic, one per story, newest first.

Built on the same retriever and embedder as the answerer. Every bullet is a sentence quoted from
an article; an article carrying a story another outlet already told joins that story's bullet as a
second source instead of making a bullet of its own.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from retrieval.answer.extractive import mark
from retrieval.answer.protocols import Retriever
from retrieval.answer.types import Citation
from retrieval.index.embedding import Embedder
from retrieval.index.keywords import tokenize
from retrieval.ingest.text import split_sentences
from retrieval.passages import Passage, Query
from retrieval.read.candidates import figures

logger = logging.getLogger(__name__)

# A story's further sentence is shown only when it does not repeat one shown (cosine below this).
SAME_SENTENCE_COSINE = 0.85

NOTHING_FOUND = "I couldn't find anything on that in the articles I have."
# A sentence's fit to the topic: cosine similarity, plus this much for holding all the topic's terms.
TOPIC_TERMS_WEIGHT = 0.2

_LEAD_IN = re.compile(
    r"^\s*(please\s+)?((give|get)\s+me\s+)?(a\s+)?(brief(ing)?|summar(y|ise|ize)|update)(\s+me)?\s+(on|about|of)(\s+|$)",
    re.I,
)
_SINCE = re.compile(r"\s+since\s+(.+?)\s*$", re.I)
_DAYS = re.compile(r"^(\d{1,4})\s*d$", re.I)


class BriefingRequestError(ValueError):
    """The /brief arguments cannot be understood; the message says how to write them."""


@dataclass(frozen=True)
class BriefPoint:
    """One story: its date, a sentence quoted from it, and the sources that carry it."""

    date: str | None
    text: str  # with [n] markers
    citations: list[int]


@dataclass
class Briefing:
    """The bullets, newest first, and their numbered sources; no bullets means nothing was found."""

    topic: str
    points: list[BriefPoint] = field(default_factory=list)
    sources: list[Citation] = field(default_factory=list)  # the numbered articles behind the bullets
    message: str = ""
    repeats: int = 0  # stories left out because every sentence they would quote was sent before (`sent`)
    # The embedding of each source's quoted sentence, in the order of `sources` (a digest remembers them).
    quote_vectors: list[np.ndarray] = field(default_factory=list, compare=False, repr=False)

    @property
    def empty(self) -> bool:
        return not self.points


def parse_request(text: str, today: date | None = None) -> tuple[str, date | None]:
    """`TOPIC [since YYYY-MM-DD | since 7d | 7d]` → (topic, since)."""
    text = text.strip()
    since: date | None = None
    match = _SINCE.search(text)
    tail = text.rsplit(None, 1)
    if match:
        since = _parse_since(match.group(1), today)
        text = text[: match.start()]
    elif len(tail) == 2 and _DAYS.match(tail[1]):
        since = _parse_since(tail[1], today)
        text = tail[0]
    topic = clean_topic(text)
    if not topic:
        raise BriefingRequestError("Tell me a topic: /brief TOPIC [since YYYY-MM-DD | 7d]")
    return topic, since


def _parse_since(value: str, today: date | None) -> date:
    days = _DAYS.match(value)
    if days:
        return (today or date.today()) - timedelta(days=int(days.group(1)))
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise BriefingRequestError(f"I read dates as YYYY-MM-DD or a number of days like 7d, not {value!r}.") from exc


def clean_topic(text: str) -> str:
    """ "Brief me on the campaign to retake Mosul." → "the campaign to retake Mosul"."""
    return _LEAD_IN.sub("", text).strip().rstrip(".?!").strip()


@dataclass
class _Pick:
    passage: Passage
    sentence: str
    score: float
    vector: np.ndarray
    title_vector: np.ndarray | None = None
    figures: frozenset[str] = frozenset()


class Briefer:
    """Topic in, `Briefing` out: retrieve, pick each article's best sentence, fold duplicates, date-sort."""

    def __init__(
        self,
        retriever: Retriever,
        embedder: Embedder,
        *,
        max_points: int = 6,
        candidates: int = 30,
        threshold: float = 0.4,
        figure_bonus: float = 0.1,
        same_sentence: float = 0.8,
        same_title: float = 0.6,
        same_days: int = 3,
    ) -> None:
        self.retriever = retriever
        self.embedder = embedder
        self.max_points = max_points
        self.candidates = candidates
        self.threshold = threshold
        self.figure_bonus = figure_bonus
        self.same_sentence = same_sentence
        self.same_title = same_title
        self.same_days = same_days

    def brief(
        self,
        topic: str,
        *,
        since: date | None = None,
        until: date | None = None,
        arrived_after: int | None = None,
        sent: frozenset[str] = frozenset(),
        sent_vectors: np.ndarray | None = None,
    ) -> Briefing:
        """Up to `max_points` bullets from distinct stories about `topic`, newest first.

        `since` and `until` bound the publication dates; `arrived_after` (seconds since 1970) keeps only
        articles ingested from then (a digest's "new since the last one"). A story every sentence of
        which was sent before is left out, as it has no news: the same words (`sent`: `sentence_key`s), or
        the same thing said otherwise (a cosine of at least `SAME_SENTENCE_COSINE` to one of `sent_vectors`,
        the embeddings of the sentences sent).
        """
        topic = clean_topic(topic) or topic.strip()
        query = Query(topic, since=since, until=until, arrived_after=arrived_after)
        passages = self.retriever.retrieve(query, self.candidates)
        linked: set[frozenset[str]] = set()  # articles the retriever already folded into one story
        picks = [p for p in self._best_per_article(topic, passages, linked) if p.score >= self.threshold]
        logger.debug("brief %r: %d relevant articles", topic, len(picks))
        if not picks:
            when = f" since {since.isoformat()}" if since else ""
            return Briefing(topic, message=NOTHING_FOUND.replace("on that", f"on that{when}"))
        stories = self._stories(picks, linked)
        said = sent_vectors if sent_vectors is not None and len(sent_vectors) else None

        def told(pick: _Pick) -> bool:
            if sentence_key(pick.sentence) in sent:
                return True
            return said is not None and float(np.max(said @ pick.vector)) >= SAME_SENTENCE_COSINE

        fresh = [story for story in stories if not all(told(pick) for pick in story)]
        if not fresh:
            return Briefing(topic, message=NOTHING_FOUND, repeats=len(stories))
        repeats = len(stories) - len(fresh)
        stories = fresh[: self.max_points]
        stories.sort(key=_story_date, reverse=True)
        briefing = Briefing(topic, repeats=repeats)
        for story in stories:
            numbers: list[int] = []
            parts: list[tuple[str, list[int]]] = []  # a sentence shown and the sources it stands for
            for pick in story:
                n = len(briefing.sources) + 1
                briefing.sources.append(Citation.of(n, pick.passage, pick.sentence))
                briefing.quote_vectors.append(pick.vector)
                numbers.append(n)
                # Each outlet's own sentence, unless it says what an earlier one already said.
                if len(parts) < 2 and all(
                    float(np.dot(pick.vector, o.vector)) < SAME_SENTENCE_COSINE for o in story[: len(parts)]
                ):
                    parts.append((pick.sentence, [n]))
                else:
                    parts[-1][1].append(n)
            text = " ".join(mark(sentence, cited) for sentence, cited in parts)
            briefing.points.append(BriefPoint(_story_date(story) or None, text, numbers))
        return briefing

    async def abrief(
        self,
        topic: str,
        *,
        since: date | None = None,
        until: date | None = None,
        arrived_after: int | None = None,
        sent: frozenset[str] = frozenset(),
        sent_vectors: np.ndarray | None = None,
    ) -> Briefing:
        """`brief` off the event loop."""
        return await asyncio.to_thread(
            self.brief, topic, since=since, until=until, arrived_after=arrived_after, sent=sent, sent_vectors=sent_vectors
        )

    def _best_per_article(self, topic: str, passages: list[Passage], linked: set[frozenset[str]]) -> list[_Pick]:
        """Each article's sentence that best fits the topic, preferring sentences that state figures."""
        sentences: list[tuple[Passage, str]] = []
        seen: set[tuple[str, str]] = set()
        article_figures: dict[str, set[str]] = {}
        titles: dict[str, str] = {}
        for passage in _with_duplicates(passages, linked):
            titles.setdefault(passage.doc_id, passage.title)
            article_figures.setdefault(passage.doc_id, set()).update(_specific_figures(passage.text))
            for sentence in split_sentences(passage.text):
                key = (passage.doc_id, sentence)
                if len(sentence.split()) < 6 or len(sentence) > 400 or key in seen:
                    continue
                seen.add(key)
                sentences.append((passage, sentence))
        if not sentences:
            return []
        doc_ids = list(titles)
        vectors = self.embedder.embed([topic] + [titles[d] for d in doc_ids] + [s for _, s in sentences])
        topic_vector = vectors[0]
        title_vectors = dict(zip(doc_ids, vectors[1 : 1 + len(doc_ids)], strict=True))
        terms = set(tokenize(topic))
        best: dict[str, _Pick] = {}
        for (passage, sentence), vector in zip(sentences, vectors[1 + len(doc_ids) :], strict=True):
            overlap = len(terms & set(tokenize(sentence))) / len(terms) if terms else 0.0
            score = float(np.dot(topic_vector, vector)) + TOPIC_TERMS_WEIGHT * overlap
            if _specific_figures(sentence):
                score += self.figure_bonus
            current = best.get(passage.doc_id)
            if current is None or score > current.score:
                best[passage.doc_id] = _Pick(
                    passage,
                    sentence,
                    score,
                    vector,
                    title_vectors[passage.doc_id],
                    frozenset(article_figures[passage.doc_id]),
                )
        return sorted(best.values(), key=lambda pick: pick.score, reverse=True)

    def _same_story(self, a: _Pick, b: _Pick, linked: set[frozenset[str]]) -> bool:
        """Two outlets on one story: folded together by the retriever, near-identical sentences,
        or like headlines sharing a figure."""
        if frozenset((a.passage.doc_id, b.passage.doc_id)) in linked:
            return True
        day_a, day_b = a.passage.published_on, b.passage.published_on
        if day_a and day_b and abs((day_a - day_b).days) > self.same_days:
            return False
        if float(np.dot(a.vector, b.vector)) >= self.same_sentence:
            return True
        if a.title_vector is None or b.title_vector is None:
            return False
        return float(np.dot(a.title_vector, b.title_vector)) >= self.same_title and bool(a.figures & b.figures)

    def _stories(self, picks: list[_Pick], linked: set[frozenset[str]]) -> list[list[_Pick]]:
        """Group picks that tell the same story, best story first."""
        stories: list[list[_Pick]] = []
        for pick in picks:
            for story in stories:
                if any(self._same_story(pick, other, linked) for other in story):
                    story.append(pick)
                    break
            else:
                stories.append([pick])
        return stories


def sentence_key(sentence: str) -> str:
    """What identifies a quoted sentence across outlets and edits: its words, lower-cased, without
    punctuation or spacing (a wire story's sentence under two outlets has one key)."""
    return " ".join(re.findall(r"\w+", sentence.lower()))


def _with_duplicates(passages: list[Passage], linked: set[frozenset[str]]) -> list[Passage]:
    """The passages and the near-duplicates the retriever folded into them, noting which articles it linked."""
    found: list[Passage] = []
    for passage in passages:
        found.append(passage)
        for duplicate in getattr(passage, "duplicates", ()):
            found.append(duplicate)
            linked.add(frozenset((passage.doc_id, duplicate.doc_id)))
    return found


def _specific_figures(text: str) -> set[str]:
    """Figures that identify a story (560, 4,647, 30%), not years or small counts."""
    found = set()
    for value in figures(text):
        digits = re.sub(r"[^\d.]", "", value)
        try:
            if float(digits) >= 10:
                found.add(value)
        except ValueError:
            continue
    return found


def _story_date(story: list[_Pick]) -> str:
    """The newest known date among a story's articles ("" when none is dated)."""
    return max((p.passage.published or "" for p in story), default="")
