"""Letters and their tallies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import Select, case, select, update
from sqlalchemy.orm import Session, defer

from app.db import utcnow
from app.errors import InvalidInput, LetterNotFound
from app.letters.models import Letter, LetterStatus, LetterTally
from app.letters.schemas import LetterCreate

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_ALLOWED_TAGS = {
    "p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "blockquote", "ul", "ol", "li",
    "a", "code", "pre", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip


def render_markdown(source: str) -> str:
    """Markdown to sanitized HTML. Raw HTML in the source is escaped, then nh3 cleans.

    Headings move down one level (`#` becomes h2): the page's h1 is the letter title.
    Images are dropped: a letter must not make readers' browsers fetch anything."""
    tokens = _markdown.parse(source)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
    return str(
        nh3.clean(
            _markdown.renderer.render(tokens, _markdown.options, {}),
            tags=_ALLOWED_TAGS,
            attributes={"a": {"href", "title"}},
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )


@dataclass(frozen=True, slots=True)
class LetterWithTally:
    letter: Letter
    signature_count: int


def create_letter(session: Session, *, data: LetterCreate) -> Letter:
    if session.scalar(select(Letter.id).where(Letter.slug == data.slug)) is not None:
        raise InvalidInput(f"A letter with the slug {data.slug!r} already exists.",
                           fields={"slug": "taken"})  # fmt: skip
    letter = Letter(
        slug=data.slug,
        title=data.title,
        summary=data.summary,
        body_markdown=data.body_markdown,
        body_html=render_markdown(data.body_markdown),
        addressed_to=data.addressed_to,
        goal=data.goal,
        closes_at=data.closes_at,
        status=data.status,
        published_at=utcnow() if data.status != LetterStatus.DRAFT else None,
    )
    letter.tally = LetterTally(verified_count=0)
    session.add(letter)
    session.flush()
    return letter


def publish_letter(session: Session, *, letter: Letter) -> Letter:
    letter.status = LetterStatus.OPEN
    letter.published_at = letter.published_at or utcnow()
    session.flush()
    return letter


def _with_tally() -> Select[Letter, int]:
    # The Markdown source is never shown in public: leave it in the database.
    return (
        select(Letter, LetterTally.verified_count)
        .join(LetterTally)
        .options(defer(Letter.body_markdown, raiseload=True))
    )


def get_public_letter(session: Session, *, slug: str) -> LetterWithTally:
    """A published (open or closed) letter with its tally, in one query."""
    row = session.execute(
        _with_tally().where(Letter.slug == slug, Letter.status != LetterStatus.DRAFT)
    ).first()
    if row is None:
        raise LetterNotFound()
    return LetterWithTally(row[0], row[1])


def get_letter_for_signing(session: Session, *, slug: str) -> Letter:
    """A published letter, for signing. Not locked: a letter closed while someone signs
    may still get a pending signature, but `verify_signature` refuses to count it."""
    letter = session.scalar(select(Letter).where(Letter.slug == slug))
    if letter is None or letter.status == LetterStatus.DRAFT:
        raise LetterNotFound()
    return letter


def list_public_letters(session: Session) -> Sequence[LetterWithTally]:
    """Open letters first (biggest tally first), then closed ones."""
    open_first = case((Letter.status == LetterStatus.OPEN, 0), else_=1)
    rows = session.execute(
        _with_tally()
        .where(Letter.status != LetterStatus.DRAFT)
        .order_by(open_first, LetterTally.verified_count.desc(), Letter.id.desc())
        .limit(200)
    ).all()
    return [LetterWithTally(row[0], row[1]) for row in rows]


def add_to_tally(session: Session, *, letter_id: int, delta: int) -> None:
    """Moves the counter in the caller's transaction: exact by construction."""
    session.execute(
        update(LetterTally)
        .where(LetterTally.letter_id == letter_id)
        .values(verified_count=LetterTally.verified_count + delta)
    )
