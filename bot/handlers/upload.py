"""A document sent by an admin: check it, save it under the articles directory's uploads/, ingest it."""

from __future__ import annotations

import hashlib
import logging
from html import escape
from pathlib import Path

from telegram import Update

from bot.access import require_admin
from bot.progress import ProgressMessage, ingest_with_progress
from bot.runtime import BotContext

logger = logging.getLogger(__name__)

ACCEPTED = (".txt", ".md", ".html", ".jsonl", ".json")


def stored_name(data: bytes, suffix: str) -> str:
    """The name an upload is saved under: made from its content, never from the name the sender gave.

    So a name like "../../etc/passwd.txt" cannot choose where the file goes, and the same file sent
    twice is the same file (ingested once, then "unchanged").
    """
    return f"upload-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"


def is_text(data: bytes) -> bool:
    """UTF-8 text without NUL bytes (binary files pretending to be .txt are refused)."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


async def upload(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None or message.document is None or not await require_admin(update, context):
        return
    document = message.document
    runtime = context.runtime
    name = document.file_name or "upload"
    suffix = Path(name).suffix.lower()
    if suffix not in ACCEPTED:
        await message.reply_text(
            f"I can't add <code>{escape(name)}</code>: I only read {', '.join(ACCEPTED)} files."
        )
        return
    limit = runtime.settings.max_upload_bytes
    # The size is checked before anything is downloaded: first as the message declares it, then as getFile does.
    if document.file_size is not None and document.file_size > limit:
        await message.reply_text(
            f"<code>{escape(name)}</code> is too large ({_megabytes(document.file_size)}); "
            f"the limit is {_megabytes(limit)}."
        )
        return
    file = await document.get_file()
    size = file.file_size if file.file_size is not None else document.file_size
    if size is None or size > limit:
        logger.warning("upload %r refused before download: size %s, limit %s", name, size, limit)
        await message.reply_text(
            f"I can't add <code>{escape(name)}</code>: "
            + ("Telegram doesn't say how large it is." if size is None else f"it is too large ({_megabytes(size)}).")
            + f" The limit is {_megabytes(limit)}."
        )
        return
    data = bytes(await file.download_as_bytearray())
    if len(data) > limit:
        await message.reply_text(f"<code>{escape(name)}</code> is too large; the limit is {_megabytes(limit)}.")
        return
    if not is_text(data):
        await message.reply_text(f"<code>{escape(name)}</code> doesn't look like a text file, so I can't add it.")
        return
    assert runtime.settings.articles_dir is not None
    uploads = runtime.settings.articles_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / stored_name(data, suffix)
    existed = path.exists()
    path.write_bytes(data)
    user_id = message.from_user.id if message.from_user else None
    logger.info("upload %r saved as %s by user id %s", name, path.name, user_id)
    async with runtime.ingest_lock:
        progress = ProgressMessage(await message.reply_text(f"Adding <code>{escape(name)}</code>…"))
        report = await ingest_with_progress(runtime, [path], progress)
    if report.skipped:
        if not existed:
            path.unlink(missing_ok=True)  # a file that cannot be read would only fail every later reload
        reasons = "; ".join(escape(e.reason, quote=False) for e in report.skipped)
        await progress.show(f"I couldn't read <code>{escape(name)}</code>: {reasons}", force=True)
        return
    count = len(report.added) + len(report.updated)
    await progress.show(
        f"Added <code>{escape(name)}</code> (saved as <code>uploads/{path.name}</code>): "
        f"{count} new or updated article{'s' if count != 1 else ''}, "
        f"{len(report.unchanged)} unchanged. You can ask about it now.",
        force=True,
    )
