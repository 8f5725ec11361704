"""An answer generator backed by any LangChain chat model (OpenAI, Anthropic, Ollama, llama.cpp, vLLM).

The model is sent a chat in its own template: the rules (prompts/answer_system.txt), a worked example
as one question and its answer (prompts/answer_example.txt: a small model follows an example better
than rules), then the date, the numbered sources and the question (prompts/answer.txt). Each source is the part of
a retrieved passage that matched the question (its few sentences sharing most of the question's terms,
or the reader's best ones), with its title, outlet and date. Weak evidence is refused before the model
is called, by the evidence gate every answerer shares.

The call is bounded: a token cap sent in the form the provider's server reads, a wait for each piece of
the reply (setting llm_token_timeout_seconds, enforced by the provider's HTTP client), one deadline for
the whole reply (llm_timeout_seconds, all tries together), and retries with backoff only after
failures worth retrying.

The reply is never trusted, and is checked sentence by sentence as it arrives. Passages the model
wrote itself (numbered like the real ones), the prompt's own instructions repeated back, questions,
and a sentence the token cap cut short are dropped. Every other sentence must be backed by a source:
the one it cites, or, when it cites none or the wrong one, another source the same support check
finds backing it (the sentence is then cited to that source). A sentence no source backs (a claim the
model added from its own knowledge, a changed figure) is dropped and counted. Each cited source gets
the passage sentence that best supports the claim. A caller may pass `on_text` to see the answer grow:
it is called with the checked sentences so far, never with anything unchecked.

When the model fails, runs out of time, says NOT_FOUND, or writes nothing that survives, the question
is answered by the fallback generator (the extractive answer, which answers only what the evidence
gate admitted) with one line saying so, or refused (setting llm_fallback).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from config import Settings
from prompts import load_prompt
from retrieval.answer.extractive import mark
from retrieval.answer.protocols import AnswerGenerator, EvidenceGate
from retrieval.answer.types import REFUSAL, Citation, Draft
from retrieval.index.keywords import tokenize
from retrieval.ingest.text import split_sentences
from retrieval.passages import Passage, Query
from retrieval.read.candidates import figures
from retrieval.read.reader import Reader

logger = logging.getLogger(__name__)

PROMPT_FILE = "answer.txt"  # in the prompts package: the user's turn (date, sources, question)
SYSTEM_PROMPT_FILE = "answer_system.txt"  # the rules
EXAMPLE_PROMPT_FILE = "answer_example.txt"  # a worked example: the user's turn, then "Answer: " and the answer
# Sentences of each passage the model is shown: those sharing most terms with the question, in the
# passage's order. The whole window (three chunks) buries the answer for a small model and slows it.
EXCERPT_SENTENCES = 3
NOT_FOUND = "NOT_FOUND"
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# A sentence of the reply is backed when the passages it cites hold this share of its terms (and all its figures).
SUPPORT_SHARE = 0.6
# A sentence that names something (a capitalised word after its first) or states a figure is a claim.
_NAMED = re.compile(r"(?<!^)\b[A-Z][a-z]")
_NAME_WORD = re.compile(r"\b[A-Z][\w'-]+")
# A line that opens like a source in the prompt ("[3] Title (outlet, date)"): a passage the model wrote itself.
_PASSAGE_HEADER = re.compile(r"^\s*\[\d+\]\s*\S")
# The prompt's section labels; a reply that repeats them is repeating the prompt.
_PROMPT_LABEL = re.compile(r"^\s*(sources|question|rules|answer)\s*:\s*", re.IGNORECASE)
# Framing without a claim of its own ("The sources differ on this.") talks about the sources, briefly.
_FRAMING_WORDS = frozenset({"source", "sources", "article", "articles", "report", "reports", "passage", "passages"})
_FRAMING_MAX_WORDS = 12
# A sentence repeats a kept one when this share of its terms (and all its figures) are that one's.
REPEAT_SHARE = 0.8
# An uncited sentence is attributed to a source only when it has this many terms besides its figures.
ATTRIBUTE_MIN_TERMS = 3
# A sentence of the reply repeats the prompt's instructions when this share of its word pairs is theirs
# ("The sources do not say more." shares 3 of 5 with "If the sources do not contain the answer": framing, not an echo).
ECHO_SHARE = 0.75
_ECHO_MIN_PAIRS = 3
# Finish reasons meaning the token cap cut the reply (OpenAI and compatible servers, Anthropic, Ollama).
_CUT_SHORT = frozenset({"length", "max_tokens"})
_FINISH_KEYS = ("finish_reason", "stop_reason", "done_reason")
# Statuses worth another try: timeout, conflict, too early, rate limit, and the server's own failures.
_RETRY_STATUSES = frozenset({408, 409, 425, 429})

NOTES = {
    "error": "The language model is unavailable right now",
    "timeout": "The language model took too long",
    "unsupported": "The language model's answer was not backed by the articles",
    "not_found": "The language model found no answer in the articles",
    "off_question": "The language model's answer did not give what was asked",
    "conflict": "The articles disagree on this",
}
# A question asking for a figure ("How many ...?", "How far ...?"): an answer to it states one.
_ASKS_FOR_FIGURE = re.compile(r"^\W*(how (many|much|far|long|old|big|large|tall|high)|what (percentage|share|number))\b", re.I)
FALLBACK_NOTE = "{reason}, so this answer quotes the articles directly."
REFUSED_NOTE = "{reason}, so I can't answer this now."


class LLMError(RuntimeError):
    """The chat model could not be set up."""


class LLMCallError(RuntimeError):
    """The chat model did not give a reply: `reason` is "error" or "timeout"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Reply:
    """What the model wrote, and whether the token cap cut it short."""

    text: str
    cut_short: bool = False


