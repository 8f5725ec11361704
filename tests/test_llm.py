"""The LLM backend with a fake chat model, for the replies and failures a real model cannot be made to give on cue.

A given malformed reply, the prompt's instructions repeated word for word, an error after part of
a reply, a rate limit, a wrong key: a real server does these only by chance. Everything else here is
real (the embedding model and index on the sample articles, the evidence gate, the support check).
The real llama.cpp server is in test_llm_server.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from config import load_settings
from retrieval.answer.answerer import Answerer
from retrieval.answer.extractive import ExtractiveGenerator
from retrieval.answer.llm import FALLBACK_NOTE, NOTES, LLMGenerator, SentenceCheck, model_options, retryable
from retrieval.answer.types import REFUSAL, Answer
from retrieval.evaluation.metrics import unbacked_sentences
from retrieval.passages import Passage
from retrieval.service import Services

TROOPS = "How many additional troops did Ash Carter announce for Iraq in July 2016?"


class CountingFakeChatModel(FakeListChatModel):
    """Queued replies; records every prompt it was sent."""

    prompts: list[str] = []

    def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        self.prompts.append(str(messages[-1].content))
        return super()._call(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        self.prompts.append(str(messages[-1].content))
        yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)


class StatusError(RuntimeError):
    """What a provider raises for an HTTP error: it carries the status."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class ScriptedChatModel(BaseChatModel):
    """Streams each try's chunks in turn; a try may end with an exception (after its chunks) or a finish reason."""

    tries: list[dict[str, Any]] = []
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        text = "".join(chunk.text for chunk in self._stream(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        script = self.tries[min(self.calls, len(self.tries) - 1)]
        self.calls += 1
        for part in script.get("chunks", []):
            yield ChatGenerationChunk(message=AIMessageChunk(content=part))
        if "finish" in script:
            yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={"finish_reason": script["finish"]}))
        if "error" in script:
            raise script["error"]


def _generator(services: Services, model: BaseChatModel, *, refuse: bool = False, **options: Any) -> LLMGenerator:
    gate = services.generator
    assert isinstance(gate, ExtractiveGenerator)
    sleeps: list[float] = []
    generator = LLMGenerator(model, gate, fallback=None if refuse else gate, sleep=sleeps.append, **options)
    generator.sleeps = sleeps  # type: ignore[attr-defined]
    return generator


def _ask(services: Services, generator: LLMGenerator, question: str = TROOPS) -> Answer:
    return Answerer(services.retriever, generator).answer(question)


def _scripted(*tries: dict[str, Any]) -> ScriptedChatModel:
    return ScriptedChatModel(tries=list(tries), calls=0)


def _fell_back(answer: Answer, reason: str) -> None:
    """The extractive answer, with the one line that says why."""
    assert not answer.refused and answer.backend == "extractive" and answer.fallback == reason
    assert answer.note == FALLBACK_NOTE.format(reason=NOTES[reason])
    assert "560" in answer.text and answer.citations
    assert unbacked_sentences(answer) == []


def test_citations_are_renumbered_per_article_and_quoted(reader_seed_services: Services) -> None:
    model = CountingFakeChatModel(responses=["The US is sending 560 more troops to Iraq [2][9]."], prompts=[])
    answer = _ask(reader_seed_services, _generator(reader_seed_services, model))
    assert len(model.prompts) == 1 and "Sources:" in model.prompts[0] and "[1]" in model.prompts[0]
    assert not answer.refused and answer.backend == "llm" and answer.fallback is None and answer.note is None
    assert answer.text == "The US is sending 560 more troops to Iraq [1]."  # [9] was never shown
    [citation] = answer.citations
    [passage] = [p for p in answer.passages if p.doc_id == citation.doc_id][:1]
    assert citation.quote in passage.text and "560" in citation.quote


def test_an_uncited_sentence_a_source_backs_is_cited_to_it(reader_seed_services: Services) -> None:
    """Attribution instead of deletion: the support check finds the source; only what none backs is dropped."""
    reply = "Carter announced 560 additional troops for Iraq. The US also sent 9,000 more troops to Mosul."
    model = CountingFakeChatModel(responses=[reply], prompts=[])
    answer = _ask(reader_seed_services, _generator(reader_seed_services, model))
    assert not answer.refused and answer.backend == "llm" and answer.dropped == 1
    assert answer.text == "Carter announced 560 additional troops for Iraq [1]."
    [citation] = answer.citations
    assert "560" in citation.quote and "Carter" in citation.quote
    assert unbacked_sentences(answer) == []


