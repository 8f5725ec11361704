"""Handlers tested PTB's way: build an `Update`, `await application.process_update(update)`.

The application is the real one (`bot.app.build_application`, every handler and filter), but its
HTTP layer is a recorder that answers like the Bot API and never touches the network (Telegram
cannot be reached from here anyway), and the answerer, briefer and store are small fakes, so these
run in milliseconds. The end-to-end tests (`test_bot_e2e.py`) cover the real answerer over HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from telegram import Update
from telegram.request import BaseRequest, RequestData

from bot import chat_action
from bot.app import RedactToken, build_application, file_url_for, run
from bot.conversation import Conversations, Exchange, follow_up_question
from bot.formatting import MAX_MESSAGE_CHARS, format_answer, split_message
from bot.handlers.ask import BUSY
from bot.limits import AnswerSlots, RateLimiter
from bot.runtime import RUNTIME_KEY, Runtime
from config import Settings, load_settings
from retrieval.answer.briefing import Briefing, BriefPoint
from retrieval.answer.types import REFUSAL, Answer, Citation
from retrieval.index.store import StoredArticle
from tests.botapi import BadRequest, html_to_text

BOT: dict[str, Any] = {"id": 4242, "is_bot": True, "first_name": "NewsBot", "username": "news_test_bot"}
ADMIN_ID = 1
USER_ID = 2
GROUP_ID = -1001


class RecordingRequest(BaseRequest):
    """The bot's HTTP layer for these tests: records each Bot API call and answers as Telegram would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(500)

    @property
    def read_timeout(self) -> float | None:
        return 1.0

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(
        self, url: str, method: str, request_data: RequestData | None = None, *args: Any, **kwargs: Any
    ) -> tuple[int, bytes]:
        name = url.rsplit("/", 1)[-1]
        params: dict[str, Any] = dict(request_data.parameters) if request_data else {}
        self.calls.append((name, params))
        result: Any = True
        if name == "getMe":
            result = BOT
        elif name in ("sendMessage", "editMessageText"):
            html_to_text(str(params["text"]))  # raises on markup Telegram would refuse
            chat_id = int(params["chat_id"])
            result = {
                "message_id": int(params.get("message_id") or next(self._ids)),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
                "from": BOT,
                "text": params["text"],
            }
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]


class FakeAnswerer:
    """Queued answers and the questions it was asked."""

    def __init__(self) -> None:
        self.questions: list[str] = []
        self.options: list[dict[str, Any]] = []
        self.queue: list[Answer | Exception] = []

    async def aanswer(self, question: str, **options: Any) -> Answer:
        self.questions.append(question)
        self.options.append(options)
        item = self.queue.pop(0) if self.queue else answer_about(question)
        if isinstance(item, Exception):
            raise item
        return item


class FakeStore:
    def __init__(self, count: int = 3) -> None:
        self.items = {
            f"d{i}": StoredArticle(
                f"d{i}",
                f"Article {i} <&>",
                f"/a/{i}.txt",
                "h",
                2,
                "Outlet",
                f"https://example.org/{i}",
                f"2016-07-{i % 28 + 1:02d}",
            )
            for i in range(count)
        }

    def articles(self) -> dict[str, StoredArticle]:
        return self.items


class FakeServices:
    def __init__(self) -> None:
        self.answerer = FakeAnswerer()
        self.store = FakeStore()
        self.briefer = FakeBriefer()
        self.retriever = FakeRetriever()


class FakeRetriever:
    """Counts the keyword index rebuilds the bot asks for after a reload."""

    def __init__(self) -> None:
        self.refreshed = 0

    def refresh(self) -> None:
        self.refreshed += 1


class FakeBriefer:
    def __init__(self) -> None:
        self.topics: list[tuple[str, Any]] = []

    async def abrief(self, topic: str, *, since: Any = None, until: Any = None) -> Briefing:
        self.topics.append((topic, since))
        source = Citation(1, "d1", "Mosul <push>", "Outlet", None, "2016-07-11", None, "quote")
        return Briefing(topic, [BriefPoint("2016-07-11", "Troops & advisers head to Mosul [1].", [1])], [source])


