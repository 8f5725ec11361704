"""An answer generator backed by any LangChain chat model (OpenAI, Anthropic, Ollama, llama.cpp, vLLM).

The model sees only numbered passages and must cite them. With a reader, the passages it sees are
the ones holding the sentences the reader believes answer the question. Weak evidence is refused
before the model is called, by the evidence gate every answerer shares.

The call is bounded: a token cap sent in the form the provider's server reads, one deadline for the
whole reply (all tries together), and retries with backoff only after failures worth retrying.

The reply is never trusted. Passages the model wrote itself (numbered like the real ones), the
prompt's own instructions repeated back, questions, and a sentence the token cap cut short are
dropped; so is every sentence whose figures or words no passage it cites backs (a claim the model
added from its own knowledge). Each cited source gets the passage sentence that best supports the
claim. The model's NOT_FOUND counts as a refusal only when nothing else in its reply survives.

When the model fails, runs out of time, or writes nothing that survives, the question is answered
by the fallback generator (the extractive answer) with one line saying so, or refused
(setting llm_fallback).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import PromptTemplate

from config import Settings
from prompts import load_prompt
from retrieval.answer.protocols import AnswerGenerator, EvidenceGate
from retrieval.answer.types import REFUSAL, Citation, Draft
from retrieval.index.keywords import tokenize
from retrieval.ingest.text import split_sentences
from retrieval.passages import Passage, Query
from retrieval.read.candidates import figures
from retrieval.read.reader import Reader

logger = logging.getLogger(__name__)

PROMPT_FILE = "answer.txt"  # in the prompts package
NOT_FOUND = "NOT_FOUND"
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# A sentence of the reply is backed when the passages it cites hold this share of its terms (and all its figures).
SUPPORT_SHARE = 0.6
# A sentence that names something (a capitalised word after its first) or states a figure is a claim.
_NAMED = re.compile(r"(?<!^)\b[A-Z][a-z]")
# A line that opens like a source in the prompt ("[3] Title (outlet, date)"): a passage the model wrote itself.
_PASSAGE_HEADER = re.compile(r"^\s*\[\d+\]\s*\S")
# The prompt's section labels; a reply that repeats them is repeating the prompt.
_PROMPT_LABEL = re.compile(r"^\s*(sources|question|rules|answer)\s*:\s*", re.IGNORECASE)
# Framing without a claim of its own ("The sources differ on this.") talks about the sources, briefly.
_FRAMING_WORDS = frozenset({"source", "sources", "article", "articles", "report", "reports", "passage", "passages"})
_FRAMING_MAX_WORDS = 12
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
}
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


@dataclass(frozen=True)
class Reading:
    """The reply after the support check: the sentences kept, how many were dropped, whether it said NOT_FOUND."""

    kept: list[str]
    dropped: int
    not_found: bool

    @property
    def answers(self) -> bool:
        """Some kept sentence makes a cited claim (framing alone is no answer)."""
        return any(_MARKER.search(sentence) for sentence in self.kept)


def model_options(settings: Settings) -> dict[str, Any]:
    """init_chat_model's arguments for the settings: the token cap and timeout in each provider's own names.

    newsbot retries by itself (only what is worth retrying), so the providers' own retries are off.
    """
    provider = settings.llm_model.split(":", 1)[0].lower() if ":" in settings.llm_model else ""
    cap, timeout = settings.llm_max_tokens, settings.llm_timeout_seconds
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
        timeout: float = 60.0,
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
        self.template = load_prompt(PROMPT_FILE)
        self.prompt = PromptTemplate.from_template(self.template)

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

    def generate(self, query: Query, passages: list[Passage]) -> Draft:
        if not self.gate.admits(query, passages):
            return Draft(REFUSAL, refused=True, citations=[], backend="llm")
        shown = self._evidence(query, passages)
        sources = "\n\n".join(
            f"[{i}] {p.title} ({', '.join(x for x in (p.source, p.published) if x) or 'undated'})\n{p.text}"
            for i, p in enumerate(shown, start=1)
        )
        message = self.prompt.format(question=query.text, sources=sources, history="")
        try:
            reply = self._call(message)
        except LLMCallError as exc:
            logger.warning("the chat model gave no answer (%s): %s", exc.reason, exc)
            return self._fall_back(query, passages, exc.reason, dropped=0)
        reading = self.read(reply, shown)
        if reading.answers:
            draft = self._cite(" ".join(reading.kept), shown)
            if draft is not None:
                return replace(draft, backend="llm", dropped=reading.dropped)
        if reading.not_found:
            return Draft(REFUSAL, refused=True, citations=[], backend="llm", dropped=reading.dropped)
        return self._fall_back(query, passages, "unsupported", dropped=reading.dropped)

    # -- the call ---------------------------------------------------------------------------------

    def _call(self, message: str) -> Reply:
        """The model's reply within the deadline, tried again (with backoff) after failures worth retrying."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            try:
                return self._stream(message, deadline)
            except LLMCallError:
                raise
            except Exception as exc:  # provider packages raise their own types
                wait = self.backoff * 2**attempt
                if attempt >= self.retries or not retryable(exc) or time.monotonic() + wait >= deadline:
                    raise LLMCallError(_reason(exc), f"{type(exc).__name__}: {exc}") from exc
                logger.info("the chat model failed (%s: %s); trying again in %.1f s", type(exc).__name__, exc, wait)
                self.sleep(wait)
                attempt += 1

    def _stream(self, message: str, deadline: float) -> Reply:
        """Read the reply as it is written, and stop (closing the connection) once the deadline has passed.

        A reply that fails part-way is a failed call: a half-written answer is never shown.
        """
        parts: list[str] = []
        finish = ""
        stream = self.model.stream(message)
        try:
            for chunk in stream:
                parts.append(_text(chunk.content))
                metadata = getattr(chunk, "response_metadata", None) or {}
                finish = next((str(metadata[key]) for key in _FINISH_KEYS if metadata.get(key)), finish)
                if time.monotonic() > deadline:
                    raise LLMCallError("timeout", f"no whole reply within {self.timeout:g} s (setting llm_timeout_seconds)")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        return Reply("".join(parts).strip(), cut_short=finish in _CUT_SHORT)

    def _fall_back(self, query: Query, passages: list[Passage], reason: str, *, dropped: int) -> Draft:
        """The fallback generator's answer with one line on why, or a refusal that says why."""
        if self.fallback is not None:
            draft = self.fallback.generate(query, passages)
            if not draft.refused:
                note = FALLBACK_NOTE.format(reason=NOTES[reason])
                return replace(draft, backend="extractive", fallback=reason, dropped=dropped, note=note)
            return replace(draft, backend="extractive", fallback=reason, dropped=dropped)
        note = REFUSED_NOTE.format(reason=NOTES[reason])
        return Draft(REFUSAL, refused=True, citations=[], backend="llm", fallback=reason, dropped=dropped, note=note)

    # -- the check --------------------------------------------------------------------------------

    def read(self, reply: Reply, shown: list[Passage]) -> Reading:
        """Keep the sentences of the reply that the passages they cite back; count the rest."""
        instructions = _word_pairs(self.template.replace("{question}", ""))
        lines = reply.text.splitlines()
        kept: list[str] = []
        dropped = 0
        not_found = False
        body: list[str] = []
        in_passage = False
        for line in lines:
            if not line.strip():
                in_passage = False
                body.append("")
                continue
            label = _PROMPT_LABEL.match(line)
            if label and label.group(1).lower() == "answer":
                line = line[label.end() :]  # "Answer: ..." is the answer itself
            elif label:
                # "Sources:" starts passages of the model's own; "Question:"/"Rules:" repeat the prompt.
                in_passage = label.group(1).lower() == "sources"
                dropped += 1
                continue
            if in_passage or _PASSAGE_HEADER.match(line):
                in_passage = True
                dropped += max(1, len(split_sentences(line)))
                continue
            body.append(line)
        sentences = marked_sentences("\n".join(body))
        if reply.cut_short and sentences and not re.search(r"[.!?…\]\"”’')]\s*$", sentences[-1]):
            sentences.pop()  # the token cap cut it mid-sentence: what it would have said is unknown
            dropped += 1
        for sentence in sentences:
            verdict = self._judge(sentence, shown, instructions)
            if verdict == "not_found":
                not_found = True
            elif verdict == "keep":
                kept.append(sentence)
            else:
                dropped += 1
                logger.info("dropped an answer sentence (%s): %.80s", verdict, sentence)
        if not any(_MARKER.search(sentence) for sentence in kept):
            dropped += len(kept)  # framing with nothing it frames is not shown either
            kept = []
        return Reading(kept, dropped, not_found)

    def _judge(self, sentence: str, shown: list[Passage], instructions: set[tuple[str, str]]) -> str:
        """What to do with one sentence of the reply: "keep", "not_found", or why it is dropped."""
        claim = _MARKER.sub(" ", sentence).strip()
        if re.fullmatch(r"\W*NOT_FOUND\W*", claim, re.IGNORECASE):
            return "not_found"
        pairs = _word_pairs(claim)
        echoed = len(pairs) >= _ECHO_MIN_PAIRS and len(pairs & instructions) / len(pairs) >= ECHO_SHARE
        if echoed or NOT_FOUND.lower() in claim.lower():
            return "echoes the prompt"
        if claim.rstrip("\"”’')").endswith("?"):
            return "a question"
        numbers = cited_numbers(sentence)
        cited = [shown[i - 1] for i in numbers if 1 <= i <= len(shown)]
        if numbers and not cited:
            return "cites only passages that were not shown"
        if cited:  # a number that was never shown is dropped from the markers (_cite)
            return "keep" if supported(claim, cited) else "not backed by the passages it cites"
        return "keep" if is_framing(claim) else "a claim without a citation"

    def _evidence(self, query: Query, passages: list[Passage]) -> list[Passage]:
        """The passages the model is shown: those holding the sentences the reader rates highest."""
        if self.reader is None:
            return passages[: self.max_passages]
        chosen: dict[str, Passage] = {}
        for candidate in self.reader.read(query, passages):
            chosen.setdefault(candidate.passage.chunk_id, candidate.passage)
            if len(chosen) >= self.max_passages:
                break
        return list(chosen.values()) or passages[: self.max_passages]

    def _cite(self, text: str, shown: list[Passage]) -> Draft | None:
        """Renumber the model's markers in order of use, one number per article; None if it cited nothing valid."""
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
        return Draft(rewritten, refused=False, citations=citations, conflict="differ" in rewritten.lower())


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
    """The passage sentence that states the claim's figures and shares most of its terms: the quote a reader can check."""
    wanted = set(tokenize(claim))
    stated = figures(claim)
    sentences = split_sentences(passage) or [passage]
    return max(sentences, key=lambda sentence: (len(stated & figures(sentence)), len(wanted & set(tokenize(sentence)))))


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
