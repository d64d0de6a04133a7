"""Letters and their tallies."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from weakref import WeakKeyDictionary

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from sqlalchemy import Engine, Select, and_, bindparam, case, event, inspect, select, update
from sqlalchemy.orm import Session, defer

from app import urls
from app.config import Settings
from app.db import utcnow
from app.errors import InvalidInput, LetterNotFound
from app.i18n import N_, format_number
from app.i18n import gettext as _
from app.letters.models import Letter, LetterStatus, LetterTally
from app.letters.schemas import (
    DOMAIN_FIELDS,
    EDITABLE_FIELDS,
    KEPT_UNLESS_GIVEN,
    SLUG_MAX_LENGTH,
    SLUG_PATTERN,
    LetterCreate,
    LetterFields,
    organizer_email,
)
from app.letters.versions import first_version, save_text
from app.mail.service import enqueue
from app.organizers.models import AuditEvent, LetterRole, Organizer, Role
from app.organizers.service import (
    AUDIT_PAGE_SIZE,
    Actor,
    audit_log,
    create_organizer,
    find_organizer,
    grant_role,
    owners_left,
    record,
    remove_role,
    require_role,
    team,
)

TAKEN = "A letter with this slug already exists: choose another."
PAST = N_("This time has passed: choose a time in the future (UTC), or leave it empty.")

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


def create_letter(
    session: Session,
    *,
    data: LetterCreate,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Letter:
    """A new letter, with its tally and its text's version 1.

    `actor`: who creates it from the dashboard or the shell. Their input is held to a
    person's rules (a closing time in the future), the creation goes into the audit log,
    and a signed-in organizer becomes the letter's owner. Without one (the demo, tests)
    the data is stored as given."""
    now = now or utcnow()
    if actor is not None and data.closes_at is not None and data.closes_at <= now:
        raise InvalidInput(N_("The closing time has passed."), fields={"closes_at": PAST})
    if session.scalar(select(Letter.id).where(Letter.slug == data.slug)) is not None:
        raise InvalidInput(f"A letter with the slug {data.slug!r} already exists.",
                           fields={"slug": TAKEN})  # fmt: skip
    letter = Letter(
        **data.model_dump(include=set(EDITABLE_FIELDS)),
        slug=data.slug,
        body_html=render_markdown(data.body_markdown),
        status=data.status,
        published_at=now if data.status != LetterStatus.DRAFT else None,
        created_at=now,
        version=1,
    )
    letter.tally = LetterTally(verified_count=0)
    session.add(letter)
    session.flush()
    session.add(first_version(letter))
    if actor is not None:
        if actor.organizer is not None:
            grant_role(session, letter_id=letter.id, organizer=actor.organizer, role=Role.OWNER)
        domains: dict[str, Any] = {
            name: list(getattr(letter, name)) for name in DOMAIN_FIELDS if getattr(letter, name)
        }
        if letter.domain_names:
            domains["domain_names"] = dict(letter.domain_names)
        record(session, actor=actor, letter_id=letter.id, action="letter.create",
               slug=letter.slug, status=letter.status.value, **domains)  # fmt: skip
    session.flush()
    return letter


def publish_letter(session: Session, *, letter: Letter) -> Letter:
    """Opens a draft as it is (tests and the demo; people go through `change_status`)."""
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


_LETTER_COLUMNS = inspect(Letter).column_attrs
_clock = time.monotonic
SIGNING_CACHE_SECONDS = 1.0
"""How long a process reuses a letter it loaded for signing (`get_letter_for_signing`)."""


@dataclass
class _SigningLetters:
    """One engine's letters loaded for signing: slug -> (monotonic deadline, letter)."""

    letters: dict[str, tuple[float, Letter]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_signing_letters: WeakKeyDictionary[Engine, _SigningLetters] = WeakKeyDictionary()
_signing_letters_lock = threading.Lock()


def _signing_cache(session: Session) -> _SigningLetters:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _signing_letters_lock:
        cache = _signing_letters.get(engine)
        if cache is None:
            cache = _signing_letters[engine] = _SigningLetters()
        return cache


@event.listens_for(Letter, "after_insert")
@event.listens_for(Letter, "after_update")
@event.listens_for(Letter, "after_delete")
def forget_signing_letters(*_: Any) -> None:
    """A letter made or changed in this process (published, closed, its rules or text
    edited): signing here sees it at once. Other processes see it within
    SIGNING_CACHE_SECONDS."""
    with _signing_letters_lock:
        caches = list(_signing_letters.values())
    for cache in caches:
        with cache.lock:
            cache.letters.clear()


def get_letter_for_signing(session: Session, *, slug: str) -> Letter:
    """A published letter, for signing. Not locked: a letter closed while someone signs
    may still get a pending signature, but `verify_signature` refuses to count it.

    Every sign request needs it, so each process keeps what it loaded for
    SIGNING_CACHE_SECONDS, detached and read only (D182): the busiest letter costs one
    query a second per process instead of one per signature. A change made elsewhere
    reaches signing within that second, which a confirmation checks again anyway (the
    letter still open); a draft or unknown slug is never kept."""
    if not is_slug(slug):
        raise LetterNotFound()
    cache = _signing_cache(session)
    now = _clock()
    with cache.lock:
        kept = cache.letters.get(slug)
    if kept is not None and kept[0] > now:
        return kept[1]
    letter = session.scalar(select(Letter).where(Letter.slug == slug))
    if letter is None or letter.status == LetterStatus.DRAFT:
        raise LetterNotFound()
    # Shared between requests and threads: a copy of its columns that belongs to no
    # session, so it is never refreshed, flushed nor changed (the session keeps its own).
    columns = {column.key: getattr(letter, column.key) for column in _LETTER_COLUMNS}
    with cache.lock:
        cache.letters[slug] = (now + SIGNING_CACHE_SECONDS, Letter(**columns))
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


_COUNT_ONE_MORE = (
    update(LetterTally)
    .where(LetterTally.letter_id == bindparam("tally_of"))
    .values(
        verified_count=LetterTally.verified_count + 1,
        last_position=LetterTally.last_position + 1,
    )
    .returning(LetterTally.last_position, LetterTally.verified_count)
)
"""Built once: it runs on every confirmation (`count_new_signature`)."""


def count_new_signature(session: Session, *, letter_id: int, goal: int | None = None) -> int:
    """One more on the counter, and the next list position (never reused), in the
    caller's transaction. It locks the letter's counter row until the commit: call it
    last. `goal`: the letter's goal if it has not been reached yet (then the count is
    compared with it, and the day it is reached is kept)."""
    position, count = session.execute(_COUNT_ONE_MORE, {"tally_of": letter_id}).one()
    if goal is not None and count >= goal:
        note_goal_reached(session, letter_id=letter_id, count=count)
    return int(position)


def note_goal_reached(session: Session, *, letter_id: int, count: int) -> None:
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
    """Moves the counter in the caller's transaction: exact by construction. A count
    that goes up (a restore) may reach the goal: then that day is kept too."""
    count = session.execute(
        update(LetterTally)
        .where(LetterTally.letter_id == letter_id)
        .values(verified_count=LetterTally.verified_count + delta)
        .returning(LetterTally.verified_count)
    ).scalar_one()
    if delta > 0:
        note_goal_reached(session, letter_id=letter_id, count=count)


def get_letter(session: Session, *, slug: str) -> Letter:
    """Any letter, draft or not (the command line: the operator may do everything)."""
    if not is_slug(slug):
        raise LetterNotFound()
    letter = session.scalar(select(Letter).where(Letter.slug == slug))
    if letter is None:
        raise LetterNotFound()
    return letter


def signature_count(session: Session, *, letter_id: int) -> int:
    return int(
        session.scalar(select(LetterTally.verified_count).where(LetterTally.letter_id == letter_id))
        or 0
    )


def _locked(session: Session, letter: Letter) -> None:
    """Re-reads the letter's row, locked until the commit (PostgreSQL; SQLite writers
    take turns already): two organizers acting at once act one after the other."""
    session.refresh(letter, with_for_update=True)


# --- the dashboard's list ----------------------------------------------------------------


class LetterState(StrEnum):
    """What the dashboard says a letter is: its status as people see it (a letter past
    its closing time is closed), or archived."""

    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"
    ARCHIVED = "archived"


def letter_state(letter: Letter, now: datetime) -> LetterState:
    if letter.archived_at is not None:
        return LetterState.ARCHIVED
    return LetterState(letter.status_at(now).value)


@dataclass(frozen=True, slots=True)
class DashboardLetter:
    letter: Letter
    signature_count: int
    state: LetterState
    role: Role
    via_admin: bool
    """An admin who is not an owner of the letter themselves: they act as one."""


DASHBOARD_LIMIT = 1000


def dashboard_letters(
    session: Session, *, organizer: Organizer | None, now: datetime | None = None
) -> list[DashboardLetter]:
    """The letters an organizer has a role on (an admin: all; None: all, for the shell),
    with their tallies and the organizer's role, in one query: archived ones last, then
    the newest first. The texts are not loaded."""
    now = now or utcnow()
    statement = (
        select(Letter, LetterTally.verified_count, LetterRole.role)
        .join(LetterTally, LetterTally.letter_id == Letter.id)
        .options(
            defer(Letter.body_markdown, raiseload=True), defer(Letter.body_html, raiseload=True)
        )
        .order_by(Letter.archived_at.is_not(None), Letter.created_at.desc(), Letter.id.desc())
        .limit(DASHBOARD_LIMIT)
    )
    mine = and_(
        LetterRole.letter_id == Letter.id,
        LetterRole.organizer_id == (organizer.id if organizer else None),
    )
    if organizer is None or organizer.is_admin:
        statement = statement.outerjoin(LetterRole, mine)
    else:
        statement = statement.join(LetterRole, mine)
    admin = organizer is None or organizer.is_admin
    return [
        DashboardLetter(
            letter=letter,
            signature_count=count,
            state=letter_state(letter, now),
            role=Role.OWNER if admin or role is None else role,
            via_admin=admin and role != Role.OWNER,
        )
        for letter, count, role in session.execute(statement).all()
    ]


# --- the life of a letter ----------------------------------------------------------------


class Transition(StrEnum):
    PUBLISH = "publish"  # draft -> open
    CLOSE = "close"  # open -> closed
    REOPEN = "reopen"  # closed (archived or not) -> open
    ARCHIVE = "archive"  # open or closed -> closed and archived


def available_transitions(letter: Letter, now: datetime) -> list[Transition]:
    """What an owner can do with the letter now (the dashboard's buttons)."""
    state = letter_state(letter, now)
    if state == LetterState.DRAFT:
        return [Transition.PUBLISH]
    if state == LetterState.OPEN:
        return [Transition.CLOSE, Transition.ARCHIVE]
    if state == LetterState.CLOSED:
        return [Transition.REOPEN, Transition.ARCHIVE]
    return [Transition.REOPEN]


def _refusal(transition: Transition, letter: Letter, now: datetime) -> str | None:
    """Why `transition` is impossible for the letter now, or None."""
    state = letter_state(letter, now)
    if transition in available_transitions(letter, now):
        return None
    if state == LetterState.DRAFT:
        return N_("This letter is a draft: publish it first.")
    if transition == Transition.PUBLISH:
        return N_("This letter is already published.")
    if transition == Transition.CLOSE and state == LetterState.ARCHIVED:
        return N_("This letter is archived, and so already closed.")
    if transition == Transition.CLOSE:
        return N_("This letter is already closed.")
    if transition == Transition.REOPEN:
        return N_("This letter is already open.")
    return N_("This letter is already archived.")


def change_status(
    session: Session,
    *,
    letter: Letter,
    transition: Transition,
    actor: Actor,
    closes_at: datetime | None = None,
    clear_closes_at: bool = False,
    now: datetime | None = None,
) -> Letter:
    """Publishes, closes, reopens or archives the letter, and records it.

    - publish: a draft opens (refused while its closing time is in the past);
    - close: an open letter closes (also one whose closing time has passed);
    - reopen: a closed or archived letter opens again and leaves the archive. A closing
      time in the past must be replaced (`closes_at`) or removed (`clear_closes_at`);
      either may also be given for one that has not passed;
    - archive: closes the letter and takes it off the home page and the dashboard's
      main list; its page and count stay.

    Impossible transitions are InvalidInput (422) with the reason."""
    now = now or utcnow()
    _locked(session, letter)
    refusal = _refusal(transition, letter, now)
    if refusal is not None:
        raise InvalidInput(refusal, fields={"status": refusal})
    facts: dict[str, Any] = {}
    if transition == Transition.PUBLISH:
        if letter.closes_at is not None and letter.closes_at <= now:
            message = N_(
                "Its closing time has passed: edit the letter to set a later one (or none)."
            )
            raise InvalidInput(message, fields={"closes_at": message})
        letter.status = LetterStatus.OPEN
        letter.published_at = letter.published_at or now
    elif transition == Transition.CLOSE:
        letter.status = LetterStatus.CLOSED
    elif transition == Transition.ARCHIVE:
        letter.status = LetterStatus.CLOSED
        letter.archived_at = now
    else:
        if closes_at is not None and closes_at <= now:
            raise InvalidInput(PAST, fields={"closes_at": PAST})
        if closes_at is not None:
            letter.closes_at = closes_at
        elif clear_closes_at:
            letter.closes_at = None
        elif letter.closes_at is not None and letter.closes_at <= now:
            message = N_("Its closing time has passed: give a new one, or reopen it without one.")
            raise InvalidInput(message, fields={"closes_at": message})
        letter.status = LetterStatus.OPEN
        letter.archived_at = None
        facts["closes_at"] = letter.closes_at.isoformat() if letter.closes_at else None
    record(session, actor=actor, letter_id=letter.id, action=f"letter.{transition.value}", **facts)
    session.flush()
    return letter


# --- editing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edited:
    changed: list[str]
    """The fields that changed (model names), in the form's order."""
    new_version: bool
    version: int


def current_fields(letter: Letter) -> dict[str, Any]:
    """The letter's editable fields, as `LetterFields` takes them."""
    return {name: getattr(letter, name) for name in EDITABLE_FIELDS}


def _same_minute(new: datetime | None, old: datetime | None) -> bool:
    """A form sends minutes: a stored time with seconds, sent back as it was shown, has
    not changed."""
    if new is None or old is None:
        return new is old
    return new == old or (new.second == 0 and new == old.replace(second=0, microsecond=0))


def edit_letter(
    session: Session,
    *,
    letter: Letter,
    data: LetterFields,
    actor: Actor,
    now: datetime | None = None,
) -> Edited:
    """Saves the edited fields. A new title or body makes a new version of the text if
    people have signed the current one (`versions.save_text`). A new goal may not be
    below the current count (a goal equal to it is reached at once; a higher one is not
    reached yet, whatever an earlier goal was), nor a new closing time in the past (an
    unchanged one may be: fixing a typo in a letter that has closed is fine)."""
    now = now or utcnow()
    _locked(session, letter)
    values = data.model_dump(include=set(EDITABLE_FIELDS))
    for name in KEPT_UNLESS_GIVEN:
        if name not in data.model_fields_set:
            # Not given (a form without these fields): kept, never emptied by mistake,
            # which would open an employees-only letter to everyone (or shorten how long
            # addresses are kept, or turn a sign-on letter into one for people).
            values[name] = getattr(letter, name)
    if _same_minute(values["closes_at"], letter.closes_at):
        values["closes_at"] = letter.closes_at
    changed = [name for name in EDITABLE_FIELDS if values[name] != getattr(letter, name)]
    errors: dict[str, str] = {}
    count = signature_count(session, letter_id=letter.id) if "goal" in changed else 0
    if "goal" in changed and values["goal"] is not None and values["goal"] < count:
        errors["goal"] = _("The goal cannot be below the current count (%(n)s).") % {
            "n": format_number(count)
        }
    if "closes_at" in changed and values["closes_at"] is not None and values["closes_at"] <= now:
        errors["closes_at"] = PAST
    if errors:
        raise InvalidInput(N_("Some fields are not valid."), fields=errors)
    if not changed:
        return Edited(changed=[], new_version=False, version=letter.version)
    for name in changed:
        setattr(letter, name, values[name])
    if "goal" in changed:
        # The "goal reached" milestone is about the goal as it is now.
        reached = letter.goal is not None and count >= letter.goal
        letter.goal_reached_at = (letter.goal_reached_at or now) if reached else None
    if "body_markdown" in changed:
        letter.body_html = render_markdown(letter.body_markdown)
    new_version = False
    if "title" in changed or "body_markdown" in changed:
        new_version = save_text(
            session, letter=letter, title=letter.title, body_markdown=letter.body_markdown, now=now
        )
    # Who may sign is worth seeing in full in the log (domains, never an address), and
    # so are the company names verified domains are shown as.
    domains: dict[str, Any] = {
        name: list(getattr(letter, name)) for name in DOMAIN_FIELDS if name in changed
    }
    if "domain_names" in changed:
        domains["domain_names"] = dict(letter.domain_names)
    record(session, actor=actor, letter_id=letter.id, action="letter.edit",
           fields=changed, version=letter.version, new_version=new_version,
           **domains)  # fmt: skip
    session.flush()
    return Edited(changed=changed, new_version=new_version, version=letter.version)


# --- the team ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    organizer_id: int
    email: str
    role: Role


def team_of(session: Session, *, letter_id: int) -> list[Member]:
    return [
        Member(organizer.id, organizer.email, role)
        for organizer, role in team(session, letter_id=letter_id)
    ]


def _member(session: Session, *, letter_id: int, organizer_id: int) -> tuple[Organizer, Role]:
    row = session.execute(
        select(Organizer, LetterRole.role)
        .join(LetterRole, LetterRole.organizer_id == Organizer.id)
        .where(LetterRole.letter_id == letter_id, LetterRole.organizer_id == organizer_id)
    ).first()
    if row is None:
        raise InvalidInput(N_("That organizer is not on this letter's team."))
    return row[0], row[1]


def invite_to_team(
    session: Session,
    *,
    letter: Letter,
    email: str,
    role: Role,
    actor: Actor,
    settings: Settings,
) -> Organizer:
    """Adds someone to the letter's team by address: their organizer account is made if
    they have none (an invitation works whether or not registration is open), and an
    email tells them, with the sign-in page's address."""
    address = organizer_email(email)
    organizer = find_organizer(session, email=address)
    if organizer is not None and role_of(session, letter_id=letter.id, organizer=organizer):
        message = N_("They are on the team already: change their role below.")
        raise InvalidInput(message, fields={"email": message})
    organizer = organizer or create_organizer(session, email=address)
    grant_role(session, letter_id=letter.id, organizer=organizer, role=role)
    enqueue(
        session,
        settings=settings,
        kind="letter_invite",
        to=organizer.email,
        context={
            "letter": letter,
            "role": role.value,
            "invited_by": actor.label,
            "login_url": urls.login_url(settings.base_url),
            "dashboard_url": urls.dashboard_letter_url(settings.base_url, letter.slug),
            "letter_url": urls.letter_url(settings.base_url, letter.slug),
        },
    )
    record(session, actor=actor, letter_id=letter.id, action="team.invite",
           email=organizer.email, role=role.value)  # fmt: skip
    session.flush()
    return organizer


def role_of(session: Session, *, letter_id: int, organizer: Organizer) -> Role | None:
    """The organizer's own role on the letter (an admin's too: not the owner's rights
    every admin has)."""
    return session.scalar(
        select(LetterRole.role).where(
            LetterRole.letter_id == letter_id, LetterRole.organizer_id == organizer.id
        )
    )


def change_team_role(
    session: Session, *, letter: Letter, organizer_id: int, role: Role, actor: Actor
) -> None:
    """Gives a team member another role. The last owner stays an owner."""
    member, old = _member(session, letter_id=letter.id, organizer_id=organizer_id)
    if old == role:
        return
    if old == Role.OWNER and owners_left(session, letter_id=letter.id, without=organizer_id) == 0:
        raise InvalidInput(N_("A letter keeps at least one owner: make someone else owner first."))
    grant_role(session, letter_id=letter.id, organizer=member, role=role)
    record(session, actor=actor, letter_id=letter.id, action="team.role",
           email=member.email, role=role.value, previous=old.value)  # fmt: skip
    session.flush()


def remove_from_team(session: Session, *, letter: Letter, organizer_id: int, actor: Actor) -> None:
    """Takes someone off the team (their account stays). The last owner cannot go."""
    member, old = _member(session, letter_id=letter.id, organizer_id=organizer_id)
    remove_role(session, letter_id=letter.id, organizer_id=organizer_id)
    record(session, actor=actor, letter_id=letter.id, action="team.remove",
           email=member.email, role=old.value)  # fmt: skip
    session.flush()


# --- the audit log -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: Sequence[AuditEvent]
    older: int | None
    """The `before` of the next (older) page, or None on the last page."""


def audit_page(
    session: Session, *, letter_id: int, before: int | None = None, size: int = AUDIT_PAGE_SIZE
) -> AuditPage:
    """One page of the letter's audit log, newest first (keyset on the event id)."""
    events = audit_log(session, letter_id=letter_id, before=before, limit=size + 1)
    if len(events) > size:
        return AuditPage(events[:size], events[size - 1].id)
    return AuditPage(events, None)
