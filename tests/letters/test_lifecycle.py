"""The life of a letter: creating it as a person (dashboard, shell), what a person may
write, publishing, closing, reopening, archiving, the dashboard's list, and who may do
what. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Forbidden, InvalidInput, LetterNotFound
from app.letters.models import FieldRule, Letter, LetterStatus, LetterVersion
from app.letters.schemas import (
    BODY_MAX,
    RESERVED_SLUGS,
    LetterCreate,
    LetterFields,
    parse,
    parse_closes_at,
)
from app.letters.service import (
    PAST,
    LetterState,
    Transition,
    add_to_tally,
    audit_page,
    available_transitions,
    change_status,
    create_letter,
    dashboard_letters,
    get_letter,
    get_letter_for_organizer,
    get_public_letter,
    letter_state,
)
from app.organizers.models import AuditEvent, Organizer, Role
from app.organizers.service import SHELL, Actor, record, role_on
from tests.support.factories import make_letter
from tests.support.organizers import make_organizer

NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
FORM: dict[str, Any] = {
    "slug": "a-new-letter",
    "title": "A new letter",
    "body_markdown": "We ask for **one** thing.",
}


def events(session: Session, letter: Letter) -> list[tuple[str, str, dict[str, Any]]]:
    """The letter's audit log, oldest first: (actor, action, detail)."""
    rows = session.scalars(
        select(AuditEvent).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
    )
    return [(row.actor, row.action, row.detail) for row in rows]


def fields_of(caught: pytest.ExceptionInfo[InvalidInput]) -> dict[str, str]:
    return caught.value.fields


# --- what a person may write -------------------------------------------------------------