def answer_about(question: str) -> Answer:
    citation = Citation(
        1,
        "d1",
        "Title <b>&",
        "Outlet & Co",
        "https://example.org/a?x=1&y=2",
        "2016-07-11",
        None,
        "An exact <quoted> sentence & more.",
    )
    return Answer(question, "An exact <quoted> sentence & more [1].", False, [citation])


def make_settings(**overrides: Any) -> Settings:
    return load_settings(data_dir="/nonexistent-newsbot-test", admin_ids=[ADMIN_ID], **overrides)


class Harness:
    """The application, its recorder, its fakes and update factories."""

    def __init__(self, settings: Settings) -> None:
        self.request = RecordingRequest()
        self.services = FakeServices()
        self.briefer = self.services.briefer
        self.application = build_application(
            settings,
            "1:TEST",
            services=self.services,  # type: ignore[arg-type]
            request=self.request,
        )
        self.runtime = Runtime(
            settings=settings,
            services=self.services,  # type: ignore[arg-type]
            conversations=Conversations(settings.context_turns, settings.context_ttl_seconds),
            limiter=RateLimiter(settings.rate_limit_per_minute),
            slots=AnswerSlots(settings.max_concurrent_answers),
        )
        self._message_ids = itertools.count(1)
        self._update_ids = itertools.count(1)

    async def start(self) -> None:
        await self.application.initialize()
        self.application.bot_data[RUNTIME_KEY] = self.runtime
        self.request.calls.clear()

    def message(
        self,
        text: str,
        *,
        user_id: int = USER_ID,
        chat_id: int | None = None,
        reply_to: dict[str, Any] | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        chat_id = chat_id if chat_id is not None else user_id
        chat = (
            {"id": chat_id, "type": "private"}
            if chat_id > 0
            else {"id": chat_id, "type": "supergroup", "title": "G", "is_forum": thread_id is not None}
        )
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": False, "first_name": "U"},
            "text": text,
        }
        entities = []
        if text.startswith("/"):
            entities.append({"type": "bot_command", "offset": 0, "length": len(text.split()[0])})
        if f"@{BOT['username']}" in text and not text.startswith("/"):
            entities.append({"type": "mention", "offset": text.index("@"), "length": len(BOT["username"]) + 1})
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        return message

    async def send(self, text: str, **kwargs: Any) -> dict[str, Any]:
        message = self.message(text, **kwargs)
        await self.process({"message": message})
        return message

    async def process(self, data: dict[str, Any]) -> None:
        data["update_id"] = next(self._update_ids)
        update = Update.de_json(data, self.application.bot)
        await self.application.process_update(update)

    def bot_message(self, message_id: int, chat_id: int, text: str = "answer") -> dict[str, Any]:
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "G"}
        return {"message_id": message_id, "date": 0, "chat": chat, "from": BOT, "text": text}


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(make_settings(rate_limit_per_minute=0))
    await h.start()
    yield h
    await h.application.shutdown()


async def make_harness(**overrides: Any) -> Harness:
    h = Harness(make_settings(**overrides))
    await h.start()
    return h


# -- questions --------------------------------------------------------------------------------


async def test_private_question_answered_in_escaped_html_with_sources_and_quote_button(harness: Harness) -> None:
    await harness.send("How many troops <now>?")
    assert harness.services.answerer.questions == ["How many troops <now>?"]
    [action] = harness.request.sent("sendChatAction")
    assert action["action"] == "typing"
    [reply] = harness.request.sent()
    assert reply["parse_mode"] == "HTML"
    assert reply["text"].startswith("An exact &lt;quoted&gt; sentence &amp; more [1].")
    assert '<a href="https://example.org/a?x=1&amp;y=2">Title &lt;b&gt;&amp;</a> — Outlet &amp; Co, 2016-07-11' in reply["text"]
    [[button]] = reply["reply_markup"]["inline_keyboard"]
    assert button["text"] == "Quote [1]"

    await harness.process(
        {
            "callback_query": {
                "id": "cq1",
                "from": {"id": USER_ID, "is_bot": False, "first_name": "U"},
                "chat_instance": "x",
                "data": button["callback_data"],
                "message": harness.bot_message(500, USER_ID),
            }
        }
    )
    quote = harness.request.sent()[-1]["text"]
    assert quote.startswith("<blockquote>An exact &lt;quoted&gt; sentence &amp; more.</blockquote>")
    assert harness.request.sent("answerCallbackQuery")[-1]["callback_query_id"] == "cq1"