def test_a_backed_answer_without_the_figure_asked_for_falls_back(reader_seed_services: Services) -> None:
    """True to its source, beside the point: "How many ...?" answered without a figure is no answer."""
    reply = "Hundreds of additional US soldiers will be sent to Iraq, the Pentagon chief announced [1]."
    shown: list[str] = []
    generator = _generator(reader_seed_services, CountingFakeChatModel(responses=[reply], prompts=[]))
    answer = Answerer(reader_seed_services.retriever, generator).answer(TROOPS, on_text=shown.append)
    _fell_back(answer, "off_question")
    assert answer.dropped == 1 and shown == []  # not shown while it was written either


def test_one_figure_where_the_sources_disagree_gives_way_to_both(seed_services: Services) -> None:
    """The model picks one of two figures the sources give; the extractive answer quotes both, and replaces it."""
    question = "What will the total number of US troops in Iraq be after the 560-troop increase?"
    reply = "The total number of US troops in Iraq will be around 4,700 [1]."
    generator = _generator(seed_services, CountingFakeChatModel(responses=[reply], prompts=[]))
    answer = _ask(seed_services, generator, question)
    assert not answer.refused and answer.backend == "extractive" and answer.fallback == "conflict" and answer.conflict
    assert answer.note == FALLBACK_NOTE.format(reason=NOTES["conflict"])
    assert "4,700" in answer.text and "4,600" in answer.text


def test_a_reply_split_anywhere_while_streaming_is_checked_as_the_whole_reply(reader_seed_services: Services) -> None:
    """The stream may break a reply anywhere, even inside a marker after a closing quote: each sentence keeps its own."""
    reply = 'Carter said the US would be "deploying 560 additional troops." [1] It was announced in Baghdad [1].'
    whole = _ask(reader_seed_services, _generator(reader_seed_services, _scripted({"chunks": [reply]})))
    for cut in range(1, len(reply)):
        generator = _generator(reader_seed_services, _scripted({"chunks": [reply[:cut], reply[cut:]]}))
        shown: list[str] = []
        answer = Answerer(reader_seed_services.retriever, generator).answer(TROOPS, on_text=shown.append)
        assert answer.text == whole.text and answer.dropped == whole.dropped == 0, cut
        assert shown[-1] == answer.text and all(answer.text.startswith(text) for text in shown), cut


def test_a_sentence_saying_again_what_one_kept_said_is_dropped() -> None:
    shown = [Passage(1, "bridge", "bridge:0", "Council approves bridge", "The Elm River bridge will cost $12 million.", 0.9)]
    check = SentenceCheck(shown, instructions=set())
    kept = check.feed("The Elm River bridge will cost $12 million [1]. The bridge will cost $12 million.")
    kept += check.finish()
    assert kept == ["The Elm River bridge will cost $12 million [1]."] and check.reading.dropped == 1


def test_a_miscited_sentence_is_cited_to_the_source_that_backs_it() -> None:
    shown = [
        Passage(1, "bridge", "bridge:0", "Council approves bridge", "The Elm River bridge will cost $12 million.", 0.9),
        Passage(2, "works", "works:0", "Works start in spring", "Construction of the Elm River bridge begins in April.", 0.8),
    ]
    check = SentenceCheck(shown, instructions=set())
    kept = check.feed("Construction of the bridge begins in April [1]. It will cost $12 million [2]. ")
    kept += check.feed("It will cost $15 million [1].")
    kept += check.finish()
    assert kept == ["Construction of the bridge begins in April [2].", "It will cost $12 million [1]."]
    assert check.reading.attributed == 2 and check.reading.dropped == 1


def test_the_models_not_found_alone_is_a_refusal_or_the_admitted_evidence_is_quoted(reader_seed_services: Services) -> None:
    """The gate admitted the question (a passage answers it): the fallback quotes it; with llm_fallback "refuse", a refusal."""
    model = CountingFakeChatModel(responses=["NOT_FOUND"], prompts=[])
    answer = _ask(reader_seed_services, _generator(reader_seed_services, model, refuse=True))
    assert answer.refused and answer.text == REFUSAL and answer.citations == []
    assert answer.backend == "llm" and answer.fallback is None and answer.note is None
    model = CountingFakeChatModel(responses=["NOT_FOUND"], prompts=[])
    _fell_back(_ask(reader_seed_services, _generator(reader_seed_services, model)), "not_found")


