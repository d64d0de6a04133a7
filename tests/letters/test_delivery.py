"""Delivery and response at the service level, on SQLite and PostgreSQL: the delivered
day, the addressee's response (its checks), the milestones, and the goal's milestone
kept when a confirmation reaches the goal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput
from app.letters.delivery import (
    MAX_RESPONSE_CHARS,
    Milestone,
    MilestoneKind,
    clear_response,
    mark_delivered,
    milestones,
    record_response,
)
from app.letters.models import Letter, LetterStatus
from app.organizers.models import AuditEvent, Organizer
from app.organizers.service import SHELL, Actor
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.organizers import make_organizer

PUBLISHED = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def letter(session: Session) -> Letter:
    letter = make_letter(session)
    letter.published_at = PUBLISHED
    session.flush()
    return letter


@pytest.fixture
def owner(session: Session, letter: Letter) -> Organizer:
    return make_organizer(session, "owner@example.org")


def events(session: Session, letter: Letter) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
        )
    )


def date_error(session: Session, letter: Letter, on: date | str) -> str:
    with pytest.raises(InvalidInput) as caught:
        mark_delivered(session, letter=letter, actor=SHELL, on=on, now=NOW)
    return caught.value.fields["date"]


def response_errors(session: Session, letter: Letter, **fields: Any) -> dict[str, str]:
    values: dict[str, Any] = {"on": "2025-06-01", "text": "We will act.", "link": ""}
    values.update(fields)
    with pytest.raises(InvalidInput) as caught:
        record_response(session, letter=letter, actor=SHELL, now=NOW, **values)
    return caught.value.fields


# --- Delivered -------------------------------------------------------------------------


def test_mark_delivered_keeps_the_day_and_records_who(
    session: Session, letter: Letter, owner: Organizer
) -> None:
    day = mark_delivered(session, letter=letter, actor=Actor(owner), on="2025-06-02", now=NOW)

    assert day == date(2025, 6, 2)
    session.expire_all()
    assert session.get(Letter, letter.id).delivered_on == date(2025, 6, 2)  # type: ignore[union-attr]
    [event] = events(session, letter)
    assert (event.action, event.organizer_id, event.actor) == (
        "letter.deliver",
        owner.id,
        "owner@example.org",
    )
    assert event.detail == {"on": "2025-06-02"}


def test_marking_again_changes_the_day(session: Session, letter: Letter) -> None:
    mark_delivered(session, letter=letter, actor=SHELL, on=date(2025, 6, 2), now=NOW)
    mark_delivered(session, letter=letter, actor=SHELL, on=" 2025-06-03 ", now=NOW)
    assert letter.delivered_on == date(2025, 6, 3)
    assert [event.detail["on"] for event in events(session, letter)] == ["2025-06-02", "2025-06-03"]


@pytest.mark.parametrize(
    ("on", "code"),
    [
        ("", "required"),
        ("   ", "required"),
        ("yesterday", "invalid"),
        ("2025-02-30", "invalid"),
        ("15/06/2025", "invalid"),
        ("2025-06-1", "invalid"),
        ("2025-06-17", "future"),  # NOW is the 15th, 12:00 UTC: the 16th has begun in UTC+14
        ("2031-01-01", "future"),
        ("2025-03-08", "before_published"),  # published the 10th, 09:00 UTC
        ("1999-12-31", "before_published"),
    ],
)
def test_bad_days_are_refused_and_change_nothing(
    session: Session, letter: Letter, on: str, code: str
) -> None:
    assert date_error(session, letter, on) == code
    assert letter.delivered_on is None
    assert events(session, letter) == []


def test_the_days_at_the_edges_of_the_worlds_time_zones_are_accepted(
    session: Session, letter: Letter
) -> None:
    # Already the 16th in UTC+14; still the 9th in UTC-12 when it was published.
    assert mark_delivered(session, letter=letter, actor=SHELL, on="2025-06-16", now=NOW)
    assert mark_delivered(session, letter=letter, actor=SHELL, on="2025-03-09", now=NOW)
    assert date_error(session, letter, date(2025, 6, 17)) == "future"


def test_a_draft_is_not_delivered(session: Session) -> None:
    draft = make_letter(session, status=LetterStatus.DRAFT)
    assert draft.published_at is None
    assert date_error(session, draft, "2025-06-01") == "not_published"


# --- Response --------------------------------------------------------------------------


def test_record_response_keeps_plain_text_with_its_paragraphs(
    session: Session, letter: Letter, owner: Organizer
) -> None:
    text = "Dear signers,  \r\n\r\n\r\n\r\nWe read your letter.\r\nWe will act.\n\n<b>Yes</b>  "
    record_response(
        session,
        letter=letter,
        actor=Actor(owner),
        on="2025-06-01",
        text=text,
        link=" https://example.org/response?id=1 ",
        now=NOW,
    )

    session.expire_all()
    stored = session.get(Letter, letter.id)
    assert stored is not None
    assert stored.response_on == date(2025, 6, 1)
    assert (
        stored.response_text == "Dear signers,\n\nWe read your letter.\nWe will act.\n\n<b>Yes</b>"
    )
    assert stored.response_url == "https://example.org/response?id=1"
    [event] = events(session, letter)
    assert event.action == "letter.record_response"
    assert event.detail == {
        "on": "2025-06-01",
        "characters": len(stored.response_text),
        "link": True,
        "replaced": False,
    }


def test_recording_again_replaces_the_response(session: Session, letter: Letter) -> None:
    record_response(
        session,
        letter=letter,
        actor=SHELL,
        on="2025-06-01",
        text="First",
        link="http://a.example",
        now=NOW,
    )
    record_response(session, letter=letter, actor=SHELL, on="2025-06-05", text="Second", now=NOW)
    assert (letter.response_on, letter.response_text, letter.response_url) == (
        date(2025, 6, 5),
        "Second",
        "",
    )
    assert events(session, letter)[-1].detail["replaced"] is True


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "required"),
        (" \n\n\t \r\n ", "required"),
        ("x" * (MAX_RESPONSE_CHARS + 1), "too_long"),
        ("Null\x00byte", "control_chars"),
        ("Bell\x07", "control_chars"),
        ("Evil \u202eoverride", "control_chars"),
    ],
)
def test_bad_texts_are_refused(session: Session, letter: Letter, text: str, code: str) -> None:
    assert response_errors(session, letter, text=text) == {"text": code}
    assert letter.response_on is None
    assert letter.response_text == ""


def test_the_longest_text_is_accepted(session: Session, letter: Letter) -> None:
    text = "y" * MAX_RESPONSE_CHARS
    record_response(session, letter=letter, actor=SHELL, on="2025-06-01", text=text, now=NOW)
    assert letter.response_text == text


@pytest.mark.parametrize(
    ("link", "code"),
    [
        ("javascript:alert(1)", "scheme"),
        ("JavaScript:alert(1)", "scheme"),
        ("data:text/html,hi", "scheme"),
        ("ftp://example.org/file", "scheme"),
        ("example.org/response", "scheme"),
        ("//example.org/response", "scheme"),
        ("https://", "invalid"),
        ("https:///path", "invalid"),
        ("https://user:pass@example.org/", "invalid"),
        ("https://exa mple.org/", "invalid"),
        ("https://example.org:port/", "invalid"),
        ("https://[::1/", "invalid"),
        ("https://example.org/" + "a" * 500, "too_long"),
    ],
)
def test_bad_links_are_refused(session: Session, letter: Letter, link: str, code: str) -> None:
    assert response_errors(session, letter, link=link) == {"link": code}
    assert letter.response_on is None


@pytest.mark.parametrize(
    "link", ["http://example.org", "HTTPS://Example.org/a/b?c=d#e", "https://127.0.0.1:8443/x"]
)
def test_http_and_https_links_are_kept(session: Session, letter: Letter, link: str) -> None:
    record_response(
        session, letter=letter, actor=SHELL, on="2025-06-01", text="t", link=link, now=NOW
    )
    assert letter.response_url == link


def test_every_bad_field_is_reported_at_once_and_nothing_changes(
    session: Session, letter: Letter
) -> None:
    record_response(session, letter=letter, actor=SHELL, on="2025-06-01", text="Kept", now=NOW)
    before = len(events(session, letter))

    fields = response_errors(session, letter, on="2025-02-01", text="", link="javascript:x")

    assert fields == {"date": "before_published", "text": "required", "link": "scheme"}
    assert (letter.response_on, letter.response_text) == (date(2025, 6, 1), "Kept")
    assert len(events(session, letter)) == before


def test_a_response_date_in_the_future_is_refused(session: Session, letter: Letter) -> None:
    assert response_errors(session, letter, on="2025-07-01") == {"date": "future"}


def test_clear_response(session: Session, letter: Letter, owner: Organizer) -> None:
    record_response(
        session,
        letter=letter,
        actor=SHELL,
        on="2025-06-01",
        text="T",
        link="https://e.example",
        now=NOW,
    )
    assert clear_response(session, letter=letter, actor=Actor(owner)) is True

    session.expire_all()
    stored = session.get(Letter, letter.id)
    assert stored is not None
    assert (stored.response_on, stored.response_text, stored.response_url) == (None, "", "")
    assert events(session, letter)[-1].action == "letter.clear_response"
    assert events(session, letter)[-1].organizer_id == owner.id


def test_clearing_without_a_response_does_nothing(session: Session, letter: Letter) -> None:
    assert clear_response(session, letter=letter, actor=SHELL) is False
    assert events(session, letter) == []


# --- Milestones ------------------------------------------------------------------------


def test_milestones_in_order(session: Session, letter: Letter) -> None:
    assert milestones(letter) == [Milestone(MilestoneKind.PUBLISHED, date(2025, 3, 10))]
    letter.goal_reached_at = datetime(2025, 5, 1, 23, 30, tzinfo=UTC)
    record_response(session, letter=letter, actor=SHELL, on="2025-05-20", text="Answer", now=NOW)
    mark_delivered(session, letter=letter, actor=SHELL, on="2025-05-02", now=NOW)

    assert milestones(letter) == [
        Milestone(MilestoneKind.PUBLISHED, date(2025, 3, 10)),
        Milestone(MilestoneKind.GOAL_REACHED, date(2025, 5, 1)),
        Milestone(MilestoneKind.DELIVERED, date(2025, 5, 2)),
        Milestone(MilestoneKind.RESPONSE, date(2025, 5, 20)),
    ]


def test_milestones_on_the_same_day_keep_their_natural_order(
    session: Session, letter: Letter
) -> None:
    letter.goal_reached_at = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
    record_response(session, letter=letter, actor=SHELL, on="2025-05-01", text="Answer", now=NOW)
    mark_delivered(session, letter=letter, actor=SHELL, on="2025-05-01", now=NOW)
    assert [milestone.kind for milestone in milestones(letter)] == [
        MilestoneKind.PUBLISHED,
        MilestoneKind.GOAL_REACHED,
        MilestoneKind.DELIVERED,
        MilestoneKind.RESPONSE,
    ]


def test_a_draft_has_no_milestones(session: Session) -> None:
    assert milestones(make_letter(session, status=LetterStatus.DRAFT)) == []


def test_the_confirmation_that_reaches_the_goal_keeps_the_day(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session, goal=2)
    sign_and_confirm(session, letter, settings)
    session.refresh(letter)
    assert letter.goal_reached_at is None
    assert [milestone.kind for milestone in milestones(letter)] == [MilestoneKind.PUBLISHED]

    before = datetime.now(UTC)
    sign_and_confirm(session, letter, settings)
    session.refresh(letter)
    reached = letter.goal_reached_at
    assert reached is not None
    assert before - timedelta(seconds=1) <= reached <= datetime.now(UTC) + timedelta(seconds=1)
    assert milestones(letter)[-1] == Milestone(MilestoneKind.GOAL_REACHED, reached.date())

    # Later confirmations leave the day alone.
    letter.goal_reached_at = reached - timedelta(days=3)
    session.flush()
    sign_and_confirm(session, letter, settings)
    session.refresh(letter)
    assert letter.goal_reached_at == reached - timedelta(days=3)


def test_a_letter_without_a_goal_never_reaches_one(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    letter.goal = None
    session.flush()
    sign_and_confirm(session, letter, settings)
    session.refresh(letter)
    assert letter.goal_reached_at is None