async def test_questions_are_answered_as_of_the_message_date(harness: Harness) -> None:
    message = harness.message("What happened this week?")
    message["date"] = 1673049600  # 2023-01-07 00:00 UTC
    await harness.process({"message": message})
    assert harness.services.answerer.options[-1]["as_of"] == date(2023, 1, 7)


async def test_edited_messages_are_not_answered_again(harness: Harness) -> None:
    message = harness.message("How many troops?")
    await harness.process({"edited_message": {**message, "edit_date": int(time.time())}})
    await harness.process({"edited_message": {**harness.message("/ask troops?"), "edit_date": int(time.time())}})
    assert harness.request.calls == [] and harness.services.answerer.questions == []


async def test_refusal_has_no_sources_or_buttons(harness: Harness) -> None:
    harness.services.answerer.queue.append(Answer("q", REFUSAL, True))
    await harness.send("Who won the World Cup?")
    [reply] = harness.request.sent()
    assert reply["text"] == REFUSAL
    assert "reply_markup" not in reply


async def test_expired_quote_button_says_so(harness: Harness) -> None:
    await harness.process(
        {
            "callback_query": {
                "id": "cq9",
                "from": {"id": USER_ID, "is_bot": False, "first_name": "U"},
                "chat_instance": "x",
                "data": "q:999:1",
                "message": harness.bot_message(7, USER_ID),
            }
        }
    )
    [answer] = harness.request.sent("answerCallbackQuery")
    assert answer["show_alert"] is True and "too old" in answer["text"]
    assert harness.request.sent() == []


async def test_long_answer_is_split_into_valid_messages_with_buttons_on_the_last(harness: Harness) -> None:
    paragraph = "Troops & <advisers> went north [1]. " * 40
    citation = Citation(1, "d1", "T", None, None, None, None, "quote")
    harness.services.answerer.queue.append(Answer("q", "\n\n".join([paragraph] * 10), False, [citation]))
    await harness.send("Tell me everything")
    sent = harness.request.sent()
    assert len(sent) >= 3
    for piece in sent:
        assert len(html_to_text(piece["text"])) <= MAX_MESSAGE_CHARS
    assert all("reply_markup" not in piece for piece in sent[:-1]) and "reply_markup" in sent[-1]
    joined = "".join(html_to_text(piece["text"]) for piece in sent)
    assert joined.count("Troops & <advisers> went north [1].") == 400


async def test_question_too_long_is_refused_clearly(harness: Harness) -> None:
    await harness.send("why " * 200)
    [reply] = harness.request.sent()
    assert "too long" in reply["text"] and "500" in reply["text"]
    assert harness.services.answerer.questions == []


async def test_empty_ask_explains_how(harness: Harness) -> None:
    await harness.send("/ask")
    [reply] = harness.request.sent()
    assert "/ask" in reply["text"] and harness.services.answerer.questions == []


# -- groups and follow-ups --------------------------------------------------------------------


async def test_group_chatter_ignored_mentions_commands_and_replies_answered(harness: Harness) -> None:
    await harness.send("lunch anyone?", chat_id=GROUP_ID)
    await harness.send("what do you think @someone_else", chat_id=GROUP_ID)
    other = harness.message("a human's message", user_id=99, chat_id=GROUP_ID)
    await harness.send("I agree", chat_id=GROUP_ID, reply_to=other)
    assert harness.request.calls == [] and harness.services.answerer.questions == []

    await harness.send(f"@{BOT['username']} how many troops?", chat_id=GROUP_ID)
    await harness.send(f"/ask@{BOT['username']} how many advisers?", chat_id=GROUP_ID)
    await harness.send("and the planes?", chat_id=GROUP_ID, reply_to=harness.bot_message(12345, GROUP_ID))
    assert harness.services.answerer.questions == ["how many troops?", "how many advisers?", "and the planes?"]
    assert all(s["reply_parameters"]["message_id"] for s in harness.request.sent())  # replies quote the question


