"""Sentence-aware chunks with overlap; each chunk knows its article and position."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from retrieval.ingest.articles import Article
from retrieval.ingest.text import split_sentences


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences from one article."""

    chunk_id: str
    doc_id: str
    index: int
    text: str

    def embedding_text(self, article: Article) -> str:
        """What is embedded and keyword-indexed (see `indexed_text`)."""
        return indexed_text(article.title, article.published.isoformat() if article.published else None, self.text)


def indexed_text(title: str, published: str | None, text: str) -> str:
    """A chunk as it is embedded and searched: title and date ("11 July 2016") give it context."""
    if not published:
        return f"{title}\n{text}"
    day = date.fromisoformat(published)
    return f"{title} ({day.day} {day:%B %Y})\n{text}"


def chunk_article(article: Article, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Pack sentences into chunks of at most `chunk_size` characters, a hard limit whatever the punctuation.

    A sentence longer than `chunk_size` (a scraped page with no full stop, a run of data) is cut
    into pieces at spaces, or anywhere when it has none. Each chunk after the first starts with
    the trailing sentences of the previous one, up to `chunk_overlap` characters, when they fit,
    so an answer that straddles a boundary is whole in one chunk. Paragraph breaks are kept inside
    a chunk.
    """
    pieces: list[str] = []
    for paragraph in article.text.split("\n\n"):
        sentences = [piece for sentence in split_sentences(paragraph) for piece in _bounded(sentence, chunk_size)]
        if sentences:
            sentences[-1] += "\n\n"
        pieces.extend(sentences)

    chunks: list[list[str]] = []
    current: list[str] = []
    length = 0
    for sentence in pieces:
        if current and length + len(sentence) + 1 > chunk_size:
            chunks.append(current)
            overlap: list[str] = []
            size = 0
            for previous in reversed(current):
                if size + len(previous) > chunk_overlap:
                    break
                overlap.insert(0, previous)
                size += len(previous) + 1
            if size + len(sentence.rstrip()) + 1 > chunk_size:  # no room for context before this one
                overlap, size = [], 0
            current, length = overlap, size
        current.append(sentence)
        length += len(sentence) + 1
    if current and (not chunks or current != chunks[-1][-len(current) :]):
        chunks.append(current)

    # The id names the content (`chunk_id`): a changed article's new chunks never overwrite its old ones.
    return [Chunk(chunk_id(article, index), article.doc_id, index, _join(sentences)) for index, sentences in enumerate(chunks)]


def chunk_id(article: Article, index: int) -> str:
    """`DOC_ID:HASH:NNNN`: the article, its content hash's first 12 digits and the chunk's place (search finds a
    chunk's neighbours by the part before the last colon)."""
    return f"{article.doc_id}:{article.content_hash[:12]}:{index:04d}"


def _bounded(sentence: str, limit: int) -> list[str]:
    """`sentence` in pieces of at most `limit` characters: cut at the last space before the limit, else at it."""
    pieces: list[str] = []
    while len(sentence) > limit:
        cut = sentence.rfind(" ", 0, limit + 1)
        if cut < limit // 2:  # no space in the second half: cut the word
            cut = limit
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        pieces.append(sentence)
    return pieces


def _join(sentences: list[str]) -> str:
    return " ".join(sentences).replace("\n\n ", "\n\n").strip()
