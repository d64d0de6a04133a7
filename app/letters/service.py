"""Letters and their tallies."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from sqlalchemy import Select, case, select, update
from sqlalchemy.orm import Session, defer

from app.db import utcnow
from app.errors import InvalidInput, LetterNotFound
from app.letters.models import Letter, LetterStatus, LetterTally
from app.letters.schemas import SLUG_MAX_LENGTH, SLUG_PATTERN, LetterCreate
from app.organizers.models import Organizer, Role
from app.organizers.service import require_role

# Raw HTML is parsed (not shown as literal tags) so that nh3 can drop what is not allowed.
_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")
_ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "blockquote", "ul", "ol",
    "li", "a", "code", "pre", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_DROPPED_WITH_CONTENT = {"script", "style"}
_as_text = RendererHTML().renderInlineAsText  # an image's alt text, markup stripped
_HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>", re.DOTALL)
_EMPTY_LINK = re.compile(r"<a(?: [^>]*)?>\s*</a>")
_EMPTY_PARAGRAPH = re.compile(r"<p>\s*</p>\n?")


def _images_to_alt_text(tokens: list[Token]) -> None:
    """A letter must not make readers' browsers fetch anything: each image becomes its
    alt text (plain), or nothing when it has none."""
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        children = []
        for child in token.children:
            if child.type == "image":
                alt = _as_text(child.children, _markdown.options, {})
                if not alt:
                    continue
                child = Token("text", "", 0, content=alt)
            children.append(child)
        token.children = children


def _heading_levels(html: str) -> str:
    """The page's h1 is the letter's title. The body's highest headings become h2 and
    the others keep their place below them, never skipping a level on the way down
    (`#` then `###` gives h2 then h3). Runs on sanitized HTML, so headings written as
    raw HTML follow the same rule; nh3's output has no attributes on headings and never
    nests them."""
    open_levels: list[tuple[int, int]] = []  # (level written, level shown), outermost first

    def renumber(match: re.Match[str]) -> str:
        written = int(match.group(1))
        while open_levels and open_levels[-1][0] >= written:
            open_levels.pop()
        shown = min(open_levels[-1][1] + 1 if open_levels else 2, 6)
        open_levels.append((written, shown))
        return f"<h{shown}>{match.group(2)}</h{shown}>"

    return _HEADING.sub(renumber, html)


def render_markdown(source: str) -> str:
    """Markdown to sanitized HTML, rendered once when a letter is saved.

    - Raw HTML: tags that are not allowed are dropped and their text kept; script and
      style are dropped with their content; comments go.
    - Headings: see `_heading_levels`.
    - Images: replaced by their alt text, leaving no empty paragraph or link.
    - Tables: wrapped in a box that scrolls sideways on a narrow screen (focusable, so a
      keyboard can scroll it).
    - Links: http, https and mailto only, with `rel="noopener noreferrer nofollow"`."""
    tokens = _markdown.parse(source)
    _images_to_alt_text(tokens)
    html = str(
        nh3.clean(
            _markdown.renderer.render(tokens, _markdown.options, {}),
            tags=_ALLOWED_TAGS,
            clean_content_tags=_DROPPED_WITH_CONTENT,
            attributes={"a": {"href", "title"}},
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
        )
    )
    # On nh3's output, which escapes < and > in text and in attribute values, these
    # patterns can only match real tags (test_attribute_values_cannot_smuggle_tags...).
    html = _EMPTY_PARAGRAPH.sub("", _EMPTY_LINK.sub("", _heading_levels(html))).lstrip()
    return html.replace("<table>", '<div class="table-scroll" tabindex="0"><table>').replace(
        "</table>", "</table></div>"
    )


@dataclass(frozen=True, slots=True)
class LetterWithTally:
    letter: Letter
    signature_count: int
    status: LetterStatus
    """What the public sees (`Letter.status_at`): closed once its closing time passed."""

    @property
    def is_open(self) -> bool:
        return self.status == LetterStatus.OPEN


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


def _found(letter: Letter, count: int, now: datetime) -> LetterWithTally:
    return LetterWithTally(letter, count, letter.status_at(now))


_SLUG = re.compile(SLUG_PATTERN)


def is_slug(slug: str) -> bool:
    """Whether a letter could have this slug. Anything else is no letter, answered
    before any query (PostgreSQL refuses a NUL byte in text)."""
    return len(slug) <= SLUG_MAX_LENGTH and _SLUG.fullmatch(slug) is not None


def get_public_letter(
    session: Session, *, slug: str, now: datetime | None = None
) -> LetterWithTally:
    """A published (open or closed) letter with its tally, in one query."""
    if not is_slug(slug):
        raise LetterNotFound()
    row = session.execute(
        _with_tally().where(Letter.slug == slug, Letter.status != LetterStatus.DRAFT)
    ).first()
    if row is None:
        raise LetterNotFound()
    return _found(row[0], row[1], now or utcnow())


def get_letter_for_signing(session: Session, *, slug: str) -> Letter:
    """A published letter, for signing. Not locked: a letter closed while someone signs
    may still get a pending signature, but `verify_signature` refuses to count it."""
    if not is_slug(slug):
        raise LetterNotFound()
    letter = session.scalar(select(Letter).where(Letter.slug == slug))
    if letter is None or letter.status == LetterStatus.DRAFT:
        raise LetterNotFound()
    return letter


def get_letter_for_organizer(
    session: Session, *, slug: str, organizer: Organizer, needed: Role
) -> tuple[Letter, Role]:
    """A letter (draft or not) for the dashboard, with the organizer's role on it:
    LetterNotFound without a role, Forbidden when the role is below `needed`."""
    if not is_slug(slug):
        raise LetterNotFound()
    letter = session.scalar(select(Letter).where(Letter.slug == slug))
    if letter is None:
        raise LetterNotFound()
    role = require_role(session, organizer=organizer, letter_id=letter.id, needed=needed)
    return letter, role


def list_public_letters(
    session: Session, *, now: datetime | None = None
) -> Sequence[LetterWithTally]:
    """Open letters first, then closed ones (also those whose closing time has passed;
    archived ones are left out); in each group the biggest tally first, then the newest."""
    now = now or utcnow()
    open_first = case((Letter.is_open(now), 0), else_=1)
    rows = session.execute(
        _with_tally()
        .where(Letter.status != LetterStatus.DRAFT, Letter.archived_at.is_(None))
        .order_by(open_first, LetterTally.verified_count.desc(), Letter.id.desc())
        .limit(200)
    ).all()
    return [_found(row[0], row[1], now) for row in rows]


def count_new_signature(session: Session, *, letter_id: int, goal: int | None = None) -> int:
    """One more on the counter, and the next list position (never reused), in the
    caller's transaction. It locks the letter's counter row until the commit: call it
    last. `goal`: the letter's goal if it has not been reached yet (then the count is
    compared with it, and the day it is reached is kept)."""
    position, count = session.execute(
        update(LetterTally)
        .where(LetterTally.letter_id == letter_id)
        .values(
            verified_count=LetterTally.verified_count + 1,
            last_position=LetterTally.last_position + 1,
        )
        .returning(LetterTally.last_position, LetterTally.verified_count)
    ).one()
    if goal is not None and count >= goal:
        _note_goal_reached(session, letter_id=letter_id, count=count)
    return int(position)


def _note_goal_reached(session: Session, *, letter_id: int, count: int) -> None:
    """The first time the count reaches the goal, the date is kept as a milestone."""
    session.execute(
        update(Letter)
        .where(
            Letter.id == letter_id,
            Letter.goal.is_not(None),
            Letter.goal <= count,
            Letter.goal_reached_at.is_(None),
        )
        .values(goal_reached_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def add_to_tally(session: Session, *, letter_id: int, delta: int) -> None:
    """Moves the counter in the caller's transaction: exact by construction."""
    session.execute(
        update(LetterTally)
        .where(LetterTally.letter_id == letter_id)
        .values(verified_count=LetterTally.verified_count + delta)
    )