async def test_reply_to_an_answer_is_searched_with_the_earlier_question(harness: Harness) -> None:
    await harness.send("How many troops did Carter announce in July 2016?")
    [answer] = harness.request.sent()
    answered = harness.bot_message(500, USER_ID)
    assert answer["chat_id"] == USER_ID
    await harness.send("and how many before that?", reply_to=answered)
    assert harness.services.answerer.questions[-1] == (
        "How many troops did Carter announce in July 2016? and how many before that?"
    )
    # A reply that stands on its own is searched as it is.
    await harness.send("Who is the Iraqi prime minister?", reply_to=answered)
    assert harness.services.answerer.questions[-1] == "Who is the Iraqi prime minister?"
    # /reset forgets: the same reply is now read alone.
    await harness.send("/reset")
    await harness.send("and how many before that?", reply_to=answered)
    assert harness.services.answerer.questions[-1] == "and how many before that?"


async def test_forum_topics_have_separate_context(harness: Harness) -> None:
    await harness.send("/ask How many troops went to Iraq?", chat_id=GROUP_ID, thread_id=7)
    answered = harness.bot_message(500, GROUP_ID)
    await harness.send("and before that?", chat_id=GROUP_ID, thread_id=7, reply_to=answered)
    assert harness.services.answerer.questions[-1] == "How many troops went to Iraq? and before that?"
    assert all(s.get("message_thread_id") == 7 for s in harness.request.sent())
    await harness.send("and before that?", chat_id=GROUP_ID, thread_id=8, reply_to=answered)
    assert harness.services.answerer.questions[-1] == "and before that?"


# -- limits, access, errors -------------------------------------------------------------------


async def test_rate_limit_answers_slow_down_then_recovers() -> None:
    h = await make_harness(rate_limit_per_minute=2)
    now = [1000.0]
    h.runtime.limiter = RateLimiter(2, clock=lambda: now[0])
    for _ in range(3):
        await h.send("How many troops?")
    replies = [s["text"] for s in h.request.sent()]
    assert len(replies) == 3 and replies[2].startswith("Slow down") and "2 questions a minute" in replies[2]
    assert len(h.services.answerer.questions) == 2
    now[0] += 61
    await h.send("How many troops?")
    assert len(h.services.answerer.questions) == 3
    await h.application.shutdown()


async def test_allow_list_ignores_other_chats_but_not_admins() -> None:
    h = await make_harness(allowed_chat_ids=[GROUP_ID])
    await h.send("hello?", user_id=USER_ID)
    assert h.request.calls == []
    await h.send("hello?", user_id=ADMIN_ID)
    await h.send("/ask hi", user_id=USER_ID, chat_id=GROUP_ID)
    assert len(h.services.answerer.questions) == 2
    await h.application.shutdown()


class BlockingAnswerer(FakeAnswerer):
    """Answers only once the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def aanswer(self, question: str, **options: Any) -> Answer:
        self.questions.append(question)
        await self.release.wait()
        return answer_about(question)


async def test_answers_in_progress_are_capped_and_the_rest_told_to_come_back() -> None:
    h = await make_harness(rate_limit_per_minute=0, max_concurrent_answers=2)
    answerer = h.services.answerer = BlockingAnswerer()
    asked = [asyncio.create_task(h.send("How many troops?", user_id=10 + i)) for i in range(2)]
    while len(answerer.questions) < 2:
        await asyncio.sleep(0.01)
    await h.send("And the third?", user_id=12)
    await h.send("/brief Mosul", user_id=13)
    assert [s["text"] for s in h.request.sent()] == [BUSY, BUSY]
    answerer.release.set()
    await asyncio.gather(*asked)
    assert len(answerer.questions) == 2 and h.runtime.slots.in_progress == 0
    await h.send("Now?", user_id=12)  # slots are given back
    assert len(answerer.questions) == 3 and len(h.request.sent()) == 5
    await h.application.shutdown()


async def test_admin_commands_refused_politely_and_logged(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.access")
    for command in ("/reload", "/stats"):
        await harness.send(command)
    assert [s["text"] for s in harness.request.sent()] == ["Sorry, only the bot's admins can do that."] * 2
    assert any("user id 2" in r.getMessage() and "/reload" in r.getMessage() for r in caplog.records)


async def test_stats_for_admins(harness: Harness) -> None:
    await harness.send("How many troops?")
    harness.services.answerer.queue.append(Answer("q", REFUSAL, True))
    await harness.send("Who won?")
    await harness.send("/stats", user_id=ADMIN_ID)
    text = harness.request.sent()[-1]["text"]
    assert "Questions served: 2" in text and "Refusals: 1" in text and "Articles: 3" in text and "Chunks: 6" in text
    assert "Answering: in the bot's process" in text


async def test_typing_indicator_stays_on_while_the_answer_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Telegram shows "typing" for 5 s; a chat model can take a minute, so it is sent again until the answer is out."""
    monkeypatch.setattr(chat_action, "REPEAT_SECONDS", 0.01)
    h = await make_harness(rate_limit_per_minute=0)
    answerer = h.services.answerer = BlockingAnswerer()
    asked = asyncio.create_task(h.send("How many troops?"))
    while len(h.request.sent("sendChatAction")) < 3:
        await asyncio.sleep(0.01)
    assert h.request.sent() == []
    answerer.release.set()
    await asyncio.gather(asked)
    sent_while_answering = len(h.request.sent("sendChatAction"))
    await asyncio.sleep(0.05)
    assert len(h.request.sent("sendChatAction")) == sent_while_answering  # off once answered
    assert len(h.request.sent()) == 1
    await h.application.shutdown()