@dataclass
class Reading:
    """The reply after the support check: the sentences kept (each cited), how many were dropped, whether it said NOT_FOUND.

    `attributed` counts the kept sentences the check gave a citation the model did not write (none, or a wrong one).
    """

    kept: list[str] = field(default_factory=list)
    dropped: int = 0
    not_found: bool = False
    attributed: int = 0

    @property
    def answers(self) -> bool:
        """Some kept sentence makes a cited claim (framing alone is no answer)."""
        return any(_MARKER.search(sentence) for sentence in self.kept)


def model_options(settings: Settings) -> dict[str, Any]:
    """init_chat_model's arguments for the settings: the token cap and timeout in each provider's own names.

    The timeout given to the provider's HTTP client is the wait for each piece of the reply
    (llm_token_timeout_seconds: a read timeout, so a streamed reply may take longer as long as it keeps
    coming); the deadline for the whole reply is newsbot's own (llm_timeout_seconds, LLMGenerator).
    newsbot retries by itself (only what is worth retrying), so the providers' own retries are off.
    """
    provider = settings.llm_model.split(":", 1)[0].lower() if ":" in settings.llm_model else ""
    cap, timeout = settings.llm_max_tokens, min(settings.llm_token_timeout_seconds, settings.llm_timeout_seconds)
    options: dict[str, Any] = {"temperature": settings.llm_temperature}
    if settings.llm_base_url:
        options["base_url"] = settings.llm_base_url
    if provider == "ollama":
        options.update(num_predict=cap, client_kwargs={"timeout": timeout})
        return options
    options.update(max_tokens=cap, timeout=timeout, max_retries=0)
    if provider == "openai" and settings.llm_base_url:
        # ChatOpenAI sends max_tokens as max_completion_tokens, which llama.cpp's server (and other
        # OpenAI-compatible ones) may ignore: one reply ran until the context was full. Send both.
        options["extra_body"] = {"max_tokens": cap}
        if not os.environ.get("OPENAI_API_KEY"):
            options["api_key"] = "none"  # a local server asks for no key; the OpenAI client insists on one
    return options


