"""A small Telegram Bot API server on loopback, for tests.

Telegram itself cannot be reached from here, so the end-to-end tests point the real bot
(python-telegram-bot, `base_url`) at this stand-in. It speaks the Bot API wire format for the
methods the bot uses (getMe, getUpdates with offset/timeout long polling, sendMessage,
editMessageText, sendChatAction, answerCallbackQuery, setMyCommands, deleteWebhook, getFile and
the file download path, getChatMember), checks what Telegram would check (the token, message length, HTML
markup), and lets a test push updates as users and read back everything the bot sent.

It also misbehaves on request, as Telegram and the network sometimes do: `fail(method, Fault(...))`
makes the next calls of a method answer 429 with `retry_after`, a 5xx, drop the connection without
an answer, or refuse the HTML; `go_away(seconds)` closes the server (connections refused) and
brings it back on the same port with everything it knew.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from html import unescape
from typing import Any, Literal

from aiohttp import web

# Parameters that arrive JSON-encoded, and those that are integers.
_JSON_PARAMS = {
    "reply_markup",
    "commands",
    "allowed_updates",
    "reply_parameters",
    "link_preview_options",
    "entities",
    "scope",
}
_INT_PARAMS = {"user_id", "chat_id", "offset", "limit", "timeout", "message_id", "message_thread_id", "reply_to_message_id"}
_BOOL_PARAMS = {"show_alert", "drop_pending_updates", "disable_notification", "disable_web_page_preview"}

# Tags Telegram accepts in parse_mode HTML.
_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
}
_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z-]*)(\s[^<>]*)?>|&(#\d+|#x[0-9a-fA-F]+|lt|gt|amp|quot);|[<>&]")

MAX_TEXT = 4096


class BadRequest(Exception):
    """What the Bot API answers with 400 and a description."""


def html_to_text(html: str) -> str:
    """The text a user sees for an HTML message; raises BadRequest where Telegram would refuse to parse it."""
    out: list[str] = []
    stack: list[str] = []
    position = 0
    for match in _TOKEN.finditer(html):
        out.append(html[position : match.start()])
        position = match.end()
        closing, tag, _attributes, entity = match.groups()
        if tag is not None:
            tag = tag.lower()
            if tag not in _TAGS:
                raise BadRequest(f'Bad Request: can\'t parse entities: unsupported start tag "{tag}"')
            if closing:
                if not stack or stack[-1] != tag:
                    raise BadRequest(f'Bad Request: can\'t parse entities: unmatched end tag "{tag}"')
                stack.pop()
            else:
                stack.append(tag)
        elif entity is not None:
            out.append(unescape(match.group(0)))
        else:
            raise BadRequest(f"Bad Request: can't parse entities: unescaped {match.group(0)!r} at offset {match.start()}")
    out.append(html[position:])
    if stack:
        raise BadRequest(f"Bad Request: can't parse entities: can't find end tag corresponding to start tag \"{stack[-1]}\"")
    return "".join(out)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Fault:
    """One deliberate failure: an HTTP `status` (429 carries `retry_after`), a dropped connection, or refused HTML."""

    kind: Literal["status", "drop", "parse"] = "status"
    status: int = 502
    retry_after: int | None = None

    @classmethod
    def flood(cls, retry_after: int = 1) -> Fault:
        return cls("status", 429, retry_after)

    @classmethod
    def server_error(cls, status: int = 502) -> Fault:
        return cls("status", status)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def bad_html(cls) -> Fault:
        return cls("parse", 400)


@dataclass
class Call:
    """One request the bot made, its decoded parameters, and what the server answered."""

    method: str
    params: dict[str, Any]
    result: Any = None
    error: str | None = None


@dataclass
class User:
    id: int
    first_name: str
    username: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        return data


@dataclass
class Chat:
    id: int
    type: str  # "private", "group", "supergroup"
    title: str | None = None
    is_forum: bool = False
    first_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            data["title"] = self.title
        if self.first_name:
            data["first_name"] = self.first_name
        if self.is_forum:
            data["is_forum"] = True
        return data


# Who `from` names in a message sent on behalf of a chat (Telegram's own placeholder accounts).
GROUP_ANONYMOUS_BOT = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}
CHANNEL_BOT = {"id": 136817688, "is_bot": True, "first_name": "Channel", "username": "Channel_Bot"}


@dataclass
class Sent:
    """A message the bot sent (and its later edits)."""

    message: dict[str, Any]
    html: str
    edits: list[str] = field(default_factory=list)
    first: str = ""  # the text as first sent, before any edit

    @property
    def shown(self) -> list[str]:
        """Every text the message has shown, in order: as sent, then each edit."""
        return [self.first, *self.edits]

    @property
    def text(self) -> str:
        return str(self.message.get("text", ""))

    @property
    def message_id(self) -> int:
        return int(self.message["message_id"])

    @property
    def buttons(self) -> list[dict[str, Any]]:
        markup = self.message.get("reply_markup") or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]


class BotAPIServer:
    """The stand-in Bot API: start it, give the bot `base_url`, push updates, read what the bot sent."""

    def __init__(
        self, token: str = "123456:TEST-token_abcdefghijklmnop", bot_id: int = 777000, username: str = "newsbot_test_bot"
    ) -> None:
        self.token = token
        self.bot = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "NewsBot",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.username = username
        self.calls: list[Call] = []
        self.commands: list[dict[str, Any]] = []  # the default menu
        self.chat_commands: dict[int, list[dict[str, Any]]] = {}  # menus for one chat (BotCommandScopeChat)
        self.webhook: dict[str, Any] | None = None
        self.sent: list[Sent] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._sent_by_id: dict[tuple[int, int], Sent] = {}
        self._chats: dict[int, Chat] = {}
        self.chat_admins: dict[int, set[int]] = {}  # for getChatMember: who administers each group
        self._files: dict[str, bytes] = {}
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._faults: dict[str, list[Fault]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._download)
        # A short shutdown: pending long polls are cut off, as when a server goes away.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def go_away(self, seconds: float) -> None:
        """Close the server (connections refused) for `seconds`, then serve again on the same port.

        Updates that users send meanwhile are kept, as Telegram keeps them.
        """
        await self.stop()
        await asyncio.sleep(seconds)
        await self.start()

    def fail(self, method: str, *faults: Fault) -> None:
        """The next calls of `method` fail, one fault each, in order."""
        self._faults.setdefault(method, []).extend(faults)

    def pending_faults(self, method: str) -> int:
        return len(self._faults.get(method, []))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- what a test does as a user ---------------------------------------------------------

    def private(self, user: User) -> Chat:
        return self._chat(Chat(user.id, "private", first_name=user.first_name))

    def group(self, chat_id: int, title: str, *, forum: bool = False) -> Chat:
        return self._chat(Chat(chat_id, "supergroup", title=title, is_forum=forum))

    def make_admin(self, chat: Chat, user: User) -> None:
        """`user` administers `chat` (getChatMember says "creator"; everyone else is a "member")."""
        self.chat_admins.setdefault(chat.id, set()).add(user.id)

    def _chat(self, chat: Chat) -> Chat:
        self._chats[chat.id] = chat
        return chat

    async def send(
        self,
        chat: Chat,
        user: User,
        text: str,
        *,
        reply_to: Sent | dict[str, Any] | None = None,
        thread_id: int | None = None,
        sender_chat: Chat | None = None,
    ) -> dict[str, Any]:
        """A text message from `user` (commands and @mentions get their entities, as Telegram adds them).

        With `sender_chat`, the message is sent on behalf of that chat, as Telegram delivers it: the group
        itself for an anonymous admin (`from` is then Telegram's GroupAnonymousBot), or a channel.
        """
        message = self._new_message(chat, user, thread_id)
        message["text"] = text
        if sender_chat is not None:
            message["sender_chat"] = sender_chat.to_dict()
            message["from"] = GROUP_ANONYMOUS_BOT if sender_chat.id == chat.id else CHANNEL_BOT
        entities = []
        command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
        if command:
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group(0))})
        for mention in re.finditer(r"@[A-Za-z0-9_]{5,}", text):
            if command and mention.start() < command.end():
                continue
            entities.append(
                {"type": "mention", "offset": utf16_len(text[: mention.start()]), "length": utf16_len(mention.group(0))}
            )
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            replied = reply_to.message if isinstance(reply_to, Sent) else reply_to
            message["reply_to_message"] = self._messages[(chat.id, int(replied["message_id"]))]
        await self._push({"message": message})
        return message

    async def send_document(
        self,
        chat: Chat,
        user: User,
        file_name: str,
        data: bytes,
        mime_type: str = "text/plain",
        *,
        declared_size: int | None = None,
        size_known: bool = True,
    ) -> dict[str, Any]:
        """A document message; the bot can fetch the bytes with getFile and the download path.

        `declared_size` is the size the message claims (default: the real one); with `size_known`
        False the message claims none, as the Bot API allows.
        """
        file_id = f"FILE{next(self._file_ids)}"
        self._files[file_id] = data
        message = self._new_message(chat, user, None)
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": f"U{file_id}",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": declared_size or len(data),
        }
        if not size_known:
            del message["document"]["file_size"]
        await self._push({"message": message})
        return message

    async def press(self, user: User, sent: Sent, data: str) -> str:
        """Press an inline button under a bot message; returns the callback query id."""
        query_id = f"CQ{next(self._callback_ids)}"
        query = {
            "id": query_id,
            "from": user.to_dict(),
            "message": sent.message,
            "chat_instance": f"ci{sent.message['chat']['id']}",
            "data": data,
        }
        await self._push({"callback_query": query})
        return query_id

    def new_message(self, chat: Chat, user: User, text: str) -> dict[str, Any]:
        """A message from `user` that is not queued for getUpdates (to post to a webhook instead)."""
        message = self._new_message(chat, user, None)
        message["text"] = text
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(text.split()[0])}]
        return message

    def _new_message(self, chat: Chat, user: User, thread_id: int | None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat.id),
            "from": user.to_dict(),
            "chat": chat.to_dict(),
            "date": int(time.time()),
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        self._messages[(chat.id, message["message_id"])] = message
        return message

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    async def _push(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._update_ids)
        async with self._changed:
            self._updates.append(update)
            self._changed.notify_all()

    # -- what a test reads -------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the call log; `wait_for` and `sent_since` look only after it."""
        return len(self.calls)

    def sent_since(self, mark: int, chat_id: int | None = None) -> list[Sent]:
        found = []
        for call in self.calls[mark:]:
            if call.method != "sendMessage" or call.error is not None:
                continue
            if chat_id is None or call.result["chat"]["id"] == chat_id:
                found.append(self._sent_by_id[(call.result["chat"]["id"], call.result["message_id"])])
        return found

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 120.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked after every request the bot makes)."""

        async def check() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    await self._changed.wait()
                return value

        return await asyncio.wait_for(check(), timeout)

    async def replies(self, mark: int, chat_id: int, count: int = 1, timeout: float = 120.0) -> list[Sent]:
        """The first `count` messages the bot sent to `chat_id` after `mark`."""
        return (await self.wait_for(lambda: len(s := self.sent_since(mark, chat_id)) >= count and s, timeout))[:count]

    def calls_to(self, method: str, mark: int = 0) -> list[Call]:
        return [call for call in self.calls[mark:] if call.method == method]

    # -- the Bot API -------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await self._params(request)
        call = Call(method, params)
        fault = self._fault(method, params)
        if fault is not None:
            return await self._misbehave(request, call, fault)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            call.error = "Not Found"
            await self._record(call)
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        try:
            call.result = await handler(params)
        except BadRequest as exc:
            call.error = str(exc)
            await self._record(call)
            return web.json_response({"ok": False, "error_code": 400, "description": str(exc)}, status=400)
        await self._record(call)
        return web.json_response({"ok": True, "result": call.result})

    def _fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        if queue[0].kind == "parse" and str(params.get("parse_mode", "")).upper() != "HTML":
            return None  # only HTML can be refused as HTML
        return queue.pop(0)

    async def _misbehave(self, request: web.Request, call: Call, fault: Fault) -> web.StreamResponse:
        """Answer `call` with `fault` instead of doing it."""
        if fault.kind == "drop":
            call.error = "connection dropped"
            await self._record(call)
            assert request.transport is not None
            request.transport.abort()  # no status line, no body: the client sees the connection vanish
            return web.Response()
        if fault.kind == "parse":
            description = 'Bad Request: can\'t parse entities: unsupported start tag "x" at byte offset 0'
            call.error = description
            await self._record(call)
            return web.json_response({"ok": False, "error_code": 400, "description": description}, status=400)
        body: dict[str, Any] = {"ok": False, "error_code": fault.status}
        if fault.status == 429:
            body["description"] = f"Too Many Requests: retry after {fault.retry_after}"
            body["parameters"] = {"retry_after": fault.retry_after}
        else:
            body["description"] = "Internal Server Error" if fault.status == 500 else "Bad Gateway"
        call.error = body["description"]
        await self._record(call)
        return web.json_response(body, status=fault.status)

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            raw: dict[str, Any] = await request.json()
        elif request.can_read_body:
            raw = {key: value for key, value in (await request.post()).items()}
        else:
            raw = dict(request.query)
        params: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, str) and key in _JSON_PARAMS:
                value = json.loads(value)
            elif isinstance(value, str) and key in _INT_PARAMS:
                value = int(value)
            elif isinstance(value, str) and key in _BOOL_PARAMS:
                value = value.lower() == "true"
            params[key] = value
        return params

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        file_id = path.rsplit("/", 1)[-1]
        call = Call("download", {"file_id": file_id})
        fault = self._fault("download", {})
        if fault is not None:
            return await self._misbehave(request, call, fault)
        if file_id not in self._files:
            call.error = "Not Found"
            await self._record(call)
            return web.Response(status=404)
        await self._record(call)
        return web.Response(body=self._files[file_id])

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self.bot

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = params
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        scope = params.get("scope") or {"type": "default"}
        if scope["type"] == "default":
            self.commands = params["commands"]
        elif scope["type"] == "chat":
            self._known_chat(scope["chat_id"])
            self.chat_commands[int(scope["chat_id"])] = params["commands"]
        else:
            raise BadRequest(f"Bad Request: scope {scope['type']} is not supported by the test server")
        return True

    async def _m_getMyCommands(self, params: dict[str, Any]) -> Any:
        return self.commands

    async def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        self._known_chat(params["chat_id"])
        return True

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        if len(str(params.get("text", ""))) > 200:
            raise BadRequest("Bad Request: MESSAGE_TOO_LONG")
        return True

    async def _m_getFile(self, params: dict[str, Any]) -> Any:
        file_id = str(params["file_id"])
        if file_id not in self._files:
            raise BadRequest("Bad Request: invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"U{file_id}",
            "file_size": len(self._files[file_id]),
            "file_path": f"documents/{file_id}",
        }

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._changed:
            # An offset confirms every update before it: Telegram forgets them.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    break
            return self._updates[:limit]

    async def _m_getChatMember(self, params: dict[str, Any]) -> Any:
        chat = self._known_chat(params["chat_id"])
        user = {"id": int(params["user_id"]), "is_bot": False, "first_name": "Member"}
        if int(params["user_id"]) in self.chat_admins.get(chat.id, set()):
            return {"status": "creator", "user": user, "is_anonymous": False}
        return {"status": "member", "user": user}

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        chat = self._known_chat(params["chat_id"])
        html = str(params.get("text", ""))
        text = self._check_text(html, params)
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat.id),
            "from": self.bot,
            "chat": chat.to_dict(),
            "date": int(time.time()),
            "text": text,
        }
        if "message_thread_id" in params:
            message["message_thread_id"] = params["message_thread_id"]
            message["is_topic_message"] = True
        replied_id = (params.get("reply_parameters") or {}).get("message_id") or params.get("reply_to_message_id")
        if replied_id:
            replied = self._messages.get((chat.id, int(replied_id)))
            if replied is None:
                raise BadRequest("Bad Request: message to be replied not found")
            message["reply_to_message"] = replied
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        self._messages[(chat.id, message["message_id"])] = message
        sent = Sent(message, html, first=text)
        self.sent.append(sent)
        self._sent_by_id[(chat.id, message["message_id"])] = sent
        return message

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        chat = self._known_chat(params["chat_id"])
        key = (chat.id, int(params["message_id"]))
        sent = self._sent_by_id.get(key)
        if sent is None:
            raise BadRequest("Bad Request: message to edit not found")
        html = str(params.get("text", ""))
        text = self._check_text(html, params)
        markup = params.get("reply_markup")
        if text == sent.text and markup == sent.message.get("reply_markup"):
            raise BadRequest(
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message"
            )
        sent.message["text"] = text
        sent.message["edit_date"] = int(time.time())
        if markup:
            sent.message["reply_markup"] = markup
        else:
            sent.message.pop("reply_markup", None)
        sent.html = html
        sent.edits.append(text)
        return sent.message

    def _known_chat(self, chat_id: Any) -> Chat:
        chat = self._chats.get(int(chat_id))
        if chat is None:
            raise BadRequest("Bad Request: chat not found")
        return chat

    @staticmethod
    def _check_text(html: str, params: dict[str, Any]) -> str:
        text = html_to_text(html) if str(params.get("parse_mode", "")).upper() == "HTML" else html
        if not text.strip():
            raise BadRequest("Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise BadRequest("Bad Request: message is too long")
        return text


def post_update(url: str, update: dict[str, object], secret: str) -> int:
    """POST `update` to a bot's webhook as Telegram does, with its secret token: the HTTP status (0: unreachable)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(update).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0