async def test_stats_count_llm_answers_fallbacks_and_dropped_sentences() -> None:
    h = await make_harness(rate_limit_per_minute=0, answer_backend="llm", llm_model="openai:gpt-4o-mini")
    queue = h.services.answerer.queue
    written = answer_about("q")
    queue.append(replace(written, backend="llm", dropped=2))
    queue.append(replace(written, backend="extractive", fallback="unsupported", dropped=3, note="The model failed."))
    queue.append(Answer("q", REFUSAL, True, backend="llm", fallback="timeout", note="The model took too long."))
    for question in ("One?", "Two?", "Three?"):
        await h.send(question)
    fallback_reply = h.request.sent()[1]["text"]
    assert "<i>The model failed.</i>" in fallback_reply and "<b>Sources</b>" in fallback_reply
    await h.send("/stats", user_id=ADMIN_ID)
    text = h.request.sent()[-1]["text"]
    assert "Questions served: 3" in text and "Refusals: 1" in text
    assert "LLM answers: 1" in text and "LLM fallbacks: 2" in text and "Sentences dropped by the support check: 5" in text
    await h.application.shutdown()


async def test_stats_without_the_llm_backend_say_nothing_of_it(harness: Harness) -> None:
    await harness.send("/stats", user_id=ADMIN_ID)
    assert "LLM" not in harness.request.sent()[-1]["text"]


