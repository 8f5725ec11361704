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

logger = logging.getLogger(__name__)

ACCEPTED = (".txt", ".md", ".html", ".jsonl", ".json")


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
    if document.file_size is not None and document.file_size > limit:
        await message.reply_text(
            f"<code>{escape(name)}</code> is too large ({_megabytes(document.file_size)}); "
            f"the limit is {_megabytes(limit)}."
        )
        return
    file = await document.get_file()
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
