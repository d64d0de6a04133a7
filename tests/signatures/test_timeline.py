"""A letter's signatures over time, on both databases: counted as the tally counts,
by UTC day, gaps filled, long letters by the week or month, big letters cached."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from app.letters.service import signature_count
from app.organizers.service import Actor
from app.signatures import breakdown, seed, timeline
from app.signatures.models import RemovalReason, SignatureStatus
from app.signatures.moderation import remove_signature, set_hidden
from app.signatures.timeline import build_timeline, letter_timeline
from tests.signatures.test_badges import add, statements
from tests.support.factories import make_letter

SECRET = "timeline-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    timeline.forget_cached_timelines()
    yield
    timeline.forget_cached_timelines()


def test_the_running_total_ends_at_the_public_count(session: Session) -> None:
    letter = make_letter(session)
    seed.seed_signatures(session, letter=letter, count=120, secret_key=SECRET, force=True,
                         days=20, random_seed=5)  # fmt: skip
    command_line = Actor(None)
    for position in (3, 4, 5):  # hidden from the list: still counted
        set_hidden(session, actor=command_line, letter_id=letter.id, position=position,
                   hidden=True)  # fmt: skip
    for position in (10, 11):  # removed: no longer counted
        remove_signature(session, actor=command_line, letter_id=letter.id, position=position,
                         reason=RemovalReason.BOT)  # fmt: skip

    found = letter_timeline(session, letter=letter)

    count = signature_count(session, letter_id=letter.id)
    assert count == 118
    assert found.total == count == found.points[-1].total
    assert sum(point.count for point in found.points) == count
    assert found.interval == "day"
    days = [point.start for point in found.points]
    assert days == [days[0] + timedelta(days=n) for n in range(len(days))]  # no gap
    assert days[-1] == datetime.now(UTC).date()  # an open letter runs to today
    assert 18 <= len(days) <= 22


def test_days_are_utc_days_and_empty_days_count_zero(session: Session) -> None:
    letter = make_letter(session)
    moments = [
        datetime(2026, 11, 15, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 16, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 16, 0, 30, tzinfo=UTC),
        datetime(2026, 11, 18, 9, 0, tzinfo=UTC),
    ]
    for moment in moments:
        add(session, letter, "").verified_at = moment
    withdrawn = add(session, letter, "", status=SignatureStatus.WITHDRAWN)
    withdrawn.verified_at = datetime(2026, 11, 14, 8, 0, tzinfo=UTC)
    removed = add(session, letter, "", status=SignatureStatus.REMOVED)
    removed.verified_at = datetime(2026, 11, 19, 8, 0, tzinfo=UTC)
    session.flush()

    found = letter_timeline(session, letter=letter, now=NOW)

    assert [(point.start, point.count, point.total) for point in found.points] == [
        (date(2026, 11, 15), 1, 1),
        (date(2026, 11, 16), 2, 3),
        (date(2026, 11, 17), 0, 3),
        (date(2026, 11, 18), 1, 4),
        (date(2026, 11, 19), 0, 4),
        (date(2026, 11, 20), 0, 4),
    ]
    assert found.total == 4


def test_a_closed_letter_ends_on_its_closing_day(session: Session) -> None:
    letter = make_letter(session, closes_at=datetime(2026, 11, 12, 18, 0, tzinfo=UTC))
    add(session, letter, "").verified_at = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
    session.flush()

    found = letter_timeline(session, letter=letter, now=NOW)

    assert [point.start for point in found.points] == [
        date(2026, 11, 10),
        date(2026, 11, 11),
        date(2026, 11, 12),
    ]


def test_a_letter_nobody_signed_has_no_points(session: Session) -> None:
    letter = make_letter(session)
    found = letter_timeline(session, letter=letter, now=NOW)
    assert (found.points, found.total, found.interval) == ([], 0, "day")


def test_one_group_by_when_the_tally_is_known(session: Session) -> None:
    letter = make_letter(session)
    add(session, letter, "")
    with statements(session) as seen:
        found = letter_timeline(session, letter=letter, count=1)
    assert len(seen) == 1 and "GROUP BY" in seen[0].upper()
    assert found.total == 1


def test_long_letters_count_by_the_week_then_by_the_month() -> None:
    first = date(2025, 1, 1)  # a Wednesday
    days = {first: 2, first + timedelta(days=5): 1, date(2025, 7, 1): 4}
    weekly = build_timeline(days, last_day=date(2025, 7, 31))  # 212 days
    assert weekly.interval == "week"
    assert weekly.points[0].start == date(2024, 12, 30)  # the Monday before
    assert weekly.points[0].count == 2 and weekly.points[1].count == 1  # Jan 6 is Monday
    assert all(point.start.weekday() == 0 for point in weekly.points)
    assert weekly.points[-1].start == date(2025, 7, 28)
    assert len(weekly.points) <= timeline.MAX_POINTS
    assert weekly.total == weekly.points[-1].total == 7

    monthly = build_timeline(days, last_day=date(2028, 12, 31))  # four years
    assert monthly.interval == "month"
    assert [point.start for point in monthly.points[:3]] == [
        date(2025, 1, 1),
        date(2025, 2, 1),
        date(2025, 3, 1),
    ]
    assert monthly.points[0].count == 3 and monthly.points[6].count == 4
    assert monthly.points[11].start == date(2025, 12, 1)
    assert monthly.points[12].start == date(2026, 1, 1)
    assert monthly.points[-1].start == date(2028, 12, 1) and len(monthly.points) == 48
    assert monthly.total == monthly.points[-1].total == 7

    daily = build_timeline(days, last_day=first + timedelta(days=timeline.MAX_POINTS - 1))
    assert daily.interval == "day" and len(daily.points) == timeline.MAX_POINTS


def test_a_big_letters_timeline_is_reused_for_a_minute(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timeline, "CACHE_FROM", 50)
    letter = make_letter(session)
    seed.seed_signatures(session, letter=letter, count=60, secret_key=SECRET, force=True,
                         days=3, random_seed=1)  # fmt: skip
    clock = [1000.0]
    monkeypatch.setattr("app.signatures.timeline.time.monotonic", lambda: clock[0])
    first = letter_timeline(session, letter=letter)
    assert first.total == 60
    seed.seed_signatures(session, letter=letter, count=10, secret_key=SECRET, force=True,
                         days=3, random_seed=2)  # fmt: skip

    clock[0] += breakdown.CACHE_SECONDS - 1
    assert letter_timeline(session, letter=letter).total == 60
    clock[0] += 2
    assert letter_timeline(session, letter=letter).total == 70


def test_a_small_letters_timeline_is_exact_on_every_request(session: Session) -> None:
    letter = make_letter(session)
    add(session, letter, "")
    assert letter_timeline(session, letter=letter).total == 1
    add(session, letter, "")
    assert letter_timeline(session, letter=letter).total == 2
