"""A document sent by an admin: check it, save it under the articles directory's uploads/, ingest it."""

from __future__ import annotations

import logging
import re
from html import escape
from pathlib import Path

from telegram import Update

from bot.access import require_admin
from bot.progress import ProgressMessage, ingest_with_progress
from bot.runtime import BotContext
from retrieval.ingest.articles import SUPPORTED_SUFFIXES

logger = logging.getLogger(__name__)

ACCEPTED = SUPPORTED_SUFFIXES  # the loaders' own list: what can be uploaded is what can be read


def safe_name(name: str | None, directory: Path) -> Path:
    """A file name in `directory` made only of safe characters, numbered if it is taken."""
    stem = re.sub(r"[^\w.-]+", "_", Path(name or "upload.txt").name).lstrip("._") or "upload.txt"
    path = directory / stem
    counter = 1
    while path.exists():
        path = directory / f"{Path(stem).stem}-{counter}{Path(stem).suffix}"
        counter += 1
    return path


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


def upload_refusal(name: str, limit: int, *, size: int | None = None, data: bytes | None = None) -> str | None:
    """Why a document cannot be added (a reply in HTML), or None when it can.

    Called with the declared `size` before downloading, and again with the downloaded `data`.
    """
    shown = f"<code>{escape(name)}</code>"
    if Path(name).suffix.lower() not in ACCEPTED:
        return f"I can't add {shown}: I only read {', '.join(ACCEPTED)} files."
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
    refusal = upload_refusal(name, limit, size=document.file_size)
    if refusal is None:
        file = await document.get_file()
        data = bytes(await file.download_as_bytearray())
        refusal = upload_refusal(name, limit, data=data)
    if refusal is not None:
        await message.reply_text(refusal)
        return
    assert runtime.settings.articles_dir is not None
    uploads = runtime.settings.articles_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    path = safe_name(name, uploads)
    path.write_bytes(data)
    logger.info("upload %s saved by user id %s", path.name, message.from_user.id if message.from_user else None)
    async with runtime.ingest_lock:
        progress = ProgressMessage(await message.reply_text(f"Adding <code>{escape(path.name)}</code>…"))
        report = await ingest_with_progress(runtime, [path], progress)
    if report.skipped:
        path.unlink(missing_ok=True)  # a file that cannot be read would only fail every later reload
        reasons = "; ".join(escape(e.reason, quote=False) for e in report.skipped)
        await progress.show(f"I couldn't read <code>{escape(path.name)}</code>: {reasons}", force=True)
        return
    count = len(report.added) + len(report.updated)
    await progress.show(
        f"Added <code>{escape(path.name)}</code>: {count} new or updated article{'s' if count != 1 else ''}, "
        f"{len(report.unchanged)} unchanged. You can ask about it now.",
        force=True,
    )
