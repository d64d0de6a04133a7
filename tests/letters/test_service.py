"""Letters: sanitized bodies, unique slugs, what the public may see."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from sqlalchemy.orm import Session

from app.errors import InvalidInput, LetterNotFound
from app.letters.models import LetterStatus
from app.letters.service import (
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
    assert caught.value.fields == {"slug": "taken"}
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
    statuses = [item.letter.status for item in list_public_letters(session)]
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


def test_markdown_headings_move_below_the_page_title() -> None:
    html = render_markdown("# Our demands\n\n## First\n\n###### Deep\n\ntext")
    assert "<h1" not in html
    assert "<h2>Our demands</h2>" in html
    assert "<h3>First</h3>" in html
    assert "<h6>Deep</h6>" in html
