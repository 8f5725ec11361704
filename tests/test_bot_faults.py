"""Telegram misbehaving on purpose: the real bot, over HTTP, against the loopback Bot API server's faults.

Flood limits (429 with retry_after), 5xx answers and dropped connections on sendMessage and on
getUpdates, HTML that Telegram refuses to parse, and the server gone for ten seconds. In every
case each question gets exactly one answer, and polling goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from retrieval.service import Services
from tests.botapi import BotAPIServer, Chat, Fault, Sent, User
from tests.runningbot import start_bot, stop_bot

TROOPS = "How many additional troops did Ash Carter announce for Iraq in July 2016?"
SORTIES = "How much can coalition-supported sorties cost per day?"


@pytest.fixture(scope="module")
async def server(seed_services: Services) -> AsyncIterator[BotAPIServer]:
    """The Bot API server with the real bot long-polling it (the sample articles, read only)."""
    server = BotAPIServer()
    await server.start()
    # Short long polls: a fault on getUpdates is met again within seconds.
    bot = await start_bot(server, seed_services, poll_timeout=2)
    yield server
    await stop_bot(bot)
    await server.stop()


def user_chat(server: BotAPIServer, user_id: int) -> tuple[User, Chat]:
    user = User(user_id, f"user{user_id}")
    return user, server.private(user)


def delivered(server: BotAPIServer, chat: Chat, mark: int = 0) -> list[Sent]:
    return server.sent_since(mark, chat.id)


async def settle(server: BotAPIServer, user_id: int = 9999) -> None:
    """One more question answered end to end: anything the bot would still send twice has been sent by then."""
    user, chat = user_chat(server, user_id)
    mark = server.mark()
    await server.send(chat, user, SORTIES)
    await server.replies(mark, chat.id)


def failed(server: BotAPIServer, method: str, mark: int, chat: Chat | None = None) -> list[Any]:
    return [
        c
        for c in server.calls_to(method, mark)
        if c.error is not None and (chat is None or int(c.params.get("chat_id", 0)) == chat.id)
    ]


async def test_flood_limit_is_waited_out_and_the_answer_sent_once(server: BotAPIServer) -> None:
    user, chat = user_chat(server, 501)
    mark = server.mark()
    server.fail("sendMessage", Fault.flood(retry_after=1))
    await server.send(chat, user, TROOPS)
    [answer] = await server.replies(mark, chat.id)
    assert "560" in answer.text
    await settle(server, 5011)
    assert len(delivered(server, chat, mark)) == 1
    assert [c.error for c in failed(server, "sendMessage", mark, chat)] == ["Too Many Requests: retry after 1"]


async def test_server_errors_and_dropped_connections_on_send_are_retried(server: BotAPIServer) -> None:
    user, chat = user_chat(server, 502)
    mark = server.mark()
    server.fail("sendMessage", Fault.server_error(502), Fault.drop(), Fault.server_error(500))
    await server.send(chat, user, SORTIES)
    [answer] = await server.replies(mark, chat.id)
    assert "$250,000" in answer.text
    await settle(server, 5021)
    assert len(delivered(server, chat, mark)) == 1
    assert len(failed(server, "sendMessage", mark, chat)) == 3


async def test_polling_goes_on_through_server_errors_and_dropped_connections(server: BotAPIServer) -> None:
    first_user, first = user_chat(server, 503)
    later_user, later = user_chat(server, 504)
    mark = server.mark()
    server.fail("getUpdates", Fault.server_error(502), Fault.drop(), Fault.server_error(500))
    # The poll already waiting delivers this one; the polls after it (which confirm it) fail three times.
    await server.send(first, first_user, SORTIES)
    await server.replies(mark, first.id)
    await server.wait_for(lambda: server.pending_faults("getUpdates") == 0, timeout=60)
    await server.send(later, later_user, TROOPS)
    await server.replies(mark, later.id)
    await settle(server, 5031)
    assert len(failed(server, "getUpdates", mark)) == 3
    assert len(delivered(server, first, mark)) == 1  # confirmed despite the failed polls: not answered again
    assert len(delivered(server, later, mark)) == 1


async def test_html_refused_by_telegram_is_resent_as_plain_text(server: BotAPIServer) -> None:
    user, chat = user_chat(server, 505)
    mark = server.mark()
    server.fail("sendMessage", Fault.bad_html())
    await server.send(chat, user, SORTIES)
    [answer] = await server.replies(mark, chat.id)
    assert "$250,000" in answer.text and "Sources" in answer.text
    assert "<b>" not in answer.text and "&amp;" not in answer.text  # tags dropped, entities decoded
    sent = [c for c in server.calls_to("sendMessage", mark) if c.error is None and c.result["chat"]["id"] == chat.id]
    assert len(sent) == 1 and "parse_mode" not in sent[0].params
    assert answer.buttons  # the quote buttons survive the fallback
    await settle(server, 5051)
    assert len(delivered(server, chat, mark)) == 1


async def test_server_gone_for_ten_seconds_polling_resumes_nothing_lost_or_repeated(server: BotAPIServer) -> None:
    before_user, before = user_chat(server, 506)
    mark = server.mark()
    await server.send(before, before_user, SORTIES)
    await server.replies(mark, before.id)

    outage = asyncio.create_task(server.go_away(10))
    await asyncio.sleep(0.5)  # the server is down now: users keep writing, Telegram keeps their messages
    during = [user_chat(server, 507), user_chat(server, 508)]
    for user, chat in during:
        await server.send(chat, user, TROOPS)
    await outage
    for _, chat in during:
        await server.replies(mark, chat.id, timeout=120)
    await settle(server, 5061)
    for chat in [before] + [chat for _, chat in during]:
        assert len(delivered(server, chat, mark)) == 1, chat.id
