"""Editing a letter, and its versions: a new version only when people signed the text
being changed; the public notice's count; what changed. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput
from app.letters import versions
from app.letters.models import FieldRule, Letter, LetterVersion
from app.letters.schemas import LetterFields, parse
from app.letters.service import (
    PAST,
    add_to_tally,
    current_fields,
    edit_letter,
)
from app.letters.versions import (
    DiffLine,
    EditNotice,
    LineChange,
    diff_lines,
    edit_notice,
    letter_changes,
)
from app.organizers.models import AuditEvent
from app.organizers.service import SHELL, Actor
from app.signatures.models import Signature, SignatureStatus
from tests.support.factories import make_letter, sign, sign_and_confirm
from tests.support.organizers import make_organizer

NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
CHANGED = (LineChange.REMOVED, LineChange.ADDED)


def edit(session: Session, letter: Letter, now: datetime = NOW, **changes: Any) -> Any:
    data = parse(LetterFields, {**current_fields(letter), **changes})
    return edit_letter(session, letter=letter, data=data, actor=SHELL, now=now)


def stored_versions(session: Session, letter: Letter) -> list[tuple[int, str, str]]:
    rows = session.scalars(
        select(LetterVersion)
        .where(LetterVersion.letter_id == letter.id)
        .order_by(LetterVersion.number)
    )
    return [(row.number, row.title, row.body_markdown) for row in rows]


def set_versions(session: Session, letter: Letter, version: int) -> None:
    """Every signature of the letter so far signed `version` of its text."""
    session.execute(
        update(Signature).where(Signature.letter_id == letter.id).values(version=version)
    )


@contextmanager
def counted(session: Session) -> Iterator[list[str]]:
    statements: list[str] = []
    engine = session.connection().engine

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


# --- the rule ------------------------------------------------------------------------------


def test_before_anyone_signs_the_text_is_corrected_in_place(session: Session) -> None:
    letter = make_letter(session, title="Tpyo", body_markdown="Frist line.")
    edited = edit(session, letter, title="Typo", body_markdown="First line.")

    assert (edited.new_version, edited.version) == (False, 1)
    assert (letter.version, letter.edited_at) == (1, None)
    assert stored_versions(session, letter) == [(1, "Typo", "First line.")]
    assert letter.body_html == "<p>First line.</p>\n"
    assert edit_notice(session, letter=letter) is None


def test_editing_a_signed_text_makes_a_new_version(session: Session, settings: Settings) -> None:
    letter = make_letter(session, title="Old title", body_markdown="We ask for one thing.")
    sign_and_confirm(session, letter, settings)

    edited = edit(session, letter, body_markdown="We ask for two things.")

    assert (edited.new_version, edited.version, edited.changed) == (True, 2, ["body_markdown"])
    assert (letter.version, letter.edited_at) == (2, NOW)
    assert stored_versions(session, letter) == [
        (1, "Old title", "We ask for one thing."),
        (2, "Old title", "We ask for two things."),
    ]
    assert edit_notice(session, letter=letter) == EditNotice(edited_at=NOW, signed_earlier=1)

    # Nobody has signed version 2 yet: the next fix changes it in place.
    later = NOW + timedelta(hours=1)
    again = edit(session, letter, now=later, title="New title")
    assert (again.new_version, again.version) == (False, 2)
    assert stored_versions(session, letter)[-1] == (2, "New title", "We ask for two things.")
    assert letter.edited_at == NOW


def test_a_signature_waiting_for_confirmation_counts_as_signed(
    session: Session, settings: Settings
) -> None:
    """Its signer read the current text: changing that text in place would change what
    their confirmation will count for."""
    letter = make_letter(session)
    sign(session, letter, settings)
    assert versions.has_signatures_of_current_version(session, letter=letter)
    assert edit(session, letter, title="Changed").new_version


def test_withdrawn_signatures_also_signed_the_text(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(session, letter, settings)
    signature.status = SignatureStatus.WITHDRAWN
    session.flush()
    assert edit(session, letter, title="Changed").new_version
    # ... but the notice counts confirmed signatures only.
    assert edit_notice(session, letter=letter) == EditNotice(edited_at=NOW, signed_earlier=0)


def test_only_the_title_and_text_are_versioned(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    sign_and_confirm(session, letter, settings)
    edited = edit(
        session,
        letter,
        summary="New summary",
        addressed_to="Someone else",
        goal=500,
        closes_at=NOW + timedelta(days=3),
        from_name="Our group",
        from_url="https://example.org/",
        field_comment=FieldRule.REQUIRED,
        allow_anonymous=False,
        show_signers=False,
    )
    assert edited.new_version is False
    assert letter.version == 1
    assert (letter.from_name, letter.field_comment, letter.show_signers) == (
        "Our group",
        FieldRule.REQUIRED,
        False,
    )
    assert edited.changed == [
        "summary",
        "addressed_to",
        "goal",
        "closes_at",
        "from_name",
        "from_url",
        "field_comment",
        "allow_anonymous",
        "show_signers",
    ]


def test_the_notice_counts_confirmed_signatures_of_earlier_versions_in_one_query(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    for _ in range(3):
        sign_and_confirm(session, letter, settings)
    edit(session, letter, body_markdown="Version two.")
    set_versions(session, letter, 1)
    sign_and_confirm(session, letter, settings)  # signs version 2
    removed = sign_and_confirm(session, letter, settings, email="removed@example.org")
    removed.status, removed.version = SignatureStatus.REMOVED, 1
    session.flush()
    newest = session.scalars(
        select(Signature).where(Signature.letter_id == letter.id).order_by(Signature.id.desc())
    ).all()
    assert [row.version for row in newest[:2]] == [1, 2], "signing records the current version"

    with counted(session) as statements:
        notice = edit_notice(session, letter=letter)
    assert notice == EditNotice(edited_at=NOW, signed_earlier=3)
    assert len(statements) == 1

    unedited = make_letter(session)
    with counted(session) as statements:
        assert edit_notice(session, letter=unedited) is None
    assert statements == []


def test_the_stored_status_the_notice_counts_is_verified() -> None:
    assert SignatureStatus.VERIFIED.value == versions.VERIFIED


# --- edits a person may not make ---------------------------------------------------------


def test_the_goal_cannot_go_below_the_count(session: Session) -> None:
    letter = make_letter(session, goal=100)
    add_to_tally(session, letter_id=letter.id, delta=150)
    with pytest.raises(InvalidInput) as caught:
        edit(session, letter, goal=149)
    assert caught.value.fields == {"goal": "The goal cannot be below the current count (150)."}
    assert letter.goal == 100
    # Unchanged, a goal already passed is no reason to refuse other changes.
    assert edit(session, letter, title="Fixed").changed == ["title"]
    assert edit(session, letter, goal=150).changed == ["goal"]
    assert edit(session, letter, goal=None).changed == ["goal"]


def test_the_goal_reached_milestone_follows_the_goal(session: Session) -> None:
    letter = make_letter(session, goal=10)
    add_to_tally(session, letter_id=letter.id, delta=10)
    session.refresh(letter)
    assert letter.goal_reached_at is not None

    edit(session, letter, goal=100)
    assert letter.goal_reached_at is None  # a new goal, not reached yet
    edit(session, letter, goal=10)
    assert letter.goal_reached_at == NOW  # reached as soon as it is set
    edit(session, letter, title="Other title")
    assert letter.goal_reached_at == NOW
    edit(session, letter, goal=None)
    assert letter.goal_reached_at is None


def test_a_new_closing_time_must_be_ahead_but_an_old_one_may_stay(session: Session) -> None:
    passed = datetime(2031, 2, 1, 8, 15, 42, tzinfo=UTC)
    letter = make_letter(session, closes_at=passed)
    with pytest.raises(InvalidInput) as caught:
        edit(session, letter, closes_at=NOW - timedelta(minutes=1))
    assert caught.value.fields == {"closes_at": PAST}
    assert letter.closes_at == passed

    # The form sends minutes: the same time, without its seconds, is no change.
    shown = passed.strftime("%Y-%m-%dT%H:%M")
    assert edit(session, letter, closes_at=shown, title="Fixed").changed == ["title"]
    assert letter.closes_at == passed
    assert edit(session, letter, closes_at="").changed == ["closes_at"]
    assert letter.closes_at is None


def test_invalid_edits_change_nothing(session: Session, settings: Settings) -> None:
    letter = make_letter(session, goal=10)
    add_to_tally(session, letter_id=letter.id, delta=20)
    with pytest.raises(InvalidInput) as caught:
        edit(session, letter, title="New", goal=5, closes_at=NOW - timedelta(days=1))
    assert set(caught.value.fields) == {"goal", "closes_at"}
    assert letter.title.startswith("Test letter")
    assert session.scalars(select(AuditEvent).where(AuditEvent.letter_id == letter.id)).all() == []


def test_edits_are_recorded(session: Session, settings: Settings) -> None:
    organizer = make_organizer(session, "editor@example.org")
    letter = make_letter(session)
    sign_and_confirm(session, letter, settings)
    data = parse(LetterFields, {**current_fields(letter), "title": "New", "summary": "S"})
    edit_letter(session, letter=letter, data=data, actor=Actor(organizer), now=NOW)
    nothing = edit_letter(session, letter=letter, data=data, actor=Actor(organizer), now=NOW)

    assert nothing.changed == []
    rows = session.scalars(select(AuditEvent).where(AuditEvent.letter_id == letter.id)).all()
    assert [(row.actor, row.action, row.detail) for row in rows] == [
        (
            "editor@example.org",
            "letter.edit",
            {"fields": ["title", "summary"], "version": 2, "new_version": True},
        )
    ]


# --- what changed ----------------------------------------------------------------------------


def test_diff_lines_mark_removed_and_added_lines_with_context() -> None:
    before = "\n".join(f"line {n}" for n in range(1, 11))
    after = before.replace("line 2", "line two").replace("line 9\n", "")
    assert diff_lines(before, after, context=1) == [
        DiffLine(LineChange.SAME, "line 1"),
        DiffLine(LineChange.REMOVED, "line 2"),
        DiffLine(LineChange.ADDED, "line two"),
        DiffLine(LineChange.SAME, "line 3"),
        DiffLine(LineChange.GAP, ""),
        DiffLine(LineChange.SAME, "line 8"),
        DiffLine(LineChange.REMOVED, "line 9"),
        DiffLine(LineChange.SAME, "line 10"),
    ]
    middle = diff_lines(before, before.replace("line 5", "five"), context=1)
    assert middle[0] == middle[-1] == DiffLine(LineChange.GAP, "")
    assert diff_lines("same", "same") == []


def test_letter_changes_newest_first(session: Session, settings: Settings) -> None:
    letter = make_letter(session, title="First", body_markdown="One.\n\nTwo.")
    sign_and_confirm(session, letter, settings)
    edit(session, letter, title="Second", body_markdown="One.\n\nTwo, amended.")
    set_versions(session, letter, 2)  # someone signed version 2
    edit(
        session,
        letter,
        now=NOW + timedelta(days=1),
        body_markdown="One.\n\nTwo, amended.\n\nThree.",
    )

    changes = letter_changes(session, letter_id=letter.id)

    assert [(change.number, change.title, change.previous_title) for change in changes] == [
        (3, "Second", None),
        (2, "Second", "First"),
        (1, "First", None),
    ]
    assert changes[0].created_at == NOW + timedelta(days=1)
    assert [line for line in changes[0].lines if line.change in CHANGED] == [
        DiffLine(LineChange.ADDED, ""),
        DiffLine(LineChange.ADDED, "Three."),
    ]
    assert [line for line in changes[1].lines if line.change in CHANGED] == [
        DiffLine(LineChange.REMOVED, "Two."),
        DiffLine(LineChange.ADDED, "Two, amended."),
    ]
    assert changes[2].lines == []
