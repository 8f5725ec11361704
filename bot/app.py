"""The bot's entry point: build the Application, register the handlers, run it. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from telegram import Bot, BotCommand, BotCommandScopeChat, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    Defaults,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import BaseRequest

from bot import access, health, jobs
from bot.delivery import ResilientRateLimiter
from bot.handlers import about, add, ask, brief, digest, errors, feeds, reload, reset, sources, start, stats, upload
from bot.health import Heartbeat
from bot.runtime import RUNTIME_KEY, BotContext, Runtime, Workers
from config import Settings

if TYPE_CHECKING:
    from retrieval.service import Services

logger = logging.getLogger(__name__)

NO_TOKEN = (
    "newsbot serve needs a Telegram bot token.\n"
    "Create a bot by talking to @BotFather in Telegram (send /newbot), then run:\n"
    "  export TELEGRAM_BOT_TOKEN=123456:ABC...\n"
    "  newsbot serve"
)
# A secret given as a file (compose and Kubernetes secrets): NAME_FILE names the file that holds NAME.
TOKEN_VARIABLE = "TELEGRAM_BOT_TOKEN"
# Waits between two tries to reach Telegram at start: doubling from the first to the last, then the last.
RETRY_FIRST_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0

# What Telegram's command menu shows; admins also see ADMIN_COMMANDS in their private chat.
COMMANDS = [
    BotCommand("ask", "Ask a question about the news articles"),
    BotCommand("brief", "Briefing on a topic: /brief TOPIC [since DATE | 7d]"),
    BotCommand("digest", "Daily briefing here: /digest TOPIC at HH:MM"),
    BotCommand("sources", "List the indexed articles"),
    BotCommand("about", "What I know: articles, dates, last reload"),
    BotCommand("reset", "Forget this conversation"),
    BotCommand("help", "How to use me"),
    BotCommand("start", "What this bot is"),
]
ADMIN_COMMANDS = [
    BotCommand("reload", "Rescan the articles directory"),
    BotCommand("stats", "Questions served, refusals, latency, index size"),
    BotCommand("feeds", "Feeds: list, add URL, remove N"),
    BotCommand("add", "Add the article at a link: /add URL"),
]

HEARTBEAT_KEY = "heartbeat"

BotApplication = Application[Any, BotContext, dict[Any, Any], dict[Any, Any], dict[Any, Any], Any]


def build_application(
    settings: Settings,
    token: str,
    *,
    base_url: str | None = None,
    base_file_url: str | None = None,
    services: Services | None = None,
    request: BaseRequest | None = None,
) -> BotApplication:
    """The Application with every handler registered; services are built in post_init unless given.

    `request` replaces the HTTP layer (the handler tests record calls with it instead of sending them).
    """

    async def post_init(application: BotApplication) -> None:
        nonlocal services
        if services is None:
            from retrieval.service import Services

            services = Services(settings)
        workers: Workers | None = None
        workers_problem = None
        if settings.answer_workers:  # worker services, over HTTP (`newsbot worker`)
            from retrieval.remote.client import RemoteWorkers

            workers = remote = RemoteWorkers.from_settings(settings)
            workers_problem = remote.problem
            await asyncio.to_thread(remote.start)
        elif settings.answer_processes:
            from retrieval.workers import AnswerWorkers

            workers = AnswerWorkers(settings, settings.answer_processes)
            await asyncio.to_thread(workers.start)
        else:
            await asyncio.to_thread(services.warm_up)
        application.bot_data[RUNTIME_KEY] = Runtime.build(settings, services, workers)
        # The feed poll and the digests (bot/jobs.py), on the JobQueue.
        jobs.start(application)
        # The container's health check reads this file (bot/health.py): ready once the index, and a worker service if any, answer.
        heartbeat = Heartbeat(settings.data_dir / health.FILE_NAME, services.store.count, workers_problem)
        application.bot_data[HEARTBEAT_KEY] = asyncio.create_task(heartbeat.run(), name="heartbeat")
        await application.bot.set_my_commands(COMMANDS)
        for admin_id in settings.admin_ids:
            try:
                await application.bot.set_my_commands(COMMANDS + ADMIN_COMMANDS, scope=BotCommandScopeChat(admin_id))
            except TelegramError as exc:  # the admin has not opened a chat with the bot yet
                logger.warning("admin commands not shown to user id %s: %s", admin_id, exc)
        logger.info("bot @%s ready", application.bot.username)

    async def post_shutdown(application: BotApplication) -> None:
        runtime = application.bot_data.pop(RUNTIME_KEY, None)
        if isinstance(runtime, Runtime) and runtime.workers is not None:
            await asyncio.to_thread(runtime.workers.close)
        if isinstance(runtime, Runtime):
            runtime.services.close()
        beating = application.bot_data.pop(HEARTBEAT_KEY, None)
        if beating is not None:
            beating.cancel()
        logger.info("bot stopped")

    builder = (
        ApplicationBuilder()
        .token(token)
        .context_types(ContextTypes(context=BotContext))
        .defaults(Defaults(parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True)))
        # Flood limits, 5xx, dropped connections and HTML Telegram cannot parse (bot/delivery.py).
        .rate_limiter(ResilientRateLimiter())
        # Updates are handled concurrently so questions keep being answered during a /reload.
        .concurrent_updates(True)
        .post_init(post_init)
        .post_shutdown(post_shutdown)
    )
    if request is not None:
        builder = builder.request(request).get_updates_request(request)
    if base_url:
        builder = builder.base_url(base_url).base_file_url(base_file_url or file_url_for(base_url))
    application: BotApplication = builder.build()
    register(application)
    return application


def register(application: BotApplication) -> None:
    """The handlers, in the order they are tried."""
    # 1. The chat allow-list, before anything else.
    application.add_handler(TypeHandler(Update, access.gate), group=-1)
    # 2. Commands (new messages only: editing an old command does not run it again).
    new = filters.UpdateType.MESSAGE
    application.add_handlers(
        [
            CommandHandler("start", start.start, filters=new),
            CommandHandler("help", start.help, filters=new),
            CommandHandler("ask", ask.ask, filters=new),
            CommandHandler("brief", brief.brief, filters=new),
            CommandHandler("sources", sources.sources, filters=new),
            CommandHandler("about", about.about, filters=new),
            CommandHandler("reset", reset.reset, filters=new),
            CommandHandler("reload", reload.reload, filters=new),
            CommandHandler("stats", stats.stats, filters=new),
            CommandHandler("feeds", feeds.feeds, filters=new),
            CommandHandler("add", add.add, filters=new),
            CommandHandler("digest", digest.digest, filters=new),
        ]
    )
    # 3. Buttons under answers and lists.
    application.add_handler(CallbackQueryHandler(ask.quote, pattern=r"^q:\d+:\d+$"))
    application.add_handler(CallbackQueryHandler(sources.page, pattern=r"^src:\d+$"))
    # 4. Documents (admins add articles) in private chats.
    application.add_handler(MessageHandler(new & filters.ChatType.PRIVATE & filters.Document.ALL, upload.upload))
    # 5. A link alone in a private chat (admins add its article); then questions: any private text, and in
    # groups only mentions of the bot and replies to it.
    text = new & filters.TEXT & ~filters.COMMAND
    application.add_handler(MessageHandler(filters.ChatType.PRIVATE & text & filters.Regex(add.LINK_ONLY), add.link_message))
    application.add_handler(MessageHandler(filters.ChatType.PRIVATE & text, ask.message))
    application.add_handler(
        MessageHandler(filters.ChatType.GROUPS & text & (access.MENTIONS_ME | access.REPLIES_TO_ME), ask.message)
    )
    # 6. One error handler.
    application.add_error_handler(errors.error)


def file_url_for(base_url: str) -> str:
    """The file download URL that goes with a Bot API base URL ("…/bot" → "…/file/bot")."""
    if base_url.endswith("/bot"):
        return base_url[: -len("/bot")] + "/file/bot"
    return base_url.rstrip("/") + "/file/bot"


class RedactToken(logging.Filter):
    """Replace the bot token wherever it would appear in a log line (URLs of the Bot API contain it)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "<token>"), None
        if record.exc_info and not record.exc_text:  # exceptions from the HTTP layer quote the URL
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self.token in record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, "<token>")
        return True