def test_not_found_beside_a_backed_claim_is_not_a_refusal(reader_seed_services: Services) -> None:
    """The model's refusal counts only when nothing else in its reply survives the check."""
    model = CountingFakeChatModel(responses=["NOT_FOUND. The US is sending 560 more troops to Iraq [1]."], prompts=[])
    answer = _ask(reader_seed_services, _generator(reader_seed_services, model))
    assert not answer.refused and answer.backend == "llm"
    assert answer.text == "The US is sending 560 more troops to Iraq [1]."


def test_an_echoed_instruction_holding_not_found_is_not_a_refusal(reader_seed_services: Services) -> None:
    """A model that repeats the prompt says NOT_FOUND without meaning it: the question is answered without it."""
    echo = (
        "You answer questions about news articles, using only the numbered sources given with each question.\n"
        "If no source answers the question, reply with exactly: NOT_FOUND"
    )
    answer = _ask(reader_seed_services, _generator(reader_seed_services, CountingFakeChatModel(responses=[echo], prompts=[])))
    _fell_back(answer, "unsupported")
    assert answer.dropped == 2


def test_an_uncited_claim_falls_back_to_the_extractive_answer(reader_seed_services: Services) -> None:
    model = CountingFakeChatModel(responses=["It was probably about 500 soldiers."], prompts=[])
    answer = _ask(reader_seed_services, _generator(reader_seed_services, model))
    _fell_back(answer, "unsupported")
    assert answer.dropped == 1 and "500 soldiers" not in answer.text


def test_with_llm_fallback_refuse_an_unbacked_reply_is_refused_with_a_note(reader_seed_services: Services) -> None:
    model = CountingFakeChatModel(responses=["Argentina sent 9,999 troops to Iraq in 2016 [1]."], prompts=[])
    answer = _ask(reader_seed_services, _generator(reader_seed_services, model, refuse=True))
    assert answer.refused and answer.citations == [] and answer.text == REFUSAL
    assert answer.fallback == "unsupported" and answer.note and "not backed" in answer.note


def test_weak_evidence_is_refused_without_calling_the_model(reader_seed_services: Services) -> None:
    model = CountingFakeChatModel(responses=["Argentina won [1]."], prompts=[])
    answer = _ask(reader_seed_services, _generator(reader_seed_services, model), "Who won the 2018 FIFA World Cup?")
    assert answer.refused and model.prompts == [] and answer.fallback is None


def test_passages_the_model_invents_are_dropped(reader_seed_services: Services) -> None:
    reply = (
        "[7] US doubles its troops in Iraq (CNN, 2016-07-12)\n"
        "The Pentagon will send 9,000 troops to Mosul.\n"
        "Carter said the 560 troops would be based near Qayyarah.\n"
        "\n"
        "Answer: The US is sending 560 more troops to Iraq [1]."
    )
    answer = _ask(reader_seed_services, _generator(reader_seed_services, CountingFakeChatModel(responses=[reply], prompts=[])))
    assert not answer.refused and answer.backend == "llm"
    assert answer.text == "The US is sending 560 more troops to Iraq [1]."
    assert answer.dropped == 3


def test_malformed_replies_fall_back(reader_seed_services: Services) -> None:
    for reply in ["", "   \n\n ", "[0] [1,,2] [99]", "]]]] [[[[ 560 [", "The US is sending 9,000 more troops [0]."]:
        answer = _ask(reader_seed_services, _generator(reader_seed_services, _scripted({"chunks": [reply]})))
        _fell_back(answer, "unsupported")


def test_a_marker_after_a_closing_quote_belongs_to_the_sentence_before(reader_seed_services: Services) -> None:
    reply = 'Carter said the US would be "deploying 560 additional troops." [1] It was announced in Baghdad [1].'
    answer = _ask(reader_seed_services, _generator(reader_seed_services, _scripted({"chunks": [reply]})))
    assert answer.backend == "llm" and answer.dropped == 0
    assert answer.text == 'Carter said the US would be "deploying 560 additional troops." [1] It was announced in Baghdad [1].'


def test_a_sentence_cut_by_the_token_cap_is_dropped(reader_seed_services: Services) -> None:
    model = _scripted({"chunks": ["The US is sending 560 more troops [1]. ", "Carter also said the 4,600"], "finish": "length"})
    answer = _ask(reader_seed_services, _generator(reader_seed_services, model))
    assert answer.text == "The US is sending 560 more troops [1]." and answer.dropped == 1