@pytest.mark.parametrize("slug", sorted(RESERVED_SLUGS))
def test_reserved_slugs_are_refused(slug: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(LetterCreate, {**FORM, "slug": slug})
    assert "reserved" in fields_of(caught)["slug"]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"slug": "Not A Slug"}, "slug", "lower-case letters"),
        ({"slug": ""}, "slug", "required"),
        ({"title": "   "}, "title", "required"),
        ({"title": "x" * 201}, "title", "at most 200"),
        ({"title": "two\nlines"}, "title", "control characters"),
        ({"body_markdown": ""}, "body", "required"),
        ({"body_markdown": "x" * (BODY_MAX + 1)}, "body", f"at most {BODY_MAX}"),
        ({"goal": 0}, "goal", "at least 1"),
        ({"goal": "-5"}, "goal", "at least 1"),
        ({"goal": "many"}, "goal", "whole number"),
        ({"closes_at": "next tuesday"}, "closes_at", "2027-01-31T23:59"),
        ({"closes_at": "2031-02-30T10:00"}, "closes_at", "2027-01-31T23:59"),
        ({"from_url": "javascript:alert(1)"}, "from_url", "https://"),
        ({"from_url": "ftp://example.org/"}, "from_url", "https://"),
        ({"from_url": "https://"}, "from_url", "https://"),
        ({"from_url": "https://exa mple.org"}, "from_url", "https://"),
        ({"field_comment": "sometimes"}, "field_comment", "options"),
    ],
)
def test_invalid_letters_get_a_message_per_field(
    changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(LetterCreate, {**FORM, **changes})
    assert words in fields_of(caught)[field]
    assert caught.value.status_code == 422


def test_a_person_s_input_is_cleaned_and_times_are_utc() -> None:
    data = parse(
        LetterCreate,
        {
            **FORM,
            "title": "  Café \u0301  ",
            "body_markdown": "\r\n\r\nLine one\r\nLine two  \r\n\r\n",
            "goal": " 250 ",
            "closes_at": "2031-04-01T09:30",
            "from_url": "https://example.org/us",
            "field_title": "required",
        },
    )
    assert data.title == "Café \u0301".strip()
    assert data.body_markdown == "Line one\nLine two"
    assert data.goal == 250
    assert data.closes_at == datetime(2031, 4, 1, 9, 30, tzinfo=UTC)
    assert data.field_title == FieldRule.REQUIRED
    assert parse(LetterCreate, {**FORM, "goal": "", "closes_at": ""}).closes_at is None
    in_paris = parse_closes_at("2031-04-01T11:30+02:00")
    assert in_paris == datetime(2031, 4, 1, 9, 30, tzinfo=UTC)
    assert parse_closes_at("") is None


# --- creating ----------------------------------------------------------------------------


def test_a_person_s_new_letter_has_an_owner_a_first_version_and_a_record(
    session: Session,
) -> None:
    organizer = make_organizer(session, "creator@example.org")
    data = parse(LetterCreate, {**FORM, "from_name": "Our group", "goal": "10"})

    letter = create_letter(session, data=data, actor=Actor(organizer))

    assert letter.status == LetterStatus.DRAFT
    assert letter.published_at is None
    assert letter.from_name == "Our group"
    assert role_on(session, organizer=organizer, letter_id=letter.id) == Role.OWNER
    versions = session.scalars(select(LetterVersion).where(LetterVersion.letter_id == letter.id))
    assert [(v.number, v.title, v.body_markdown) for v in versions] == [
        (1, "A new letter", "We ask for **one** thing.")
    ]
    assert events(session, letter) == [
        ("creator@example.org", "letter.create", {"slug": "a-new-letter", "status": "draft"})
    ]


def test_every_new_letter_has_version_one(session: Session) -> None:
    letter = make_letter(session)  # no actor: the demo, tests
    number = session.scalar(
        select(LetterVersion.number).where(LetterVersion.letter_id == letter.id)
    )
    assert (letter.version, number) == (1, 1)
    assert events(session, letter) == []


def test_a_person_cannot_create_a_letter_that_has_closed_already(session: Session) -> None:
    organizer = make_organizer(session, "late@example.org")
    data = parse(LetterCreate, {**FORM, "closes_at": "2031-03-01T11:59"})
    with pytest.raises(InvalidInput) as caught:
        create_letter(session, data=data, actor=Actor(organizer), now=NOW)
    assert fields_of(caught) == {"closes_at": PAST}
    assert session.scalar(select(Letter).where(Letter.slug == FORM["slug"])) is None


def test_the_shell_creates_letters_with_no_owner(session: Session) -> None:
    data = parse(LetterCreate, {**FORM, "status": "open"})
    letter = create_letter(session, data=data, actor=SHELL)
    assert letter.is_open(utcnow())
    assert events(session, letter) == [
        ("command line", "letter.create", {"slug": "a-new-letter", "status": "open"})
    ]


# --- publish, close, reopen, archive -----------------------------------------------------

OWNER = SHELL


def test_publish_opens_a_draft_once(session: Session) -> None:
    letter = make_letter(session, status=LetterStatus.DRAFT)
    assert available_transitions(letter, NOW) == [Transition.PUBLISH]
    with pytest.raises(LetterNotFound):
        get_public_letter(session, slug=letter.slug)

    change_status(session, letter=letter, transition=Transition.PUBLISH, actor=OWNER, now=NOW)

    assert (letter.status, letter.published_at) == (LetterStatus.OPEN, NOW)
    assert get_public_letter(session, slug=letter.slug, now=NOW).is_open
    with pytest.raises(InvalidInput, match="already published"):
        change_status(session, letter=letter, transition=Transition.PUBLISH, actor=OWNER, now=NOW)
    assert [action for _, action, _ in events(session, letter)] == ["letter.publish"]


def test_a_draft_past_its_closing_time_is_not_published(session: Session) -> None:
    letter = make_letter(session, status=LetterStatus.DRAFT, closes_at=NOW - timedelta(hours=1))
    with pytest.raises(InvalidInput) as caught:
        change_status(session, letter=letter, transition=Transition.PUBLISH, actor=OWNER, now=NOW)
    assert "closing time has passed" in fields_of(caught)["closes_at"]
    assert letter.status == LetterStatus.DRAFT
    assert events(session, letter) == []


@pytest.mark.parametrize("transition", [Transition.CLOSE, Transition.REOPEN, Transition.ARCHIVE])
def test_a_draft_can_only_be_published(session: Session, transition: Transition) -> None:
    letter = make_letter(session, status=LetterStatus.DRAFT)
    with pytest.raises(InvalidInput, match="draft: publish it first"):
        change_status(session, letter=letter, transition=transition, actor=OWNER, now=NOW)
    assert (letter.status, letter.archived_at) == (LetterStatus.DRAFT, None)


def test_close_reopen_archive_and_back(session: Session) -> None:
    letter = make_letter(session)
    assert available_transitions(letter, NOW) == [Transition.CLOSE, Transition.ARCHIVE]

    change_status(session, letter=letter, transition=Transition.CLOSE, actor=OWNER, now=NOW)
    assert letter_state(letter, NOW) == LetterState.CLOSED
    assert not letter.is_open(NOW)
    with pytest.raises(InvalidInput, match="already closed"):
        change_status(session, letter=letter, transition=Transition.CLOSE, actor=OWNER, now=NOW)
    assert available_transitions(letter, NOW) == [Transition.REOPEN, Transition.ARCHIVE]

    change_status(session, letter=letter, transition=Transition.REOPEN, actor=OWNER, now=NOW)
    assert letter.is_open(NOW)
    with pytest.raises(InvalidInput, match="already open"):
        change_status(session, letter=letter, transition=Transition.REOPEN, actor=OWNER, now=NOW)

    change_status(session, letter=letter, transition=Transition.ARCHIVE, actor=OWNER, now=NOW)
    assert (letter.status, letter.archived_at) == (LetterStatus.CLOSED, NOW)
    assert letter_state(letter, NOW) == LetterState.ARCHIVED
    assert available_transitions(letter, NOW) == [Transition.REOPEN]
    for refused in (Transition.ARCHIVE, Transition.CLOSE, Transition.PUBLISH):
        with pytest.raises(InvalidInput):
            change_status(session, letter=letter, transition=refused, actor=OWNER, now=NOW)
    # Archived: still public, not on the home page's list.
    assert get_public_letter(session, slug=letter.slug, now=NOW).status == LetterStatus.CLOSED

    change_status(session, letter=letter, transition=Transition.REOPEN, actor=OWNER, now=NOW)
    assert (letter.status, letter.archived_at) == (LetterStatus.OPEN, None)
    assert [action for _, action, _ in events(session, letter)] == [
        "letter.close",
        "letter.reopen",
        "letter.archive",
        "letter.reopen",
    ]


def test_a_letter_past_its_closing_time_is_closed_and_reopens_with_a_new_one(
    session: Session,
) -> None:
    passed = NOW - timedelta(days=1)
    letter = make_letter(session, closes_at=passed)
    assert letter.status == LetterStatus.OPEN  # as stored
    assert letter_state(letter, NOW) == LetterState.CLOSED  # as people see it
    assert available_transitions(letter, NOW) == [Transition.REOPEN, Transition.ARCHIVE]
    with pytest.raises(InvalidInput, match="already closed"):
        change_status(session, letter=letter, transition=Transition.CLOSE, actor=OWNER, now=NOW)

    with pytest.raises(InvalidInput) as caught:
        change_status(session, letter=letter, transition=Transition.REOPEN, actor=OWNER, now=NOW)
    assert "give a new one" in fields_of(caught)["closes_at"]
    with pytest.raises(InvalidInput) as caught:
        change_status(session, letter=letter, transition=Transition.REOPEN, actor=OWNER,
                      closes_at=NOW - timedelta(minutes=1), now=NOW)  # fmt: skip
    assert fields_of(caught) == {"closes_at": PAST}
    assert letter.closes_at == passed

    later = NOW + timedelta(days=7)
    change_status(session, letter=letter, transition=Transition.REOPEN, actor=OWNER,
                  closes_at=later, now=NOW)  # fmt: skip
    assert (letter.closes_at, letter.is_open(NOW)) == (later, True)
    assert events(session, letter)[-1][2] == {"closes_at": later.isoformat()}


def test_reopening_can_drop_the_closing_time(session: Session) -> None:
    letter = make_letter(session, status=LetterStatus.CLOSED, closes_at=NOW - timedelta(days=1))
    change_status(session, letter=letter, transition=Transition.REOPEN, actor=OWNER,
                  clear_closes_at=True, now=NOW)  # fmt: skip
    assert (letter.closes_at, letter.is_open(NOW)) == (None, True)
    assert events(session, letter)[-1][2] == {"closes_at": None}


def test_reopening_keeps_a_closing_time_still_ahead(session: Session) -> None:
    ahead = NOW + timedelta(days=3)
    letter = make_letter(session, status=LetterStatus.CLOSED, closes_at=ahead)
    change_status(session, letter=letter, transition=Transition.REOPEN, actor=OWNER, now=NOW)
    assert (letter.closes_at, letter.is_open(NOW)) == (ahead, True)


def test_transitions_are_recorded_with_who_did_them(session: Session) -> None:
    organizer = make_organizer(session, "owner@example.org")
    letter = make_letter(session, status=LetterStatus.DRAFT)
    change_status(session, letter=letter, transition=Transition.PUBLISH,
                  actor=Actor(organizer), now=NOW)  # fmt: skip
    change_status(session, letter=letter, transition=Transition.ARCHIVE, actor=SHELL, now=NOW)
    assert events(session, letter) == [
        ("owner@example.org", "letter.publish", {}),
        ("command line", "letter.archive", {}),
    ]
    organizer_ids = session.scalars(
        select(AuditEvent.organizer_id).where(AuditEvent.letter_id == letter.id)
    ).all()
    assert sorted(organizer_ids, key=str) == sorted([organizer.id, None], key=str)


# --- who may do what ---------------------------------------------------------------------


def test_roles_decide_who_reaches_a_letter(session: Session) -> None:
    letter = make_letter(session)
    owner = make_organizer(session, "o@example.org", letter=letter, role=Role.OWNER)
    editor = make_organizer(session, "e@example.org", letter=letter, role=Role.EDITOR)
    viewer = make_organizer(session, "v@example.org", letter=letter, role=Role.VIEWER)
    stranger = make_organizer(session, "s@example.org")
    admin = make_organizer(session, "a@example.org", is_admin=True)

    def reach(who: Any, needed: Role) -> Role:
        return get_letter_for_organizer(session, slug=letter.slug, organizer=who, needed=needed)[1]

    assert reach(owner, Role.OWNER) == Role.OWNER
    assert reach(editor, Role.EDITOR) == Role.EDITOR
    assert reach(viewer, Role.VIEWER) == Role.VIEWER
    assert reach(admin, Role.OWNER) == Role.OWNER
    with pytest.raises(Forbidden):
        reach(editor, Role.OWNER)
    with pytest.raises(Forbidden):
        reach(viewer, Role.EDITOR)
    with pytest.raises(LetterNotFound):
        reach(stranger, Role.VIEWER)
    with pytest.raises(LetterNotFound):
        get_letter_for_organizer(session, slug="no-such", organizer=owner, needed=Role.VIEWER)
    with pytest.raises(LetterNotFound):
        get_letter(session, slug="Not a slug")


# --- the dashboard's list ----------------------------------------------------------------


@contextmanager
def counted(session: Session) -> Iterator[list[str]]:
    """The SQL statements run inside the block."""
    statements: list[str] = []
    engine = session.connection().engine

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_the_dashboard_lists_an_organizer_s_letters_in_one_query(session: Session) -> None:
    mine = make_letter(session, status=LetterStatus.DRAFT)
    edited = make_letter(session, closes_at=NOW - timedelta(days=1))
    archived = make_letter(session)
    change_status(session, letter=archived, transition=Transition.ARCHIVE, actor=SHELL, now=NOW)
    theirs = make_letter(session)
    add_to_tally(session, letter_id=edited.id, delta=7)
    me = make_organizer(session, "me@example.org", letter=mine, role=Role.OWNER)
    for letter, role in ((edited, Role.EDITOR), (archived, Role.VIEWER)):
        make_organizer(session, "me@example.org", letter=letter, role=role)
    admin = make_organizer(session, "admin@example.org", is_admin=True, letter=mine,
                           role=Role.VIEWER)  # fmt: skip
    session.expunge_all()  # as in a request: nothing loaded yet
    me = session.get_one(Organizer, me.id)

    with counted(session) as statements:
        listed = dashboard_letters(session, organizer=me, now=NOW)
        found = [(item.letter.slug, item.state, item.signature_count, item.role) for item in listed]
    assert len(statements) == 1, statements

    assert found == [
        (edited.slug, LetterState.CLOSED, 7, Role.EDITOR),
        (mine.slug, LetterState.DRAFT, 0, Role.OWNER),
        (archived.slug, LetterState.ARCHIVED, 0, Role.VIEWER),
    ]
    with pytest.raises(Exception, match=r"raiseload|not available"):
        _ = listed[0].letter.body_markdown  # the texts are not loaded

    everything = {item.letter.slug: item for item in dashboard_letters(session, organizer=admin)}
    assert {mine.slug, edited.slug, archived.slug, theirs.slug} <= set(everything)
    # An admin acts as an owner everywhere, and the list says when that is not their own role.
    assert (everything[mine.slug].role, everything[mine.slug].via_admin) == (Role.OWNER, True)
    assert (everything[theirs.slug].role, everything[theirs.slug].via_admin) == (Role.OWNER, True)
    states = [item.state for item in dashboard_letters(session, organizer=None)]
    assert LetterState.ARCHIVED not in states[: states.index(LetterState.ARCHIVED)]
    assert set(states[states.index(LetterState.ARCHIVED) :]) == {LetterState.ARCHIVED}


# --- the audit log, page by page ---------------------------------------------------------


def test_the_audit_log_pages_newest_first(session: Session) -> None:
    letter = make_letter(session)
    other = make_letter(session)
    for number in range(5):
        record(session, actor=SHELL, letter_id=letter.id, action="test.step", n=number)
    record(session, actor=SHELL, letter_id=other.id, action="test.other")
    session.flush()

    first = audit_page(session, letter_id=letter.id, size=2)
    second = audit_page(session, letter_id=letter.id, before=first.older, size=2)
    third = audit_page(session, letter_id=letter.id, before=second.older, size=2)

    pages = [[event.detail["n"] for event in page.events] for page in (first, second, third)]
    assert pages == [[4, 3], [2, 1], [0]]
    assert third.older is None
    assert audit_page(session, letter_id=letter.id, size=5).older is None


def test_fields_of_a_letter_round_trip(session: Session) -> None:
    """What the edit form starts from is what the letter holds."""
    from app.letters.service import current_fields

    letter = make_letter(session, from_name="Group", from_url="https://example.org")
    assert parse(LetterFields, current_fields(letter)).model_dump() == {
        name: getattr(letter, name) for name in LetterFields.model_fields
    }