def secret(name: str) -> tuple[str, str]:
    """The secret `name` from the environment, else from the file `name`_FILE names; and, when there is none, why."""
    value = os.environ.get(name, "").strip()
    if value:
        return value, ""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if not path:
        return "", f"{name} is not set"
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        return "", f"{name} is not set and its file {path} cannot be read ({exc.strerror or exc})"
    return value, "" if value else f"{name} is not set and its file {path} is empty"


def telegram_problem(token: str, base_url: str | None) -> str:
    """Why Telegram cannot serve this token now (it is unreachable, or refuses the token); "" when it can (getMe answered)."""

    async def get_me() -> None:
        bot = Bot(token, base_url=base_url or "https://api.telegram.org/bot")
        try:
            await bot.initialize()  # getMe
        finally:
            with contextlib.suppress(TelegramError):
                await bot.shutdown()

    where = urlparse(base_url or "https://api.telegram.org").netloc
    try:
        asyncio.run(get_me())
    except InvalidToken:
        return f"Telegram ({where}) refused the bot token: check {TOKEN_VARIABLE} or its file"
    except NetworkError as exc:  # TimedOut included
        return f"Telegram ({where}) cannot be reached: {str(exc).replace(token, '<token>')}"
    return ""


def wait_for_telegram(
    base_url: str | None, sleep: Callable[[float], object] = time.sleep, tries: int | None = None
) -> str | None:
    """The bot token, once Telegram answers for it; None when `tries` ran out.

    Without a token (a secret not yet in place), with a token Telegram refuses, or with Telegram out of
    reach, one line says so and it tries again, waiting longer each time (RETRY_FIRST_SECONDS doubling
    to RETRY_MAX_SECONDS): a container keeps running, unhealthy, and says why, rather than restart in a loop.
    """
    wait = RETRY_FIRST_SECONDS
    attempt = 0
    while True:
        attempt += 1
        token, problem = secret(TOKEN_VARIABLE)
        if token:
            problem = telegram_problem(token, base_url)
            if not problem:
                return token
        else:
            problem = f"no Telegram bot token: {problem} (create a bot with @BotFather)"
        if tries is not None and attempt >= tries:
            logger.error("%s; giving up after %d tries", problem, attempt)
            return None
        logger.error("%s; trying again in %.0f s", problem, wait)
        sleep(wait)
        wait = min(wait * 2, RETRY_MAX_SECONDS)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run(
    settings: Settings,
    *,
    webhook_url: str | None = None,
    listen: str = "0.0.0.0:8443",
    secret_token: str | None = None,
) -> int:
    """`newsbot serve`: long polling, or PTB's webhook server when `webhook_url` is given."""
    if not os.environ.get(TOKEN_VARIABLE, "").strip() and not os.environ.get(f"{TOKEN_VARIABLE}_FILE"):
        print(NO_TOKEN, file=sys.stderr)  # at a terminal: say how to get one, and stop
        return 2
    host, _, port = listen.rpartition(":")
    if webhook_url and (not host or not port.isdigit()):
        print(f"newsbot serve: --listen must be HOST:PORT, got {listen!r}", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs request URLs, which hold the token
    base_url = os.environ.get("TELEGRAM_API_BASE_URL") or None
    # As a container's first process, Python has no default action for SIGTERM: `docker stop` would wait,
    # then kill. Stop cleanly while waiting for Telegram; python-telegram-bot handles it once serving.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        token = wait_for_telegram(base_url)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if token is None:
        return 1
    redact = RedactToken(token)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    application = build_application(
        settings,
        token,
        base_url=base_url,
        base_file_url=os.environ.get("TELEGRAM_API_FILE_URL") or None,
    )
    if webhook_url:
        if not secret_token:
            logger.warning("webhook without a secret token: anyone who finds the URL can post updates")
        application.run_webhook(
            listen=host,
            port=int(port),
            url_path=urlparse(webhook_url).path.lstrip("/"),
            webhook_url=webhook_url,
            secret_token=secret_token,
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        application.run_polling(allowed_updates=Update.ALL_TYPES)
    return 0