class LLMGenerator:
    """Writes answers with a chat model from the retrieved passages alone, and checks every sentence it writes."""

    def __init__(
        self,
        model: BaseChatModel,
        gate: EvidenceGate,
        *,
        reader: Reader | None = None,
        fallback: AnswerGenerator | None = None,
        max_passages: int = 6,
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.gate = gate
        self.reader = reader
        self.fallback = fallback
        self.max_passages = max_passages
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.system = load_prompt(SYSTEM_PROMPT_FILE)
        example = load_prompt(EXAMPLE_PROMPT_FILE)
        self.example_question, _, self.example_answer = (part.strip() for part in example.partition("\nAnswer: "))
        self.template = load_prompt(PROMPT_FILE)
        # What a reply must not repeat back: the rules and the worked example.
        self.instructions = _word_pairs(f"{self.system}\n{example}")

    @classmethod
    def from_settings(
        cls, settings: Settings, gate: EvidenceGate, reader: Reader | None = None, fallback: AnswerGenerator | None = None
    ) -> LLMGenerator:
        try:
            from langchain.chat_models import init_chat_model
        except ImportError as exc:
            raise LLMError(
                'answer_backend "llm" needs LangChain and the provider package: '
                "pip install -e '.[llm]' (or e.g. langchain-openai)"
            ) from exc
        try:
            model = init_chat_model(settings.llm_model, **model_options(settings))
        except Exception as exc:  # provider packages raise their own types
            raise LLMError(f"cannot set up llm_model {settings.llm_model!r}: {exc}") from exc
        return cls(
            model,
            gate,
            reader=reader,
            fallback=fallback if settings.llm_fallback == "extractive" else None,
            max_passages=settings.llm_passages,
            timeout=settings.llm_timeout_seconds,
            retries=settings.llm_retries,
        )

    def streams(self) -> bool:
        return True

    def messages(self, query: Query, shown: list[Passage]) -> list[BaseMessage]:
        """The chat the model is sent: the rules, a worked example, then the date, the sources and the question."""
        sources = "\n\n".join(
            f"[{i}] {p.title} ({', '.join(x for x in (p.source, p.published) if x) or 'undated'})\n{p.text}"
            for i, p in enumerate(shown, start=1)
        )
        today = query.as_of or date.today()
        user = self.template.format(question=query.text, sources=sources, history="", today=f"{today:%A %d %B %Y}")
        return [
            SystemMessage(self.system),
            HumanMessage(self.example_question),
            AIMessage(self.example_answer),
            HumanMessage(user),
        ]

    def generate(self, query: Query, passages: list[Passage], on_text: Callable[[str], None] | None = None) -> Draft:
        """The model's checked answer; `on_text`, if given, sees the checked answer so far each time it grows."""
        if not self.gate.admits(query, passages):
            return Draft(REFUSAL, refused=True, citations=[], backend="llm")
        shown = self._evidence(query, passages)
        check = SentenceCheck(shown, self.instructions)
        emit = None
        if on_text is not None:

            def emit(sentences: list[str]) -> None:
                if sentences and gives_what_was_asked(query.text, check.reading.kept):
                    draft = self._cite(" ".join(check.reading.kept), shown)
                    if draft is not None:
                        on_text(draft.text)

        try:
            self._call(self.messages(query, shown), check, emit)
        except LLMCallError as exc:
            logger.warning("the chat model gave no answer (%s): %s", exc.reason, exc)
            return self._fall_back(query, passages, exc.reason, dropped=check.reading.dropped)
        reading = check.reading
        if reading.answers and not gives_what_was_asked(query.text, reading.kept):
            return self._fall_back(query, passages, "off_question", dropped=reading.dropped + len(reading.kept))
        if reading.answers:
            draft = self._cite(" ".join(reading.kept), shown)
            if draft is not None:
                draft = replace(draft, backend="llm", dropped=reading.dropped)
                return self._disagreement(query, passages, draft) or draft
        reason = "not_found" if reading.not_found else "unsupported"
        return self._fall_back(query, passages, reason, dropped=reading.dropped)

    # -- the call ---------------------------------------------------------------------------------

    def _call(self, messages: list[BaseMessage], check: SentenceCheck, emit: Callable[[list[str]], None] | None) -> None:
        """Feed the model's reply to `check` within the deadline, trying again (with backoff) after failures worth retrying.

        Once a sentence has been passed on (`emit`), a failure is not retried: what was shown stays shown.
        """
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            try:
                self._stream(messages, deadline, check, emit)
                return
            except LLMCallError:
                raise
            except Exception as exc:  # provider packages raise their own types
                wait = self.backoff * 2**attempt
                shown = emit is not None and bool(check.reading.kept)
                if shown or attempt >= self.retries or not retryable(exc) or time.monotonic() + wait >= deadline:
                    raise LLMCallError(_reason(exc), f"{type(exc).__name__}: {exc}") from exc
                logger.info("the chat model failed (%s: %s); trying again in %.1f s", type(exc).__name__, exc, wait)
                check.reset()
                self.sleep(wait)
                attempt += 1

    def _stream(
        self, messages: list[BaseMessage], deadline: float, check: SentenceCheck, emit: Callable[[list[str]], None] | None
    ) -> None:
        """Read the reply as it is written, checking each sentence as soon as it is whole, and stop (closing the
        connection) once the deadline has passed.

        A reply that fails part-way is a failed call: nothing after the last whole sentence is ever shown.
        """
        finish = ""
        stream = self.model.stream(messages)
        try:
            for chunk in stream:
                kept = check.feed(_text(chunk.content))
                if emit is not None:
                    emit(kept)
                metadata = getattr(chunk, "response_metadata", None) or {}
                finish = next((str(metadata[key]) for key in _FINISH_KEYS if metadata.get(key)), finish)
                if time.monotonic() > deadline:
                    raise LLMCallError("timeout", f"no whole reply within {self.timeout:g} s (setting llm_timeout_seconds)")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        kept = check.finish(cut_short=finish in _CUT_SHORT)
        if emit is not None:
            emit(kept)

    def _disagreement(self, query: Query, passages: list[Passage], draft: Draft) -> Draft | None:
        """The fallback's answer when it finds the sources disagreeing and the model did not say so.

        A small model picks one of two figures ("around 4,700" where another source says "more than
        4,600"); the extractive answer quotes both. Its answer replaces the model's, with a line saying why.
        """
        if self.fallback is None or draft.conflict:
            return None
        other = self.fallback.generate(query, passages)
        if other.refused or not other.conflict:
            return None
        note = FALLBACK_NOTE.format(reason=NOTES["conflict"])
        return replace(other, backend="extractive", fallback="conflict", dropped=draft.dropped, note=note)

    def _fall_back(self, query: Query, passages: list[Passage], reason: str, *, dropped: int) -> Draft:
        """The fallback generator's answer with one line on why, or a refusal that says why."""
        if self.fallback is not None:
            draft = self.fallback.generate(query, passages)
            if not draft.refused:
                note = FALLBACK_NOTE.format(reason=NOTES[reason])
                return replace(draft, backend="extractive", fallback=reason, dropped=dropped, note=note)
            return replace(draft, backend="extractive", fallback=reason, dropped=dropped)
        if reason == "not_found":  # the model's own refusal needs no excuse
            return Draft(REFUSAL, refused=True, citations=[], backend="llm", dropped=dropped)
        note = REFUSED_NOTE.format(reason=NOTES[reason])
        return Draft(REFUSAL, refused=True, citations=[], backend="llm", fallback=reason, dropped=dropped, note=note)

    # -- the check --------------------------------------------------------------------------------

    def read(self, reply: Reply, shown: list[Passage]) -> Reading:
        """Keep the sentences of a whole reply that the passages back, cited to them; count the rest."""
        check = SentenceCheck(shown, self.instructions)
        check.feed(reply.text)
        check.finish(cut_short=reply.cut_short)
        return check.reading

    def _evidence(self, query: Query, passages: list[Passage]) -> list[Passage]:
        """The passages the model is shown, each cut to the sentences that matched the question.

        With a reader: the passages holding the sentences it rates highest, cut to those sentences.
        Without: the retrieved passages in order, cut to the sentences sharing most of the question's terms.
        """
        if self.reader is not None:
            chosen: dict[str, tuple[Passage, list[str]]] = {}
            for candidate in self.reader.read(query, passages):
                passage = candidate.passage
                if passage.chunk_id not in chosen:
                    if len(chosen) >= self.max_passages:
                        continue
                    chosen[passage.chunk_id] = (passage, [])
                best = chosen[passage.chunk_id][1]
                if len(best) < EXCERPT_SENTENCES:
                    best.append(candidate.sentence)
            if chosen:
                return [_cut(passage, best) for passage, best in chosen.values()]
        asked = set(tokenize(query.text))
        shown = []
        for passage in passages[: self.max_passages]:
            sentences = split_sentences(passage.text)
            ranked = sorted(sentences, key=lambda s: len(asked & set(tokenize(s))), reverse=True)
            shown.append(_cut(passage, ranked[:EXCERPT_SENTENCES]))
        return shown

    def _cite(self, text: str, shown: list[Passage]) -> Draft | None:
        """Renumber the markers in order of use, one number per article; None if it cited nothing valid."""
        numbers: dict[str, int] = {}
        passage_of: dict[str, Passage] = {}
        claims: dict[str, list[str]] = {}

        def renumber(match: re.Match[str]) -> str:
            kept = []
            for raw in match.group(1).split(","):
                index = int(raw) - 1
                if 0 <= index < len(shown):
                    passage = shown[index]
                    n = numbers.setdefault(passage.doc_id, len(numbers) + 1)
                    passage_of.setdefault(passage.doc_id, passage)
                    claims.setdefault(passage.doc_id, []).append(_claim_around(text, match.start()))
                    kept.append(f"[{n}]")
            return "".join(dict.fromkeys(kept))

        rewritten = re.sub(r"\s+([.,;:])", r"\1", _MARKER.sub(renumber, text)).strip()
        if not numbers:
            return None
        citations = [
            Citation.of(n, passage_of[doc_id], _supporting_sentence(passage_of[doc_id].text, " ".join(claims[doc_id])))
            for doc_id, n in numbers.items()
        ]
        return Draft(rewritten, refused=False, citations=citations, conflict=_says_differ(rewritten))


def gives_what_was_asked(question: str, kept: list[str]) -> bool:
    """False for an answer that cannot be one: a question asking for a figure answered without any.

    A small model sometimes writes a backed sentence beside the point ("He said more air raids are
    needed [1]." for "How many troops ...?"): true to the source, no answer to the question.
    """
    if _ASKS_FOR_FIGURE.search(question):
        return any(figures(strip_markers(sentence)) for sentence in kept)
    return True


def _cut(passage: Passage, sentences: list[str]) -> Passage:
    """The passage with only `sentences` of its text, in the passage's order."""
    wanted = set(sentences)
    kept = [s for s in split_sentences(passage.text) if s in wanted]
    return replace(passage, text=" ".join(kept)) if kept else passage


def _says_differ(text: str) -> bool:
    """The answer says its sources disagree ("The sources differ on this."), not that a figure differs from another."""
    return bool(re.search(r"\bsources?\b[^.]{0,40}\b(differ|disagree|conflict)", text, re.IGNORECASE))


class SentenceCheck:
    """The support check, fed the reply as it streams in: each sentence is judged as soon as it is whole.

    `feed` and `finish` return the sentences newly kept (cited, ready to show); `reading` is the tally.
    A line opening like a source ("[3] Title ...") starts a passage the model wrote itself, dropped to
    the next blank line; "Sources:", "Question:" and "Rules:" lines repeat the prompt; "Answer:" is cut
    off the answer that follows it. Framing ("The sources differ on this.") is held back until a cited
    claim is kept, and dropped if none is.
    """

    # A line is classified (label, a source of the model's own, or answer text) once this much of it is in.
    _CLASSIFY_AFTER = 24

    def __init__(self, shown: list[Passage], instructions: set[tuple[str, str]]) -> None:
        self.shown = shown
        self.instructions = instructions
        self.reset()

    def reset(self) -> None:
        """Forget the reply so far (a failed try's)."""
        self.reading = Reading()
        self._line = ""  # the unfinished line's text not yet judged
        self._mode = ""  # what the unfinished line is: "" (not known yet), "body", "skip"
        self._in_passage = False
        self._held: list[str] = []  # framing waiting for a cited claim

    def feed(self, text: str) -> list[str]:
        kept: list[str] = []
        self._line += text
        while "\n" in self._line:
            line, self._line = self._line.split("\n", 1)
            kept += self._whole_line(line)
        if self._line and not self._mode and len(self._line) >= self._CLASSIFY_AFTER:
            self._line, self._mode = self._classify(self._line)
        if self._mode == "body" and self._line.rfind("[") <= self._line.rfind("]"):  # not inside a marker ("[1")
            sentences = marked_sentences(self._line)
            if len(sentences) > 1:  # all but the last are whole (a marker after the last stop joins it)
                last = sentences[-1]
                self._line = self._line[self._line.rfind(last) :] if last in self._line else last
                kept += self._judge_all(sentences[:-1])
        return kept

    def finish(self, *, cut_short: bool = False) -> list[str]:
        """The reply is complete: judge what is left. A sentence the token cap cut short is dropped."""
        line, self._line = self._line, ""
        kept = self._whole_line(line, last=True, cut_short=cut_short)
        if self._held and not self.reading.answers:
            self.reading.dropped += len(self._held)  # framing with nothing it frames is not shown either
        self._held = []
        return kept

    def _whole_line(self, line: str, *, last: bool = False, cut_short: bool = False) -> list[str]:
        mode = self._mode
        self._mode = ""
        if not line.strip():
            self._in_passage = False
            return []
        if not mode:
            line, mode = self._classify(line)
        if mode != "body":
            return []
        sentences = marked_sentences(line)
        if last and cut_short and sentences and not re.search(r"[.!?…\]\"”’')]\s*$", sentences[-1]):
            sentences.pop()  # the token cap cut it mid-sentence: what it would have said is unknown
            self.reading.dropped += 1
        return self._judge_all(sentences)

    def _classify(self, line: str) -> tuple[str, str]:
        """The line without an "Answer:" label, and whether it is answer text ("body") or not ("skip", counted)."""
        label = _PROMPT_LABEL.match(line)
        if label and label.group(1).lower() == "answer":
            return line[label.end() :], "body"  # "Answer: ..." is the answer itself
        if label:
            # "Sources:" starts passages of the model's own; "Question:"/"Rules:" repeat the prompt.
            self._in_passage = label.group(1).lower() == "sources"
            self.reading.dropped += 1
            return line, "skip"
        if self._in_passage or _PASSAGE_HEADER.match(line):
            self._in_passage = True
            self.reading.dropped += 1
            return line, "skip"
        return line, "body"

    def _judge_all(self, sentences: list[str]) -> list[str]:
        kept: list[str] = []
        for sentence in sentences:
            verdict, written = self._judge(sentence)
            if verdict == "not_found":
                self.reading.not_found = True
            elif verdict == "framing":
                if self.reading.answers:
                    self.reading.kept.append(written)
                    kept.append(written)
                else:
                    self._held.append(written)
            elif verdict in ("keep", "attributed") and self._repeats(written):
                self.reading.dropped += 1
                logger.info("dropped an answer sentence (repeats an earlier one): %.80s", sentence)
            elif verdict in ("keep", "attributed"):
                self.reading.attributed += verdict == "attributed"
                kept += [*self._held, written]
                self.reading.kept += [*self._held, written]
                self._held = []
            else:
                self.reading.dropped += 1
                logger.info("dropped an answer sentence (%s): %.80s", verdict, sentence)
        return kept

    def _repeats(self, sentence: str) -> bool:
        """The sentence says again what a kept one said: its figures, and most of its terms, are that one's."""
        claim = strip_markers(sentence)
        terms = set(tokenize(claim))
        for kept in self.reading.kept:
            earlier = strip_markers(kept)
            if figures(claim) <= figures(earlier) and len(terms & set(tokenize(earlier))) >= REPEAT_SHARE * len(terms):
                return True
        return False

    def _judge(self, sentence: str) -> tuple[str, str]:
        """What to do with one sentence of the reply, and the sentence to show.

        "keep" (backed by what it cites), "attributed" (backed by a source it did not cite, now cited),
        "framing", "not_found", or why it is dropped.
        """
        shown = self.shown
        claim = _MARKER.sub(" ", sentence).strip()
        if re.fullmatch(r"\W*NOT_FOUND\W*", claim, re.IGNORECASE):
            return "not_found", sentence
        pairs = _word_pairs(claim)
        echoed = len(pairs) >= _ECHO_MIN_PAIRS and len(pairs & self.instructions) / len(pairs) >= ECHO_SHARE
        if echoed or NOT_FOUND.lower() in claim.lower():
            return "echoes the prompt", sentence
        if claim.rstrip("\"”’')").endswith("?"):
            return "a question", sentence
        numbers = cited_numbers(sentence)
        cited = [shown[i - 1] for i in numbers if 1 <= i <= len(shown)]
        if cited and supported(claim, cited):  # a number that was never shown is dropped from the markers (_cite)
            return "keep", sentence
        if is_framing(claim):
            return "framing", sentence
        backer = attribute(claim, shown)
        if backer is None:
            return ("not backed by the passages it cites" if numbers else "a claim without a citation"), sentence
        return "attributed", mark(re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s+", " ", claim)), [backer + 1])


def attribute(claim: str, passages: list[Passage]) -> int | None:
    """The index of the passage that backs a claim best (by the support check, then the share of its terms); None if none does.

    A claim of fewer than `ATTRIBUTE_MIN_TERMS` terms ("]] 560 [", "Yes.") says too little to be anyone's.
    """
    terms = set(tokenize(claim))
    if len(terms - figures(claim)) < ATTRIBUTE_MIN_TERMS:
        return None
    backers = [i for i, passage in enumerate(passages) if supported(claim, [passage])]
    if not backers:
        return None

    def share(i: int) -> int:
        return len(terms & set(tokenize(f"{passages[i].title}\n{passages[i].text}")))

    return max(backers, key=lambda i: (share(i), -i))


def retryable(exc: BaseException) -> bool:
    """Whether another try could succeed: a lost connection, a timeout, a rate limit or a server failure.

    A bad request, a wrong key or an unknown model fails the same way every time. Provider packages
    raise their own types, so this reads the HTTP status they carry, then the kind of failure.
    """
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in _RETRY_STATUSES or status >= 500
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"APIConnectionError", "APITimeoutError", "TransportError", "TimeoutException", "NetworkError"})