async def test_error_handler_logs_and_tells_the_user(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    harness.services.answerer.queue.append(RuntimeError("index exploded"))
    await harness.send("How many troops?")
    assert any(r.exc_info and "index exploded" in str(r.exc_info[1]) for r in caplog.records)
    [reply] = harness.request.sent()
    assert reply["text"].startswith("Sorry, something went wrong")
    assert "exploded" not in reply["text"]


class BlockingIngestor:
    """An ingest that waits until the test lets it finish, reporting progress first."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def ingest(self, paths: list[Any], *, rebuild: bool = False, prune: bool = False, progress: Any = None) -> Any:
        assert rebuild
        self.started.set()
        progress(1, 2)
        assert self.release.wait(30)
        progress(2, 2)
        from retrieval.ingest.pipeline import IngestReport

        return IngestReport(added=["a", "b"], unchanged=["c"])


async def test_questions_are_answered_while_a_reload_runs(harness: Harness) -> None:
    ingestor = BlockingIngestor()
    harness.services.ingestor = ingestor  # type: ignore[attr-defined]
    reload = asyncio.create_task(harness.send("/reload", user_id=ADMIN_ID))
    assert await asyncio.to_thread(ingestor.started.wait, 30)
    await harness.send("How many troops?")
    assert harness.services.answerer.questions == ["How many troops?"]
    assert not reload.done()
    await harness.send("/reload", user_id=ADMIN_ID)  # a second reload meanwhile is turned away
    assert "already running" in harness.request.sent()[-1]["text"]
    ingestor.release.set()
    await reload
    edits = [e["text"] for e in harness.request.sent("editMessageText")]
    assert edits[-1].startswith("<b>Reload finished</b>") and "Added: 2" in edits[-1] and "Unchanged: 1" in edits[-1]
    assert "Embedding articles: 2 of 2…" in edits
    assert harness.runtime.last_reload is not None
    assert harness.services.retriever.refreshed == 1  # the new keyword index is built before "finished"


# -- other commands ---------------------------------------------------------------------------


async def test_start_help_about(harness: Harness) -> None:
    for command in ("/start", "/help", "/about"):
        await harness.send(command)
    start, help_, about = (s["text"] for s in harness.request.sent())
    assert "news articles" in start and "/brief" in help_ and "/reload" in help_
    assert "<b>3</b> articles in <b>6</b> chunks" in about and "2016-07-01 to 2016-07-03" in about


async def test_sources_paginates_with_buttons() -> None:
    h = await make_harness()
    h.services.store = FakeStore(23)
    await h.send("/sources")
    [first] = h.request.sent()
    assert "page 1 of 3" in first["text"] and '1. <a href="https://example.org/22">Article 22 &lt;&amp;&gt;' in first["text"]
    assert [b["text"] for b in first["reply_markup"]["inline_keyboard"][0]] == ["Next ›"]
    for page, buttons in ((1, ["‹ Previous", "Next ›"]), (2, ["‹ Previous"])):
        await h.process(
            {
                "callback_query": {
                    "id": f"p{page}",
                    "from": {"id": USER_ID, "is_bot": False, "first_name": "U"},
                    "chat_instance": "x",
                    "data": f"src:{page}",
                    "message": h.bot_message(500, USER_ID),
                }
            }
        )
        edit = h.request.sent("editMessageText")[-1]
        assert f"page {page + 1} of 3" in edit["text"]
        assert [b["text"] for b in edit["reply_markup"]["inline_keyboard"][0]] == buttons
    await h.application.shutdown()


async def test_brief_command(harness: Harness) -> None:
    await harness.send("/brief Mosul since 2016-07-01")
    topic, since = harness.briefer.topics[0]
    assert topic == "Mosul" and since.isoformat() == "2016-07-01"
    text = harness.request.sent()[-1]["text"]
    assert "• <b>2016-07-11</b> Troops &amp; advisers head to Mosul [1]." in text
    assert "[1] Mosul &lt;push&gt; — Outlet, 2016-07-11" in text
    await harness.send("/brief Mosul since last Tuesday")
    assert "YYYY-MM-DD" in harness.request.sent()[-1]["text"] and len(harness.briefer.topics) == 1


# -- the pieces -------------------------------------------------------------------------------


def test_split_message_keeps_paragraphs_and_limits() -> None:
    paragraphs = [f"<b>{i}</b> " + "word &amp; " * 50 for i in range(30)]
    pieces = split_message("\n\n".join(paragraphs), limit=1000)
    assert all(len(piece) <= 1000 for piece in pieces)
    assert "\n\n".join(pieces) == "\n\n".join(paragraphs)  # cut only between paragraphs
    for piece in pieces:
        html_to_text(piece)
    giant = "x&amp;y " * 2000
    pieces = split_message(giant, limit=500)
    assert all(len(p) <= 500 for p in pieces) and all(html_to_text(p) for p in pieces)
    assert split_message("short") == ["short"]


def test_format_answer_escapes_everything() -> None:
    html = format_answer(answer_about("q"))
    assert "<quoted>" not in html and "&lt;quoted&gt;" in html
    html_to_text(html)
    refused = format_answer(Answer("q", REFUSAL, True, [Citation(1, "d", "T", None, None, None, None, "x")]))
    assert "Sources" not in refused


def test_botapi_html_check_refuses_what_telegram_refuses() -> None:
    for bad in ("a < b", "<script>x</script>", "<b>open", "<b><i>x</b></i>", "AT&T"):
        with pytest.raises(BadRequest):
            html_to_text(bad)
    assert html_to_text('<a href="https://x.org/?a=1&amp;b=2">x &lt;y&gt;</a>') == "x <y>"


def test_conversations_are_bounded_in_time_and_size() -> None:
    now = [0.0]
    conversations = Conversations(turns=2, ttl=60, max_chats=2, clock=lambda: now[0])
    for message_id in (1, 2, 3):
        conversations.remember((10, None), Exchange(f"q{message_id}", f"q{message_id}", [message_id]))
    assert conversations.find((10, None), 1) is None  # only the last 2 turns are kept
    assert conversations.find((10, None), 3) is not None
    now[0] = 61
    assert conversations.find((10, None), 3) is None  # expired
    conversations.remember((11, None), Exchange("a", "a", [1]))
    conversations.remember((12, 5), Exchange("b", "b", [1]))
    assert len(conversations) == 2 and conversations.find((12, 5), 1) is not None
    assert conversations.reset((12, 5)) and conversations.find((12, 5), 1) is None


def test_follow_up_question() -> None:
    earlier = Exchange("How many troops did Carter send?", "How many troops did Carter send?", [1])
    assert follow_up_question(earlier, "and before that?") == "How many troops did Carter send? and before that?"
    assert follow_up_question(earlier, "Where will they be based?").startswith("How many troops")
    assert follow_up_question(earlier, "Who leads the Iraqi army?") == "Who leads the Iraqi army?"


def test_token_is_redacted_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    token = "123456:SECRET-token"
    logger = logging.getLogger("test.redact")
    handler = logging.StreamHandler()
    redact = RedactToken(token)
    record = logger.makeRecord("test", logging.INFO, __file__, 1, "POST https://api.telegram.org/bot%s/getMe", (token,), None)
    redact.filter(record)
    assert token not in record.getMessage() and "<token>" in record.getMessage()
    try:
        raise ConnectionError(f"cannot reach https://api.telegram.org/bot{token}/getUpdates")
    except ConnectionError:
        import sys

        record = logger.makeRecord("test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    redact.filter(record)
    handler.setFormatter(logging.Formatter())
    assert token not in handler.format(record) and "<token>" in handler.format(record)
    handler.close()


def test_file_url_for() -> None:
    assert file_url_for("http://127.0.0.1:8081/bot") == "http://127.0.0.1:8081/file/bot"


def test_serve_without_token_exits_with_instructions(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert run(make_settings()) == 2
    err = capsys.readouterr().err
    assert "TELEGRAM_BOT_TOKEN" in err and "BotFather" in err


def test_upload_names_are_generated_from_the_content() -> None:
    from bot.handlers.upload import is_text, stored_name

    name = stored_name(b"An article.", ".md")
    assert name.startswith("upload-") and name.endswith(".md") and "/" not in name
    assert stored_name(b"An article.", ".md") == name and stored_name(b"Another one.", ".md") != name
    assert is_text("Zürich &amp; co".encode()) and not is_text(b"\x00\x01") and not is_text(b"\xff\xfe\xfa")


def test_usage_median() -> None:
    from bot.usage import Usage

    usage = Usage()
    assert usage.median_ms is None
    for ms in (10.0, 30.0, 20.0):
        usage.record(refused=ms > 25, latency_ms=ms)
    assert (usage.questions, usage.refusals, usage.median_ms) == (3, 1, 20.0)


def test_upload_checks_accept_what_the_loaders_read_and_refuse_the_rest() -> None:
    from bot.handlers.upload import upload_refusal
    from retrieval.ingest.articles import SUPPORTED_SUFFIXES

    assert {".markdown", ".htm"} <= set(SUPPORTED_SUFFIXES)
    for suffix in SUPPORTED_SUFFIXES:
        assert upload_refusal(f"story{suffix.upper()}", 100, size=10) is None
        assert upload_refusal(f"story{suffix}", 100, data=b"Troops arrive.") is None
    assert "I only read" in (upload_refusal("report.pdf", 100, size=10) or "")
    assert "too large (0.0 MB)" in (upload_refusal("a.txt", 10, size=11) or "")
    assert "too large; the limit" in (upload_refusal("a.txt", 10, data=b"x" * 11) or "")
    assert "text file" in (upload_refusal("a.txt", 100, data=b"\x00\x01") or "")
    assert "text file" in (upload_refusal("a.txt", 100, data=b"\xff\xfe bad") or "")
    assert "&lt;b&gt;" in (upload_refusal("<b>.pdf", 100) or "")
    assert "doesn't say how large" in (upload_refusal("a.txt", 100, size=None, size_required=True) or "")