def test_an_error_after_a_partial_reply_falls_back_without_showing_it(reader_seed_services: Services) -> None:
    model = _scripted({"chunks": ["The US is sending ", "560 more troops [1]. Carter"], "error": StatusError(400)})
    generator = _generator(reader_seed_services, model)
    answer = _ask(reader_seed_services, generator)
    _fell_back(answer, "error")
    assert model.calls == 1 and generator.sleeps == []  # type: ignore[attr-defined]
    assert "Carter [" not in answer.text


def test_failures_worth_retrying_are_retried_with_backoff(reader_seed_services: Services) -> None:
    model = _scripted(
        {"chunks": ["The US is "], "error": ConnectionResetError("connection reset by peer")},
        {"error": StatusError(429)},
        {"chunks": ["The US is sending 560 more troops [1]."]},
    )
    generator = _generator(reader_seed_services, model, retries=2, backoff=0.5)
    answer = _ask(reader_seed_services, generator)
    assert model.calls == 3 and generator.sleeps == [0.5, 1.0]  # type: ignore[attr-defined]
    assert not answer.refused and answer.backend == "llm" and answer.text == "The US is sending 560 more troops [1]."


def test_retries_stop_at_the_limit_and_fall_back(reader_seed_services: Services) -> None:
    model = _scripted({"error": StatusError(503)})
    generator = _generator(reader_seed_services, model, retries=2)
    _fell_back(_ask(reader_seed_services, generator), "error")
    assert model.calls == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_failures_not_worth_retrying_are_not_retried(reader_seed_services: Services, status: int) -> None:
    model = _scripted({"error": StatusError(status)})
    generator = _generator(reader_seed_services, model, retries=3)
    _fell_back(_ask(reader_seed_services, generator), "error")
    assert model.calls == 1 and generator.sleeps == []  # type: ignore[attr-defined]


def test_which_failures_are_retryable() -> None:
    assert retryable(ConnectionRefusedError()) and retryable(TimeoutError()) and retryable(StatusError(500))
    assert not retryable(ValueError("bad reply")) and not retryable(StatusError(401)) and not retryable(KeyError("x"))


def test_the_reader_picks_the_evidence_and_unsupported_claims_are_dropped(reader_seed_services: Services) -> None:
    gate = reader_seed_services.generator
    assert isinstance(gate, ExtractiveGenerator) and reader_seed_services.reader is not None
    model = CountingFakeChatModel(
        responses=[
            "The US is sending 560 more troops [1]. "
            "They will also build a 200-bed field hospital in Basra by March [1]. "
            "The sources do not say more."
        ],
        prompts=[],
    )
    generator = LLMGenerator(model, gate, reader=reader_seed_services.reader, fallback=gate)
    answer = Answerer(reader_seed_services.retriever, generator).answer(TROOPS)
    # The passage the model saw first is the one holding the reader's best sentence.
    first_source = model.prompts[0].split("Sources:")[1].split("\n\n[2]")[0]
    assert "560" in first_source
    assert not answer.refused and answer.dropped == 1
    assert "560 more troops [1]" in answer.text
    assert "hospital" not in answer.text  # a claim no cited passage supports is dropped
    assert "The sources do not say more." in answer.text  # framing without a claim of its own stays
    [citation] = answer.citations
    assert "560" in citation.quote


def test_the_token_cap_and_timeout_go_in_each_providers_own_form(tmp_path: Any) -> None:
    def options(**overrides: Any) -> dict[str, Any]:
        settings = load_settings(
            data_dir=str(tmp_path), answer_backend="llm", llm_max_tokens=123, llm_timeout_seconds=7, **overrides
        )
        return model_options(settings)

    local = options(llm_model="openai:gemma", llm_base_url="http://127.0.0.1:8080/v1")
    assert local["max_tokens"] == 123 and local["extra_body"] == {"max_tokens": 123}  # llama.cpp reads plain max_tokens
    assert local["timeout"] == 7 and local["max_retries"] == 0 and local["base_url"] == "http://127.0.0.1:8080/v1"
    hosted = options(llm_model="openai:gpt-4o-mini")
    assert hosted["max_tokens"] == 123 and "extra_body" not in hosted  # OpenAI reads max_completion_tokens
    anthropic = options(llm_model="anthropic:claude-sonnet-4-5")
    assert anthropic["max_tokens"] == 123 and anthropic["timeout"] == 7 and anthropic["max_retries"] == 0
    ollama = options(llm_model="ollama:llama3.1", llm_base_url="http://127.0.0.1:11434")
    assert ollama["num_predict"] == 123 and ollama["client_kwargs"] == {"timeout": 7} and "max_tokens" not in ollama