def _reason(exc: BaseException) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    timed_out = isinstance(exc, TimeoutError) or bool(names & {"APITimeoutError", "TimeoutException", "ReadTimeout"})
    return "timeout" if timed_out else "error"


def _text(content: Any) -> str:
    """The text of a message chunk: a string, or the text blocks of a list (Anthropic)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            block if isinstance(block, str) else str(block.get("text", "")) for block in content if isinstance(block, str | dict)
        )
    return str(content)


def _word_pairs(text: str) -> set[tuple[str, str]]:
    words = re.findall(r"[a-z0-9_]+", text.lower())
    return set(zip(words, words[1:]))


def is_framing(sentence: str) -> bool:
    """A short sentence about the sources with no figure or name of its own ("The sources differ on this.")."""
    claim = _MARKER.sub(" ", sentence).strip()
    words = re.findall(r"[A-Za-z']+", claim.lower())
    return (
        0 < len(words) <= _FRAMING_MAX_WORDS
        and bool(_FRAMING_WORDS & set(words))
        and not figures(claim)
        and not _NAMED.search(claim)
    )


def _claim_around(text: str, position: int) -> str:
    """The sentence of the answer that ends at a citation marker."""
    start = max(text.rfind(".", 0, max(position - 1, 0)), text.rfind("\n", 0, position)) + 1
    return text[start:position]


def _supporting_sentence(passage: str, claim: str) -> str:
    """The passage sentence that states the claim's figures, then its names, and shares most of its terms: the quote
    a reader can check ("... near Qayara air base" is quoted from the sentence naming Qayara, not from one sharing
    "base", "near" and "forces")."""
    wanted = set(tokenize(claim))
    stated = figures(claim)
    names = set(tokenize(" ".join(_NAME_WORD.findall(claim)))) - set(tokenize(claim.split(None, 1)[0] if claim.split() else ""))
    sentences = split_sentences(passage) or [passage]

    def key(sentence: str) -> tuple[int, int, int]:
        terms = set(tokenize(sentence))
        return len(stated & figures(sentence)), len(names & terms), len(wanted & terms)

    return max(sentences, key=key)


_LEADING_MARKERS = re.compile(r"^((?:\[\d+(?:\s*,\s*\d+)*\]\s*)+)")


def marked_sentences(text: str) -> list[str]:
    """The sentences of a text, each with its own markers: '... that." [1] Next' gives the [1] to the first."""
    sentences: list[str] = []
    for sentence in split_sentences(text):
        leading = _LEADING_MARKERS.match(sentence)
        if leading and sentences:
            sentences[-1] = f"{sentences[-1]} {leading.group(1).strip()}"
            sentence = sentence[leading.end() :]
        if sentence.strip():
            sentences.append(sentence.strip())
    return sentences


def strip_markers(sentence: str) -> str:
    """The sentence without its [n] markers."""
    return _MARKER.sub(" ", sentence).strip()


def cited_numbers(sentence: str) -> list[int]:
    """The source numbers a sentence cites, in order."""
    return [int(raw) for match in _MARKER.finditer(sentence) for raw in match.group(1).split(",")]


def supported(claim: str, passages: list[Passage]) -> bool:
    """Whether the cited passages back a sentence of the model's answer.

    Every figure the claim states must be in a cited passage, and the cited passages must hold most
    of its terms: a claim the model added from its own knowledge, or a figure it changed, fails.
    """
    claim = _MARKER.sub(" ", claim)
    terms = set(tokenize(claim))
    if not terms:
        return False
    text = " ".join(f"{p.title}\n{p.text}" for p in passages)
    if not figures(claim) <= figures(text):
        return False
    return len(terms & set(tokenize(text))) / len(terms) >= SUPPORT_SHARE
