"""Cleaning, sentence splitting and dates: general rules, checked on text the seeds do not contain."""

from datetime import date

from retrieval.ingest.text import clean_lines, dateline, is_furniture, parse_date, split_sentences


def test_furniture_of_unseen_pages_is_dropped() -> None:
    page = [
        "This article is more than 3 years old.",
        "4 min read",
        "Related: Ten things to know about the budget",
        "Did you enjoy this story?",
        "12 Comments",
        "Follow Jane Doe on Twitter: @janedoe",
        "Sign up for our free morning newsletter",
        "Advertisement",
        "Share this",
        "Firefighters contained the blaze by Tuesday evening, officials said.",
        "Residents return to their homes near the river [Mark Jones/Reuters]",
    ]
    assert clean_lines(page) == ["Firefighters contained the blaze by Tuesday evening, officials said."]


def test_real_paragraphs_that_mention_furniture_words_stay() -> None:
    for line in [
        "Related talks in Geneva will resume next week, the ministry said.",
        "Follow-up inspections found 12 comments in the report were ignored.",
        "The photo agency AFP said its reporter was detained.",
    ]:
        assert not is_furniture(line), line


def test_repeated_lines_keep_their_first_occurrence() -> None:
    lines = ["Storm hits coast", "Storm hits coast", "Waves rose. Roads closed.", "Waves rose. Roads closed."]
    assert clean_lines(lines) == ["Storm hits coast", "Waves rose. Roads closed."]


def test_sentences_keep_abbreviations_and_figures() -> None:
    text = "Lt. Gen. James Terry spoke in Kuwait City. The U.S. sent 1,500 troops at a cost of $2.5 billion. It was late."
    assert split_sentences(text) == [
        "Lt. Gen. James Terry spoke in Kuwait City.",
        "The U.S. sent 1,500 troops at a cost of $2.5 billion.",
        "It was late.",
    ]


def test_dates_in_common_forms() -> None:
    assert parse_date("11 July, 2016") == date(2016, 7, 11)
    assert parse_date("Published March 3rd, 2021") == date(2021, 3, 3)
    assert parse_date("2023/01/05") == date(2023, 1, 5)
    assert parse_date("2023-01-05T10:00:00Z") == date(2023, 1, 5)
    assert parse_date("no date here") is None


def test_dateline_is_a_line_that_is_only_a_date() -> None:
    assert dateline("11 July, 2016") == date(2016, 7, 11)
    assert dateline("Updated: Monday, 4 December 2023 10:32 GMT") == date(2023, 12, 4)
    assert dateline("On 11 July, 2016 the Pentagon announced more troops for Iraq.") is None


def test_web_page_boilerplate_is_dropped() -> None:
    page = [
        "CNN —",
        "Get the Morning Brief newsletter in your inbox every weekday.",
        "We will use the details you have shared to manage your registration, see our privacy policy.",
        "1. How relevant is this ad to you?",
        "Video player was slow to load content Video content never loaded Ad froze or did not finish loading",
        "Follow every game: Latest NBA Scores and Schedules",
        "Utah",
        "Florida",
        "Oregon",
        "New Mexico",
        "District of Columbia",
        "Texas",
        "The storm dropped 20 inches of snow on Denver, the weather service said.",
        "Schools closed",
        "Officials expect the roads to reopen on Friday.",
        "Contributing: The Associated Press",
        "___",
    ]
    assert clean_lines(page) == [
        "The storm dropped 20 inches of snow on Denver, the weather service said.",
        "Schools closed",
        "Officials expect the roads to reopen on Friday.",
    ]


def test_unwrap_joins_the_lines_of_a_wrapped_paragraph_and_nothing_else() -> None:
    from retrieval.ingest.text import strip_controls, unwrap_lines

    wrapped = [
        "The museum, which reopened in May after two years of repairs, drew",
        "12,345 visitors this summer, the most since 1987, its director said on",
        "Friday.",
        "",
        "Next paragraph.",
    ]
    assert unwrap_lines(wrapped) == [
        "The museum, which reopened in May after two years of repairs, drew 12,345 visitors this summer, "
        "the most since 1987, its director said on Friday.",
        "",
        "Next paragraph.",
    ]
    headline = ["Harbour plan approved", "Port Ellery council approved the plan on Tuesday, the mayor said in a statement."]
    assert unwrap_lines(headline) == headline
    one_paragraph_a_line = ["A" * 300 + " ends without a stop", "B" * 250 + "."]
    assert unwrap_lines(one_paragraph_a_line) == one_paragraph_a_line
    markdown = ["An introduction that is long enough to look wrapped", "- item one", "- item two", "## Heading"]
    assert unwrap_lines(markdown) == markdown
    assert unwrap_lines(["a line broken in the", "middle of a sentence"]) == ["a line broken in the middle of a sentence"]
    assert strip_controls("be\x07ll \x1b[31mred\x1b[0m\r\nform\x0cfeed") == "bell red\nformfeed"
