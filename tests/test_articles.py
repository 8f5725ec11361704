"""Reading every supported format, and reporting what cannot be read."""

import json
from datetime import date
from pathlib import Path

import pytest

from retrieval.ingest.articles import ArticleError, load_file
from tests.conftest import ARTICLES


def test_seed_article_gets_title_dateline_and_loses_furniture() -> None:
    [article], errors = load_file(ARTICLES / "002_153beaa652ab34ac.txt")
    assert not errors
    assert article.title == "US will send 560 more soldiers to Iraq"
    assert article.published == date(2016, 7, 11)
    assert "2 min read" not in article.text
    assert "[Getty]" not in article.text  # the photo caption
    assert article.text.count("US will send 560 more soldiers") == 0  # repeated title lines
    assert "An additional 560 US military personnel" in article.text


def test_section_labels_above_the_headline_are_not_the_title() -> None:
    [article], _ = load_file(ARTICLES / "004_7d39ffd2d1ae62c8.txt")
    assert article.title == "Coalition helps Iraq sustain anti-ISIS fight: officials"
    assert "Do you like this article?" not in article.text
    assert "0 Comment(s)" not in article.text
    assert "Comment Policy" not in article.text


def test_ids_are_stable_and_hashes_follow_content(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Storm hits the northern coast\n\nWaves rose to six metres on Monday.\n")
    [first], _ = load_file(path)
    [again], _ = load_file(path)
    path.write_text("Storm hits the northern coast\n\nWaves rose to seven metres on Monday.\n")
    [changed], _ = load_file(path)
    assert first.doc_id == again.doc_id == changed.doc_id
    assert first.content_hash == again.content_hash != changed.content_hash


def test_markdown_front_matter_gives_metadata(tmp_path: Path) -> None:
    path = tmp_path / "story.md"
    path.write_text(
        "---\ntitle: Dam opens after ten years\nsource: River Times\nurl: https://example.org/dam\n"
        "published: 2024-05-02\n---\n# Dam opens after ten years\n\nThe **new dam** opened on [Thursday](https://x.y).\n"
    )
    [article], _ = load_file(path)
    assert (article.title, article.source, article.url, article.published) == (
        "Dam opens after ten years",
        "River Times",
        "https://example.org/dam",
        date(2024, 5, 2),
    )
    assert article.text == "The new dam opened on Thursday."


def test_html_main_text_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    body = " ".join(["The council approved the bridge plan after a long debate about costs."] * 3)
    path.write_text(
        "<html><head><title>Bridge plan approved | City News</title>"
        '<meta property="og:title" content="Bridge plan approved">'
        '<meta property="og:site_name" content="City News">'
        '<meta property="article:published_time" content="2022-09-14T08:00:00Z">'
        '<link rel="canonical" href="https://citynews.example/bridge"></head><body>'
        "<nav><a href='/'>Home</a> <a href='/world'>World</a></nav>"
        f"<article><h1>Bridge plan approved</h1><p>{body}</p><p>Work starts in March with 40 workers.</p></article>"
        "<footer>Copyright City News. All rights reserved.</footer></body></html>"
    )
    [article], _ = load_file(path)
    assert article.title == "Bridge plan approved"
    assert article.published == date(2022, 9, 14)
    assert "Work starts in March with 40 workers." in article.text
    assert "Home" not in article.text and "All rights reserved" not in article.text


def test_jsonl_aliases_and_bad_lines_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    records = [
        {
            "title": "One",
            "body": "First article text about the harbour.",
            "publish_date": "2023/01/05",
            "link": "https://www.harbour.example/one",
        },
        "not json {",
        {
            "headline": "Two",
            "content": "Second article text about the airport.",
            "published_at": "2023-01-06",
            "source": "Airport Daily",
            "id": "two",
        },
        {"title": "Three"},
    ]
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    articles, errors = load_file(path)
    assert [a.title for a in articles] == ["One", "Two"]
    assert articles[0].source == "harbour.example" and articles[0].published == date(2023, 1, 5)
    assert articles[1].source == "Airport Daily" and articles[1].published == date(2023, 1, 6)
    assert [(e.line, "malformed" in e.reason or "no text" in e.reason) for e in errors] == [(2, True), (4, True)]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"  \n", "empty"),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        ("latin1.txt", "Caf\u00e9 news".encode("latin-1"), "UTF-8"),
        ("notes.pdf", b"%PDF-1.4", "unsupported"),
    ],
)
def test_unreadable_files_raise_with_their_path(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ArticleError) as caught:
        load_file(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)
