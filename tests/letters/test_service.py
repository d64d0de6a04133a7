"""Letters: sanitized bodies, unique slugs, what the public may see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import InvalidInput, LetterNotFound
from app.letters.models import Letter, LetterStatus
from app.letters.service import (
    TAKEN,
    add_to_tally,
    get_public_letter,
    list_public_letters,
    publish_letter,
    render_markdown,
)
from tests.support.factories import make_letter


class _Elements(HTMLParser):
    """Every start tag with its attributes, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.elements


HOSTILE_MARKDOWN = {
    "script": "<script>alert(1)</script>",
    "script-src": "Hello <script src=https://evil.example/x.js></script> world",
    "img-onerror": '<img src=x onerror="alert(1)">',
    "a-javascript-onclick": "<a href=\"javascript:alert(1)\" onclick='alert(2)'>click</a>",
    "div-onmouseover": '<div onmouseover="alert(1)">hover</div>',
    "svg-onload": "<svg onload=alert(1)>",
    "iframe": "<iframe src=https://evil.example></iframe>",
    "style": "<style>body{display:none}</style>",
    "link-javascript": "[click](javascript:alert(1))",
    "link-mixed-case": "[click](JaVaScRiPt:alert(1))",
    "link-entity": "[click](java&#x73;cript:alert(1))",
    "link-spaces": "[click](  javascript:alert(1)  )",
    "link-vbscript": "[click](vbscript:msgbox(1))",
    "link-data": "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "autolink-javascript": "<javascript:alert(1)>",
    "title-breakout": '[click](https://example.org "x\\" onmouseover=\\"alert(1)")',
    "image-javascript": "![x](javascript:alert(1))",
    "image-tracker": "![x](https://evil.example/track.png)",
}


@pytest.mark.parametrize("source", HOSTILE_MARKDOWN.values(), ids=HOSTILE_MARKDOWN.keys())
def test_create_letter_sanitizes_the_body(session: Session, source: str) -> None:
    letter = make_letter(session, body_markdown=f"We ask for this.\n\n{source}\n\nThank you.")
    html = letter.body_html
    assert "We ask for this." in html
    assert letter.body_markdown.endswith("Thank you.")  # the source is kept as written
    assert "<script" not in html.lower()
    for tag, attributes in elements(html):
        assert tag in {"p", "a", "br", "em", "strong", "code"}, html
        for name, value in attributes.items():
            assert not name.startswith("on"), html
            assert name in {"href", "title", "rel"}, html
            if name == "href":
                assert (value or "").startswith(("http://", "https://", "mailto:")), html
        if tag == "a":
            assert attributes.get("rel") == "noopener noreferrer nofollow"


