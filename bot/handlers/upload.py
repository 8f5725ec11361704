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
from retrieval.ingest.articles import SUPPORTED_SUFFIXES

logger = logging.getLogger(__name__)

ACCEPTED = SUPPORTED_SUFFIXES  # the loaders' own list: what can be uploaded is what can be read


def stored_name(data: bytes, suffix: str) -> str:
    """The name an upload is saved under: made from its content, never from the name the sender gave.

    So a name like "../../etc/passwd.txt" cannot choose where the file goes, and the same file sent
    twice is the same file (ingested once, then "unchanged").
    """
    return f"upload-{hashlib.sha256(data).hexdigest()[:16]}{suffix.lower()}"


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


def upload_refusal(
    name: str, limit: int, *, size: int | None = None, data: bytes | None = None, size_required: bool = False
) -> str | None:
    """Why a document cannot be added (a reply in HTML), or None when it can.

    Called with the size the message declares, then (`size_required`) with the size getFile reports,
    both before downloading, and again with the downloaded `data`.
    """
    shown = f"<code>{escape(name)}</code>"
    if Path(name).suffix.lower() not in ACCEPTED:
        return f"I can't add {shown}: I only read {', '.join(ACCEPTED)} files."
    if size_required and size is None:
        return f"I can't add {shown}: Telegram doesn't say how large it is. The limit is {_megabytes(limit)}."
    if size is not None and size > limit:
        return f"{shown} is too large ({_megabytes(size)}); the limit is {_megabytes(limit)}."
    if data is not None and len(data) > limit:
        return f"{shown} is too large; the limit is {_megabytes(limit)}."
    if data is not None and not is_text(data):
        return f"{shown} doesn't look like a text file, so I can't add it."
    return None


async def upload(update: Update, context: BotContext) -> None:
    message = update.effective_message
    if message is None or message.document is None or not await require_admin(update, context):
        return
    document = message.document
    runtime = context.runtime
    name = document.file_name or "upload"
    limit = runtime.settings.max_upload_bytes
    # The size is checked before anything is downloaded: as the message declares it, then as getFile reports it.
    data = b""
    refusal = upload_refusal(name, limit, size=document.file_size)
    if refusal is None:
        file = await document.get_file()
        size = file.file_size if file.file_size is not None else document.file_size
        refusal = upload_refusal(name, limit, size=size, size_required=True)
        if refusal is None:
            data = bytes(await file.download_as_bytearray())
            refusal = upload_refusal(name, limit, data=data)
    if refusal is not None:
        logger.info("upload %r refused: %s", name, refusal)
        await message.reply_text(refusal)
        return
    assert runtime.settings.articles_dir is not None
    uploads = runtime.settings.articles_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / stored_name(data, Path(name).suffix)
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
