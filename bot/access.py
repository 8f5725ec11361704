"""Who may use the bot and its admin commands; chat keys and the filters that pick group messages."""

from __future__ import annotations

import logging

from telegram import ChatMember, Message, MessageEntity, Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, filters

from bot.conversation import ChatKey
from bot.runtime import BotContext

logger = logging.getLogger(__name__)

NOT_ADMIN = "Sorry, only the bot's admins can do that."


def chat_key(message: Message) -> ChatKey:
    """The chat, and the forum topic within it, that a message belongs to."""
    return message.chat.id, message.message_thread_id if message.is_topic_message else None


async def require_admin(update: Update, context: BotContext) -> bool:
    """True for admins; otherwise reply politely and log who tried."""
    user = update.effective_user
    if user is not None and user.id in context.settings.admin_ids:
        return True
    message = update.effective_message
    command = (message.text or "document").split()[0] if message else "?"
    logger.warning("admin-only %s refused for user id %s", command, user.id if user else None)
    if message is not None:
        await message.reply_text(NOT_ADMIN)
    return False


NOT_CHAT_ADMIN = "Sorry, only this group's admins (or the bot's) can do that."


def sent_by_the_group(message: Message | None) -> bool:
    """A message an anonymous admin sent on behalf of the group (`sender_chat` is the group itself).

    Telegram then names its GroupAnonymousBot as the sender, which is no member: only a group's admins
    can post as the group. A channel posting in its discussion group has another `sender_chat`.
    """
    return message is not None and message.sender_chat is not None and message.sender_chat.id == message.chat.id


async def require_chat_admin(update: Update, context: BotContext) -> bool:
    """True for the bot's admins, anyone in their own private chat, a group's admins and its anonymous
    admins (`sent_by_the_group`); otherwise reply politely and log who tried."""
    user, chat, message = update.effective_user, update.effective_chat, update.effective_message
    if user is None or chat is None:
        return False
    if user.id in context.settings.admin_ids or chat.type == ChatType.PRIVATE or sent_by_the_group(message):
        return True
    member = await context.bot.get_chat_member(chat.id, user.id)
    if member.status in (ChatMember.OWNER, ChatMember.ADMINISTRATOR):
        return True
    command = (message.text or "?").split()[0] if message else "?"
    on_behalf = f" (sent as chat id {message.sender_chat.id})" if message is not None and message.sender_chat else ""
    logger.warning("group-admin-only %s refused for user id %s%s in chat id %s", command, user.id, on_behalf, chat.id)
    if message is not None:
        await message.reply_text(NOT_CHAT_ADMIN)
    return False


async def gate(update: Update, context: BotContext) -> None:
    """Drop updates from chats outside the allow-list (when there is one); admins always pass."""
    allowed = context.settings.allowed_chat_ids
    if not allowed:
        return
    chat, user = update.effective_chat, update.effective_user
    if (chat is not None and chat.id in allowed) or (user is not None and user.id in context.settings.admin_ids):
        return
    logger.info("ignored an update from chat id %s (not in allowed_chat_ids)", chat.id if chat else None)
    raise ApplicationHandlerStop


class _MentionsMe(filters.MessageFilter):
    """Messages that @mention this bot."""

    def filter(self, message: Message) -> bool:
        username = (message.get_bot().username or "").lower()
        mentions = message.parse_entities([MessageEntity.MENTION]).values()
        return bool(username) and any(m.lower() == f"@{username}" for m in mentions)


class _RepliesToMe(filters.MessageFilter):
    """Messages that reply to one of this bot's messages."""

    def filter(self, message: Message) -> bool:
        replied = message.reply_to_message
        return bool(replied and replied.from_user and replied.from_user.id == message.get_bot().id)


MENTIONS_ME = _MentionsMe(name="MentionsMe")
REPLIES_TO_ME = _RepliesToMe(name="RepliesToMe")
