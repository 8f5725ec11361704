"""The real bot (`bot.app.build_application`) running against the test Bot API server, as `newsbot serve` runs it."""

from __future__ import annotations

from typing import Any

from bot.app import build_application
from bot.runtime import RUNTIME_KEY, Runtime
from retrieval.service import Services
from tests.botapi import BotAPIServer, Chat, Sent, User


class RunningBot:
    """The running bot, the server it talks to, and its runtime (for the few tests that look inside)."""

    def __init__(self, server: BotAPIServer, application: Any) -> None:
        self.server = server
        self.application = application
        self.stopped = False

    @property
    def runtime(self) -> Runtime:
        return self.application.bot_data[RUNTIME_KEY]

    async def ask(self, chat: Chat, user: User, text: str, count: int = 1, **kwargs: Any) -> list[Sent]:
        """Send a message and wait for the bot's first `count` replies in that chat."""
        mark = self.server.mark()
        await self.server.send(chat, user, text, **kwargs)
        return await self.server.replies(mark, chat.id, count)

    async def run_job(self, name: str) -> None:
        """Do the scheduled job `name` now (claiming its lease), rather than wait for its time."""
        from bot import jobs

        await jobs.run_now(self.application, name)


async def start_bot(server: BotAPIServer, services: Services, *, poll_timeout: int = 5) -> RunningBot:
    """What run_polling does, minus the signal handling and the blocking loop (long polls of `poll_timeout` s)."""
    application = build_application(services.settings, server.token, base_url=server.base_url, services=services)
    await application.initialize()
    assert application.post_init is not None
    await application.post_init(application)
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0.0, timeout=poll_timeout)
    return RunningBot(server, application)


async def stop_bot(bot: RunningBot) -> None:
    """Stop it as `newsbot serve` does on a signal (once, however often it is called)."""
    if bot.stopped:
        return
    bot.stopped = True
    application = bot.application
    await application.updater.stop()
    await application.stop()
    assert application.post_shutdown is not None
    await application.post_shutdown(application)
    await application.shutdown()
