"""Keyword search (BM25) over the same chunks as the dense index, and the term statistics it yields."""

from __future__ import annotations

import copy
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
    """BM25 over chunk texts, with document frequencies for weighting query terms.

    Built once over a collection (bm25s, scores computed at build time), then changed in place without a
    rebuild (`changed`): removed chunks are masked and their terms taken out of the document
    frequencies; added chunks are kept beside the built part and scored at search time with the same
    formula (bm25s's Lucene BM25). Both parts weigh a term by its idf in the collection as it is now (the
    built part's scores are rescaled term by term); only the average chunk length stays the build's. The
    owner rebuilds it when changes grow (`HybridRetriever`).
    """

    K1 = 1.5
    B = 0.75

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
        self._built = len(corpus)
        self.size = len(corpus)
        self._bm25 = bm25s.BM25(k1=self.K1, b=self.B)
        self._vocab: dict[str, int] = {}
        self._df = np.zeros(0, dtype=np.int64)
        self._avgdl = float(np.mean([len(terms) for terms in corpus])) if corpus else 1.0
        # What changed since the build: rows masked, and the document frequencies they took away.
        self._rows: dict[str, int] | None = None  # row of each built id, made at the first removal
        self._dead = np.zeros(len(corpus), dtype=bool)
        self._df_gone: dict[str, int] = {}
        # Chunks added since the build: ids, term counts, lengths; and the document frequencies they add.
        self._extra_ids: list[str] = []
        self._extra_tf: list[dict[str, int]] = []
        self._extra_len: list[int] = []
        self._df_extra: dict[str, int] = {}
        if corpus:
            self._bm25.index(corpus, show_progress=False)
            self._vocab = self._bm25.vocab_dict
            # A term's column holds one score for each chunk that uses it: its document frequency.
            self._df = np.diff(self._bm25.scores["indptr"])

    @property
    def changes(self) -> int:
        """Chunks added or removed since the build."""
        return int(self._dead.sum()) + len(self._extra_ids)

    def changed(self, removed: dict[str, list[str]], added: Sequence[tuple[str, list[str]]]) -> KeywordIndex:
        """A new index: this one without the chunks `removed` (id -> its terms) and with `added` ((id, terms)).

        This one is left as it is (questions may be reading it); the two share the built part.
        """
        new = copy.copy(self)
        new._dead = self._dead.copy()
        new._df_gone = dict(self._df_gone)
        new._extra_ids, new._extra_tf, new._extra_len = list(self._extra_ids), list(self._extra_tf), list(self._extra_len)
        new._df_extra = dict(self._df_extra)
        if new._rows is None and removed:
            new._rows = {cid: row for row, cid in enumerate(self.ids)}
        for cid, terms in removed.items():
            distinct = set(terms or ["_empty_"])
            if cid in new._extra_ids:
                at = new._extra_ids.index(cid)
                del new._extra_ids[at], new._extra_tf[at], new._extra_len[at]
                for term in distinct:
                    new._df_extra[term] -= 1
                new.size -= 1
                continue
            row = new._rows.get(cid) if new._rows is not None else None
            if row is None or new._dead[row]:
                continue
            new._dead[row] = True
            for term in distinct:
                new._df_gone[term] = new._df_gone.get(term, 0) + 1
            new.size -= 1
        for cid, terms in added:
            terms = terms or ["_empty_"]
            counts: dict[str, int] = {}
            for term in terms:
                counts[term] = counts.get(term, 0) + 1
            new._extra_ids.append(cid)
            new._extra_tf.append(counts)
            new._extra_len.append(len(terms))
            for term in counts:
                new._df_extra[term] = new._df_extra.get(term, 0) + 1
            new.size += 1
        return new

    def term_id(self, term: str) -> int | None:
        """The number of a term the built chunks use (None for one they do not)."""
        return self._vocab.get(term)

    def term_ids(self, terms: Iterable[str]) -> list[int | None]:
        """`term_id` of each of `terms`."""
        return list(map(self._vocab.get, terms))

    def df(self, term: str) -> int:
        """How many chunks use `term`."""
        column = self._vocab.get(term)
        built = int(self._df[column]) if column is not None and column < len(self._df) else 0
        return built - self._df_gone.get(term, 0) + self._df_extra.get(term, 0)

    def idf(self, term: str) -> float:
        """Inverse document frequency; a term the collection never uses weighs the most."""
        return math.log(1 + (self.size + 1) / (self.df(term) + 0.5))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The `k` best chunk ids with their BM25 scores (only chunks sharing a term)."""
        terms = [term for term in tokenize(query) if self.df(term)]
        if not terms or not self.size:
            return []
        built = [term for term in terms if term in self._vocab]
        if not self.changes:
            scores = np.asarray(self._bm25.get_scores(built)) if built and self._built else np.zeros(self._built)
        else:  # bm25s scored the built chunks with each term's idf at the build: weighed by today's
            scores = np.zeros(self._built, dtype=np.float64)
            for term in built:
                weight = self._idf(self.df(term), self.size) / self._idf(int(self._df[self._vocab[term]]), self._built)
                scores += weight * np.asarray(self._bm25.get_scores([term]))
        if self._extra_ids:
            scores = np.concatenate([scores, self._extra_scores(terms)])
        scores[: self._built][self._dead] = 0.0
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self._id(int(i)), float(scores[i])) for i in top if scores[i] > 0]

    def _id(self, row: int) -> str:
        return self.ids[row] if row < self._built else self._extra_ids[row - self._built]

    @staticmethod
    def _idf(df: int, size: int) -> float:
        """bm25s's Lucene idf."""
        return math.log(1 + (size - df + 0.5) / (df + 0.5))

    def _extra_scores(self, terms: list[str]) -> np.ndarray:
        """BM25 (bm25s's Lucene form: idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))) of the added chunks."""
        scores = np.zeros(len(self._extra_ids), dtype=np.float64)
        for term in terms:
            idf = self._idf(self.df(term), self.size)
            for row, counts in enumerate(self._extra_tf):
                tf = counts.get(term)
                if tf:
                    norm = self.K1 * (1 - self.B + self.B * self._extra_len[row] / self._avgdl)
                    scores[row] += idf * tf / (tf + norm)
        return scores
