"""The kind of thing a question asks for, read from its wording, as named-entity labels.

Each rule names the wording it recognises and the OntoNotes labels (what the English spaCy
pipeline tags, `read/entities.py`) an answer of that kind carries: "How far is Mosul from
Baghdad?" asks for a QUANTITY, "Which company ...?" for an ORG, "Who ...?" for a PERSON. The
rules are tried in order on the asking clause (the last sentence of the question, or the one
before when the last only adds context), and the first that matches decides. A question no rule
recognises ("What does PSL stand for?") has no expected type: nothing is required of its answer.
Nor has "which film / song / product / event / law": on the training weeks spaCy's small pipeline
gave the gold choice of such a question the matching label (WORK_OF_ART, PRODUCT, EVENT, LAW) for
fewer than a third of them, so asking for one would count against the right sentence more often
than for it.

`bench/answer_types.py` measures how many of the training weeks' questions are typed, and how
often the gold choice is of the type (bench/RESULTS.md, "Answer types").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class AnswerType:
    """What a question asks for: a short name ("person", "distance") and the entity labels that answer it."""

    name: str
    labels: frozenset[str]

    @property
    def figure(self) -> bool:
        """Asks for a figure or a date (tagged reliably), not a name (which the tagger misses more often)."""
        return self.labels <= _FIGURE_LABELS


_FIGURE_LABELS = frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT", "DATE", "TIME"})


def _type(name: str, labels: str) -> AnswerType:
    return AnswerType(name, frozenset(labels.split()))


PERSON = _type("person", "PERSON")
ORGANIZATION = _type("organization", "ORG")
PLACE = _type("place", "GPE LOC FAC")
NATIONALITY = _type("group", "NORP")
DATE = _type("date", "DATE TIME")
COUNT = _type("count", "CARDINAL QUANTITY")
MONEY = _type("money", "MONEY")
PERCENT = _type("percent", "PERCENT")
MEASURE = _type("measure", "QUANTITY")
AMOUNT = _type("amount", "MONEY PERCENT QUANTITY CARDINAL")
AGE = _type("age", "DATE CARDINAL")
DURATION = _type("duration", "DATE TIME QUANTITY CARDINAL")

# Nouns that say which kind of thing "which/what NOUN" asks for.
_PERSON_NOUNS = (
    r"person|man|woman|people|president|leader|senator|governor|minister|prime minister|official|actor|actress|"
    r"singer|rapper|artist|musician|player|athlete|quarterback|coach|ceo|chief executive|founder|billionaire|"
    r"candidate|lawmaker|judge|justice|star|celebrity|author|writer|director|host|comedian|chef|king|queen|"
    r"prince|princess|pope|politician|secretary|spokesperson|general|commander|mayor|rep\.?|representative|"
    r"golfer|tennis player|swimmer|gymnast|driver|astronaut|scientist|journalist|reporter|anchor|hero|suspect"
)
_ORG_NOUNS = (
    r"company|companies|corporation|firm|business|brand|retailer|chain|airline|automaker|carmaker|bank|network|"
    r"organi[sz]ation|agency|group|team|club|franchise|party|university|college|school|newspaper|publication|"
    r"outlet|studio|label|tech giant|giant|startup|app maker|streaming service|streamer|platform|social media "
    r"platform|union|league|court|committee|department|ministry|institution|charity|foundation|nonprofit|"
    r"manufacturer|maker|restaurant chain|fast food chain|store|supermarket|carrier|broadcaster"
)
_PLACE_NOUNS = (
    r"country|countries|nation|city|cities|town|state|states|province|region|territory|county|capital|island|"
    r"continent|village|neighbo[u]?rhood|base|air ?base|airport|port|river|lake|sea|ocean|mountain|volcano|"
    r"location|place|site|park|stadium|arena|venue|building|border|district|area|peninsula|desert|coast"
)
# "which NOUN", "which US national NOUN": up to two words between, none of them a verb ("which sport has ...").
_WHICH = r"\b(?:which|what)\s+(?:(?!(?:did|does|do|is|was|were|are|has|have|had|will|would|can|could)\b)[a-z-]+\s+){0,2}?"

# In order: the first rule whose pattern matches the asking clause decides.
_RULES: list[tuple[AnswerType, re.Pattern[str]]] = [
    (
        PERCENT,
        re.compile(
            r"\b(what|which) (percentage|percent|share|proportion|fraction)\b|\bhow much percent\b|\bby what percent", re.I
        ),
    ),
    (
        MONEY,
        re.compile(
            r"\bhow much (money|did .{0,60}\b(cost|pay|paid|spend|spent|raise|raised|earn|earned|sell|sold|charge|fine|"
            r"fined|lose|lost|owe|worth)|does .{0,60}\b(cost|pay|earn|charge|owe)|is .{0,40}\bworth)|"
            r"\bhow much (will|would|could|can|do|does|did|is|are|was|were|has|have|had)\b.{0,60}\b(cost|costs|pay|paid|"
            r"worth|fine|price|dollars|salary|spend|spent|raise|raised|earn|earned|charge|sell|sold|owe|lose|lost)|"
            r"\bwhat (is|was|were|are|will be) the (price|cost|fine|value|salary|budget|bill|jackpot|prize|valuation|"
            r"settlement|amount)\b|\bhow many (dollars|billions|millions)\b|"
            r"\bfor how much\b",
            re.I,
        ),
    ),
    (
        MEASURE,
        re.compile(
            r"\bhow (far|tall|deep|wide|heavy|fast|long is the|long was the|long are)\b|"
            r"\bhow many (miles|kilometers|kilometres|feet|meters|metres|inches|pounds|kilograms|tons|tonnes|acres|"
            r"degrees|gallons|barrels)\b|\bwhat (is|was) the (distance|height|length|depth|speed|weight|temperature|"
            r"magnitude)\b|\bhow much (farther|further|rain|snow|water|land|weight)\b",
            re.I,
        ),
    ),
    (AGE, re.compile(r"\bhow old\b|\bat what age\b|\bwhat age\b", re.I)),
    (DURATION, re.compile(r"\bhow long\b|\bhow many (years|months|weeks|days|hours|minutes|seconds)\b", re.I)),
    (AMOUNT, re.compile(r"\bhow (much|high|big|large)\b", re.I)),
    (
        COUNT,
        re.compile(
            r"\bhow many\b|\bwhat (is|was|were|are) the (number|total|toll|death toll|population|count|tally|score)\b|"
            r"\bthe (total )?(number|death toll) of\b",
            re.I,
        ),
    ),
    (
        DATE,
        re.compile(
            r"\bwhen\b|\b(in |on |by |until |since )?(which|what) (year|date|day|month|decade|century|season|time)\b|"
            r"\bhow soon\b",
            re.I,
        ),
    ),
    (NATIONALITY, re.compile(r"\bwhat nationality\b|\b(which|what) (ethnic|religious) group\b", re.I)),
    (PERSON, re.compile(r"\b(who|whom|whose)\b|" + _WHICH + r"(" + _PERSON_NOUNS + r")s?\b", re.I)),
    (
        PLACE,
        re.compile(
            r"\bwhere\b|" + _WHICH + r"(" + _PLACE_NOUNS + r")\b|\bwhat (is|was) the name of the (city|town|country|state)", re.I
        ),
    ),
    (ORGANIZATION, re.compile(_WHICH + r"(" + _ORG_NOUNS + r")\b", re.I)),
]


@lru_cache(maxsize=4096)
def expected_type(question: str) -> AnswerType | None:
    """The kind of thing the question asks for, or None when its wording does not say."""
    asking = [part for part in re.split(r"(?<=[.!?])\s+", question.strip()) if part]
    for part in reversed(asking[-2:]):
        # The wording nearest the start asks: "Where was Carter when he said ...?" asks for a place.
        found = [(match.start(), order, kind) for order, (kind, pattern) in enumerate(_RULES) if (match := pattern.search(part))]
        if found:
            return min(found, key=lambda f: (f[0], f[1]))[2]
    return None
