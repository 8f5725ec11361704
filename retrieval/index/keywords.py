"""Keyword search (BM25) over the same chunks as the dense index, and the term statistics it yields."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
import Stemmer

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves said says say told according week
    weeks year years new many much one two did does whose within since per
    """.split()
)
_TOKEN = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*(?:'[a-z]+)?")


_STEMMER = Stemmer.Stemmer("english")


def stem(word: str) -> str:
    """The Snowball (Porter 2) stem: "troops"/"troop", "announced"/"announce" match."""
    return word if word.isdigit() else str(_STEMMER.stemWord(word))


# The word after "how" says what kind of answer is wanted ("how far", "how many"), not what about.
_QUESTION_FRAME = re.compile(r"\bhow (many|much|far|long|old|big|large|high|tall|often|soon)\b", re.I)


def tokenize(text: str, *, keep_stopwords: bool = False) -> list[str]:
    """Lower-cased, stemmed terms; "4,600" becomes "4600" so figures match however written."""
    lowered = text.lower()
    if "how" in lowered:  # the substitution is the slow part of a chunk; most have no "how"
        lowered = _QUESTION_FRAME.sub("how", text).lower()
    # Each distinct token is cut, checked and stemmed once; a chunk's tokens are looked up.
    seen = _TERMS[keep_stopwords]
    if len(seen) > _MAX_TERMS:  # a new table, not cleared: another thread may be reading this one
        seen = _TERMS[keep_stopwords] = {}
    tokens = _TOKEN.findall(lowered.replace("’", "'"))
    for token in set(tokens).difference(seen):
        seen[token] = _term(token, keep_stopwords)
    return [term for term in map(seen.__getitem__, tokens) if term]


def _term(raw: str, keep_stopwords: bool) -> str:
    """The term a token stands for ("troops'" -> "troop"); "" for a stopword that is left out."""
    word = raw.split("'")[0].replace(",", "")
    return "" if not keep_stopwords and word in STOPWORDS else stem(word)


# The term of every token seen, with stopwords kept and without; started afresh when it grows past the
# bound (news brings new names every day).
_TERMS: dict[bool, dict[str, str]] = {False: {}, True: {}}
_MAX_TERMS = 200_000


class KeywordIndex:
    """BM25 over chunk texts, with document frequencies for weighting query terms."""

    def __init__(self, ids: Sequence[str], texts: Iterable[str]) -> None:
        self._build(ids, [tokenize(text) for text in texts])

    @classmethod
    def of_terms(cls, ids: Sequence[str], corpus: list[list[str]]) -> KeywordIndex:
        """The index of texts already tokenized (`tokenize`), for a caller that needs their terms too."""
        index = cls.__new__(cls)
        index._build(ids, corpus)
        return index

    def _build(self, ids: Sequence[str], corpus: list[list[str]]) -> None:
        import bm25s

        # bm25s sets its own logger to DEBUG on import; keep it to warnings.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self.ids = list(ids)
        corpus = [terms or ["_empty_"] for terms in corpus]
        self.size = len(corpus)
        self._bm25 = bm25s.BM25()
        self._vocab: dict[str, int] = {}
        self._df = np.zeros(0, dtype=np.int64)
        if corpus:
            self._bm25.index(corpus, show_progress=False)
            self._vocab = self._bm25.vocab_dict
            # A term's column holds one score for each chunk that uses it: its document frequency.
            self._df = np.diff(self._bm25.scores["indptr"])

    def term_id(self, term: str) -> int | None:
        """The number of a term the indexed chunks use (None for one they do not)."""
        return self._vocab.get(term)

    def term_ids(self, terms: Iterable[str]) -> list[int | None]:
        """`term_id` of each of `terms`."""
        return list(map(self._vocab.get, terms))

    def df(self, term: str) -> int:
        """How many chunks use `term`."""
        column = self._vocab.get(term)
        return int(self._df[column]) if column is not None and column < len(self._df) else 0

    def idf(self, term: str) -> float:
        """Inverse document frequency; a term the collection never uses weighs the most."""
        return math.log(1 + (self.size + 1) / (self.df(term) + 0.5))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The `k` best chunk ids with their BM25 scores (only chunks sharing a term)."""
        terms = [term for term in tokenize(query) if self.df(term)]
        if not terms or not self.size:
            return []
        scores = np.asarray(self._bm25.get_scores(terms))
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]
