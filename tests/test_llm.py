"""The LLM backend, with a fake chat model standing in for a paid or remote one (none can run here).

Retrieval, the evidence gate and citation checking are real: the real model and index on the
sample articles.
"""

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from retrieval.answer.answerer import Answerer
from retrieval.answer.extractive import ExtractiveGenerator
from retrieval.answer.llm import LLMGenerator
from retrieval.service import Services


class CountingFakeChatModel(FakeListChatModel):
    """Queued replies; records every prompt it was sent."""

    prompts: list[str] = []

    def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        self.prompts.append(str(messages[-1].content))
        return super()._call(messages, stop=stop, run_manager=run_manager, **kwargs)


def _answerer(seed_services: Services, replies: list[str]) -> tuple[Answerer, CountingFakeChatModel]:
    gate = seed_services.generator
    assert isinstance(gate, ExtractiveGenerator)
    model = CountingFakeChatModel(responses=replies, prompts=[])
    return Answerer(seed_services.retriever, LLMGenerator(model, gate)), model


def test_citations_are_renumbered_per_article_and_quoted(seed_services: Services) -> None:
    answerer, model = _answerer(seed_services, ["The US is sending 560 more troops [2], based near Qayyarah [2][9]."])
    answer = answerer.answer("How many additional troops did Ash Carter announce for Iraq in July 2016?")
    assert len(model.prompts) == 1 and "Sources:" in model.prompts[0] and "[1]" in model.prompts[0]
    assert not answer.refused
    assert answer.text == "The US is sending 560 more troops [1], based near Qayyarah [1]."  # [9] was never shown
    [citation] = answer.citations
    assert citation.doc_id == answer.passages[1].doc_id
    assert citation.quote in answer.passages[1].text


def test_not_found_and_uncited_replies_are_refusals(seed_services: Services) -> None:
    question = "How many additional troops did Ash Carter announce?"
    for reply in ["NOT_FOUND", "It was probably about 500 soldiers."]:
        answerer, _ = _answerer(seed_services, [reply])
        answer = answerer.answer(question)
        assert answer.refused and answer.citations == []


def test_weak_evidence_is_refused_without_calling_the_model(seed_services: Services) -> None:
    answerer, model = _answerer(seed_services, ["Argentina won [1]."])
    answer = answerer.answer("Who won the 2018 FIFA World Cup?")
    assert answer.refused and model.prompts == []


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
    generator = LLMGenerator(model, gate, reader=reader_seed_services.reader)
    answer = Answerer(reader_seed_services.retriever, generator).answer(
        "How many additional troops did Ash Carter announce for Iraq in July 2016?"
    )
    # The passage the model saw first is the one holding the reader's best sentence.
    first_source = model.prompts[0].split("Sources:")[1].split("\n\n[2]")[0]
    assert "560" in first_source
    assert not answer.refused
    assert "560 more troops [1]" in answer.text
    assert "hospital" not in answer.text  # a claim no cited passage supports is dropped
    assert "The sources do not say more." in answer.text  # framing without a claim of its own stays
    [citation] = answer.citations
    assert "560" in citation.quote


def test_a_reply_with_only_unsupported_claims_is_a_refusal(reader_seed_services: Services) -> None:
    gate = reader_seed_services.generator
    assert isinstance(gate, ExtractiveGenerator)
    model = CountingFakeChatModel(responses=["Argentina sent 9,999 troops to Iraq in 2016 [1]."], prompts=[])
    answer = Answerer(reader_seed_services.retriever, LLMGenerator(model, gate, reader=reader_seed_services.reader)).answer(
        "How many additional troops did Ash Carter announce for Iraq in July 2016?"
    )
    assert len(model.prompts) == 1
    assert answer.refused and answer.citations == []