def test_markdown_formatting_survives_sanitizing() -> None:
    html = render_markdown(
        "# Our demands\n\n"
        "We, the **undersigned**, ask *you* to:\n\n"
        "1. cancel the contract;\n"
        "2. publish it.\n\n"
        "> A quote\n\n"
        "See [the report](https://example.org/report) or [write](mailto:press@example.org).\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    tags = [tag for tag, _ in elements(html)]
    for expected in ("h2", "strong", "em", "ol", "li", "blockquote", "a", "table", "td"):
        assert expected in tags, html
    hrefs = [attributes["href"] for tag, attributes in elements(html) if tag == "a"]
    assert hrefs == ["https://example.org/report", "mailto:press@example.org"]


def test_duplicate_slug_is_invalid_input(session: Session) -> None:
    make_letter(session, slug="one-letter")
    with pytest.raises(InvalidInput) as caught:
        make_letter(session, slug="one-letter", title="Another title")
    assert caught.value.fields == {"slug": TAKEN}
    assert caught.value.status_code == 422


def test_create_letter_starts_with_an_empty_tally(session: Session) -> None:
    letter = make_letter(session)
    assert get_public_letter(session, slug=letter.slug).signature_count == 0
    assert letter.published_at is not None
    draft = make_letter(session, status=LetterStatus.DRAFT)
    assert draft.published_at is None


def test_list_public_letters_open_first_without_drafts(session: Session) -> None:
    closed_big = make_letter(session, status=LetterStatus.CLOSED)
    open_small = make_letter(session)
    draft = make_letter(session, status=LetterStatus.DRAFT)
    open_big = make_letter(session)
    closed_small = make_letter(session, status=LetterStatus.CLOSED)
    add_to_tally(session, letter_id=closed_big.id, delta=50)
    add_to_tally(session, letter_id=open_small.id, delta=1)
    add_to_tally(session, letter_id=draft.id, delta=99)
    add_to_tally(session, letter_id=open_big.id, delta=7)
    mine = {closed_big.slug, open_small.slug, draft.slug, open_big.slug, closed_small.slug}

    listed = [item for item in list_public_letters(session) if item.letter.slug in mine]

    assert [item.letter.slug for item in listed] == [
        open_big.slug,
        open_small.slug,
        closed_big.slug,
        closed_small.slug,
    ]
    assert [item.signature_count for item in listed] == [7, 1, 50, 0]
    statuses = [item.status for item in list_public_letters(session)]
    assert LetterStatus.DRAFT not in statuses
    first_closed = statuses.index(LetterStatus.CLOSED)
    assert LetterStatus.OPEN not in statuses[first_closed:]


def test_get_public_letter(session: Session) -> None:
    open_letter = make_letter(session)
    closed = make_letter(session, status=LetterStatus.CLOSED)
    draft = make_letter(session, status=LetterStatus.DRAFT)
    assert get_public_letter(session, slug=open_letter.slug).letter.id == open_letter.id
    assert get_public_letter(session, slug=closed.slug).letter.id == closed.id
    with pytest.raises(LetterNotFound):
        get_public_letter(session, slug=draft.slug)
    with pytest.raises(LetterNotFound):
        get_public_letter(session, slug="no-such-letter")


def test_publish_letter_makes_a_draft_public(session: Session) -> None:
    draft = make_letter(session, status=LetterStatus.DRAFT)
    publish_letter(session, letter=draft)
    found = get_public_letter(session, slug=draft.slug)
    assert found.letter.status == LetterStatus.OPEN
    assert found.letter.published_at is not None


# --- closing time: one rule, the same in Python and in SQL, on both databases ---

NOW = datetime(2030, 6, 15, 12, 0, 0, 123456, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def test_a_letter_is_closed_from_its_closing_time_on() -> None:
    def letter(status: LetterStatus, closes_at: datetime | None) -> Letter:
        return Letter(status=status, closes_at=closes_at)

    cases = [
        (LetterStatus.OPEN, None, LetterStatus.OPEN),
        (LetterStatus.OPEN, NOW + MICROSECOND, LetterStatus.OPEN),
        (LetterStatus.OPEN, NOW, LetterStatus.CLOSED),  # the closing instant itself
        (LetterStatus.OPEN, NOW - MICROSECOND, LetterStatus.CLOSED),
        (LetterStatus.CLOSED, None, LetterStatus.CLOSED),
        (LetterStatus.CLOSED, NOW + timedelta(days=9), LetterStatus.CLOSED),
        (LetterStatus.DRAFT, None, LetterStatus.DRAFT),
        (LetterStatus.DRAFT, NOW - MICROSECOND, LetterStatus.DRAFT),
    ]
    for stored, closes_at, seen in cases:
        assert letter(stored, closes_at).status_at(NOW) == seen, (stored, closes_at)
        assert letter(stored, closes_at).is_open(NOW) == (seen == LetterStatus.OPEN)


def test_public_letters_past_their_closing_time_are_closed(session: Session) -> None:
    """The home page and the API list open letters first: a letter whose closing time
    has passed goes with the closed ones, whatever its tally, and says `closed`."""
    expired_big = make_letter(session, closes_at=NOW - timedelta(days=2))
    open_small = make_letter(session)
    closing_soon = make_letter(session, closes_at=NOW + timedelta(days=2))
    at_the_instant = make_letter(session, closes_at=NOW)
    closed = make_letter(session, status=LetterStatus.CLOSED)
    add_to_tally(session, letter_id=expired_big.id, delta=90)
    add_to_tally(session, letter_id=at_the_instant.id, delta=80)
    add_to_tally(session, letter_id=open_small.id, delta=2)
    add_to_tally(session, letter_id=closing_soon.id, delta=1)
    mine = [expired_big, open_small, closing_soon, at_the_instant, closed]
    slugs = {letter.slug for letter in mine}

    listed = [item for item in list_public_letters(session, now=NOW) if item.letter.slug in slugs]

    assert [(item.letter.slug, item.status) for item in listed] == [
        (open_small.slug, LetterStatus.OPEN),
        (closing_soon.slug, LetterStatus.OPEN),
        (expired_big.slug, LetterStatus.CLOSED),
        (at_the_instant.slug, LetterStatus.CLOSED),
        (closed.slug, LetterStatus.CLOSED),
    ]
    assert [item.is_open for item in listed] == [True, True, False, False, False]
    for letter in mine:
        found = get_public_letter(session, slug=letter.slug, now=NOW)
        assert found.status == letter.status_at(NOW)
        assert found.is_open == letter.is_open(NOW)
    # Without `now`, the clock.
    yesterday = make_letter(session, closes_at=utcnow() - timedelta(days=1))
    found = get_public_letter(session, slug=yesterday.slug)
    assert (found.status, found.letter.status) == (LetterStatus.CLOSED, LetterStatus.OPEN)
    statuses = {item.letter.slug: item.status for item in list_public_letters(session)}
    assert statuses[yesterday.slug] == LetterStatus.CLOSED


@pytest.mark.parametrize("offset", [-MICROSECOND, timedelta(0), MICROSECOND])
def test_the_database_and_python_agree_at_the_closing_instant(
    session: Session, offset: timedelta
) -> None:
    letter = make_letter(session, closes_at=NOW + offset)
    session.expire_all()  # read back what the database stored
    in_sql = session.scalar(select(Letter.is_open(NOW)).where(Letter.id == letter.id))
    loaded = session.get(Letter, letter.id)
    assert loaded is not None
    assert in_sql == loaded.is_open(NOW) == (offset > timedelta(0))
