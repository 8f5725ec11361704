"""An answer generator backed by any LangChain chat model (OpenAI, Anthropic, Ollama, llama.cpp, vLLM).

The model sees only numbered passages and must cite them. With a reader, the passages it sees are
the ones holding the sentences the reader believes answer the question. Its reply is checked
sentence by sentence: a sentence whose figures or words no cited passage backs (a claim the model
added from its own knowledge) is dropped, and each cited source gets the passage sentence that best
supports the claim. Weak evidence is refused before the model is called, by the evidence gate
every answerer shares.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import PromptTemplate

from config import Settings
from prompts import load_prompt
from retrieval.answer.protocols import EvidenceGate
from retrieval.answer.types import REFUSAL, Citation, Draft
from retrieval.index.keywords import tokenize
from retrieval.ingest.text import split_sentences
from retrieval.passages import Passage, Query
from retrieval.read.candidates import figures
from retrieval.read.reader import Reader

logger = logging.getLogger(__name__)

PROMPT_FILE = "answer.txt"  # in the prompts package
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# A sentence of the reply is backed when the passages it cites hold this share of its terms (and all its figures).
SUPPORT_SHARE = 0.6
# A sentence that names something (a capitalised word after its first) or states a figure is a claim.
_NAMED = re.compile(r"(?<!^)\b[A-Z][a-z]")


class LLMError(RuntimeError):
    """The chat model could not be set up."""


class LLMGenerator:
    """Writes answers with a chat model from the retrieved passages alone."""

    def __init__(self, model: BaseChatModel, gate: EvidenceGate, *, reader: Reader | None = None, max_passages: int = 6) -> None:
        self.model = model
        self.gate = gate
        self.reader = reader
        self.max_passages = max_passages
        self.prompt = PromptTemplate.from_template(load_prompt(PROMPT_FILE))

    @classmethod
    def from_settings(cls, settings: Settings, gate: EvidenceGate, reader: Reader | None = None) -> LLMGenerator:
        try:
            from langchain.chat_models import init_chat_model
        except ImportError as exc:
            raise LLMError(
                'answer_backend "llm" needs LangChain and the provider package: '
                "pip install -e '.[llm]' (or e.g. langchain-openai)"
            ) from exc
        options: dict[str, Any] = {"temperature": settings.llm_temperature}
        if settings.llm_base_url:
            options["base_url"] = settings.llm_base_url
        try:
            model = init_chat_model(settings.llm_model, **options)
        except Exception as exc:  # provider packages raise their own types
            raise LLMError(f"cannot set up llm_model {settings.llm_model!r}: {exc}") from exc
        return cls(model, gate, reader=reader)

    def generate(self, query: Query, passages: list[Passage]) -> Draft:
        if not self.gate.admits(query, passages):
            return Draft(REFUSAL, refused=True, citations=[])
        shown = self._evidence(query, passages)
        sources = "\n\n".join(
            f"[{i}] {p.title} ({', '.join(x for x in (p.source, p.published) if x) or 'undated'})\n{p.text}"
            for i, p in enumerate(shown, start=1)
        )
        message = self.prompt.format(question=query.text, sources=sources, history="")
        reply = self.model.invoke(message)
        text = str(reply.content if hasattr(reply, "content") else reply).strip()
        if not text or "NOT_FOUND" in text:
            return Draft(REFUSAL, refused=True, citations=[])
        backed = self._backed(text, shown)
        return (backed and self._cite(backed, shown)) or Draft(REFUSAL, refused=True, citations=[])

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

    def _backed(self, text: str, shown: list[Passage]) -> str:
        """The reply without the sentences that no passage they cite supports (or that claim without citing)."""
        kept = []
        for sentence in split_sentences(text):
            cited = [shown[i - 1] for i in _cited_numbers(sentence) if 1 <= i <= len(shown)]
            claim = _MARKER.sub(" ", sentence)
            if cited and _supported(claim, cited):
                kept.append(sentence)
            elif not cited and not figures(claim) and not _NAMED.search(claim.strip()):
                kept.append(sentence)  # framing without a claim of its own ("The sources differ on this.")
            else:
                logger.info("dropped an answer sentence no cited passage supports: %.80s", sentence)
        has_claim = any(_MARKER.search(sentence) for sentence in kept)
        return " ".join(kept) if has_claim else ""

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


def _cited_numbers(sentence: str) -> list[int]:
    return [int(raw) for match in _MARKER.finditer(sentence) for raw in match.group(1).split(",")]


def _supported(claim: str, passages: list[Passage]) -> bool:
    """Whether the cited passages back a sentence of the model's answer.

    Every figure the claim states must be in a cited passage, and the cited passages must hold most
    of its terms: a claim the model added from its own knowledge, or a figure it changed, fails.
    """
    terms = set(tokenize(claim))
    if not terms:
        return True
    text = " ".join(f"{p.title}\n{p.text}" for p in passages)
    if not figures(claim) <= figures(text):
        return False
    return len(terms & set(tokenize(text))) / len(terms) >= SUPPORT_SHARE
