"""A letter's activity (app/abuse/stats.py) on SQLite and PostgreSQL, from made-up rows
at chosen times: the windows' edges to the microsecond, the steps, the trending domains
and networks against the usual mix, the refused attempts, and nothing of other letters."""

from __future__ import annotations

import itertools
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from app.abuse.models import AbuseEvent
from app.abuse.stats import TOP, Window, activity, parse_window
from app.errors import InvalidInput
from app.letters.models import Letter
from app.signatures.models import (
    PendingSignature,
    PendingState,
    Signature,
    SignatureDisplay,
    SignatureStatus,
)
from tests.support.factories import make_letter

NOW = datetime(2031, 3, 10, 12, 34, 27, 500000, tzinfo=UTC)
"""The hour window is then [11:35, 12:35); the day window [9 March 13:00, 10 March 13:00)."""
HOUR_START = datetime(2031, 3, 10, 11, 35, tzinfo=UTC)
HOUR_END = datetime(2031, 3, 10, 12, 35, tzinfo=UTC)
DAY_START = datetime(2031, 3, 9, 13, 0, tzinfo=UTC)
DAY_END = datetime(2031, 3, 10, 13, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
WEEK = timedelta(days=7)

_positions = itertools.count(1)


def confirmed(
    session: Session,
    letter: Letter,
    at: datetime,
    domain: str = "",
    status: SignatureStatus = SignatureStatus.VERIFIED,
) -> None:
    """A confirmed signature (a public one when it has a domain: anonymous ones keep
    none), with a name and an address that the activity must never read."""
    session.add(
        Signature(
            letter_id=letter.id,
            position=next(_positions),
            status=status,
            display=SignatureDisplay.PUBLIC if domain else SignatureDisplay.ANONYMOUS,
            name="Secret Name" if domain else "",
            email=f"secret@{domain}" if domain else None,
            contact_ok=bool(domain),
            email_hash=secrets.token_hex(32),
            email_domain=domain,
            public_id=secrets.token_urlsafe(16),
            verified_at=at,
        )
    )


def submitted(
    session: Session, letter: Letter, at: datetime, domain: str = "", source: str = ""
) -> None:
    """A submission (waiting for its link to be used while it has a domain)."""
    session.add(
        PendingSignature(
            public_id=secrets.token_urlsafe(18),
            letter_id=letter.id,
            state=PendingState.SENT if domain else PendingState.CONFIRMED,
            name="Secret Name",
            email_hash=secrets.token_hex(32),
            email_domain=domain,
            source_hash=source,
            created_at=at,
            due_at=at,
            expires_at=NOW + WEEK,
        )
    )


def refused(session: Session, letter: Letter | None, at: datetime, kind: str) -> None:
    session.add(
        AbuseEvent(
            letter_id=letter.id if letter else None, kind=kind, source_hash="f" * 64, created_at=at
        )
    )


@pytest.fixture
def letters(session: Session) -> tuple[Letter, Letter]:
    """The letter looked at, and another whose rows must never show."""
    return make_letter(session), make_letter(session)


def test_the_hour_counts_each_minute_exactly(
    session: Session, letters: tuple[Letter, Letter]
) -> None:
    ours, theirs = letters
    # Confirmed: the window's first microsecond, a minute in the middle, its last
    # microsecond; a removed one counts (it arrived), a withdrawn one does not; just
    # outside on either side does not.
    confirmed(session, ours, HOUR_START)
    confirmed(session, ours, HOUR_START + timedelta(minutes=25, seconds=30))
    confirmed(session, ours, HOUR_START + timedelta(minutes=25, seconds=59), "example.org")
    confirmed(session, ours, HOUR_START + timedelta(minutes=25), status=SignatureStatus.REMOVED)
    confirmed(session, ours, HOUR_START + timedelta(minutes=25), status=SignatureStatus.WITHDRAWN)
    confirmed(session, ours, HOUR_END - TICK)
    confirmed(session, ours, HOUR_START - TICK)
    confirmed(session, ours, HOUR_END)
    # Submissions, the same edges.
    submitted(session, ours, HOUR_START)
    submitted(session, ours, HOUR_START + timedelta(minutes=1) - TICK)
    submitted(session, ours, HOUR_START + timedelta(minutes=1))
    submitted(session, ours, HOUR_END - TICK, "example.org", "a" * 64)
    submitted(session, ours, HOUR_START - TICK)
    submitted(session, ours, HOUR_END)
    # Another letter's, at the same moments: none of it counts.
    for at in (HOUR_START, HOUR_START + timedelta(minutes=25), HOUR_END - TICK):
        confirmed(session, theirs, at, "example.org")
        submitted(session, theirs, at, "example.org", "b" * 64)
    session.flush()

    seen = activity(session, letter_id=ours.id, window=Window.HOUR, now=NOW)

    assert (seen.start, seen.end, seen.baseline_start) == (HOUR_START, HOUR_END, HOUR_START - WEEK)
    assert len(seen.steps) == 60
    assert [step.start for step in seen.steps[:2]] == [
        HOUR_START,
        HOUR_START + timedelta(minutes=1),
    ]
    assert seen.steps[-1].start == HOUR_END - timedelta(minutes=1)
    by_minute = {n: (step.confirmed, step.submitted) for n, step in enumerate(seen.steps)}
    assert {n: counts for n, counts in by_minute.items() if counts != (0, 0)} == {
        0: (1, 2),
        1: (0, 1),
        25: (3, 0),
        59: (1, 1),
    }
    assert (seen.confirmed, seen.submitted) == (5, 4)
    assert seen.peak == 3


def test_the_day_counts_each_hour_exactly(session: Session, letters: tuple[Letter, Letter]) -> None:
    ours, theirs = letters
    confirmed(session, ours, DAY_START)
    confirmed(session, ours, DAY_START + timedelta(hours=1) - TICK)
    confirmed(session, ours, DAY_START + timedelta(hours=1))
    confirmed(session, ours, NOW)  # the current hour, so far
    confirmed(session, ours, DAY_START - TICK)
    confirmed(session, ours, DAY_END)
    submitted(session, ours, DAY_START + timedelta(hours=12, minutes=59, seconds=59))
    submitted(session, ours, DAY_END - TICK)
    submitted(session, ours, DAY_START - TICK)
    confirmed(session, theirs, DAY_START + timedelta(hours=5))
    submitted(session, theirs, DAY_START + timedelta(hours=5))
    session.flush()

    seen = activity(session, letter_id=ours.id, window=Window.DAY, now=NOW)

    assert (seen.start, seen.end) == (DAY_START, DAY_END)
    assert len(seen.steps) == 24
    assert seen.steps[5].start == DAY_START + timedelta(hours=5)
    counts = {n: (step.confirmed, step.submitted) for n, step in enumerate(seen.steps)}
    assert {n: c for n, c in counts.items() if c != (0, 0)} == {
        0: (2, 0),
        1: (1, 0),
        12: (0, 1),
        23: (1, 1),
    }


def test_domains_on_the_rise_against_the_usual_mix(
    session: Session, letters: tuple[Letter, Letter]
) -> None:
    ours, theirs = letters
    usual = HOUR_START - timedelta(days=3)
    # The usual mix (the 7 days before the window): 90% example.org, 10% other.org.
    # A removed signature is not part of it; nor is anything older than 7 days.
    for _ in range(9):
        confirmed(session, ours, usual, "example.org")
    confirmed(session, ours, HOUR_START - WEEK, "other.org")  # its first microsecond
    confirmed(session, ours, usual, "flood.test", SignatureStatus.REMOVED)
    confirmed(session, ours, HOUR_START - WEEK - TICK, "flood.test")
    confirmed(session, ours, usual)  # anonymous: no domain
    # The window: flood.test 6 confirmed (2 removed since) and 2 waiting submissions;
    # example.org 3; new.net 1 waiting; 2 anonymous signers.
    for n in range(6):
        status = SignatureStatus.REMOVED if n < 2 else SignatureStatus.VERIFIED
        confirmed(session, ours, HOUR_START + timedelta(minutes=n), "flood.test", status)
    for _ in range(3):
        confirmed(session, ours, HOUR_START + timedelta(minutes=30), "example.org")
    submitted(session, ours, HOUR_START, "flood.test")
    submitted(session, ours, HOUR_END - TICK, "flood.test")
    submitted(session, ours, HOUR_START + timedelta(minutes=9), "new.net")
    submitted(session, ours, HOUR_START + timedelta(minutes=9))  # confirmed: domain wiped
    confirmed(session, ours, HOUR_START + timedelta(minutes=40))
    confirmed(session, ours, HOUR_START + timedelta(minutes=41))
    # Just outside the window, and another letter's flood: none of it.
    confirmed(session, ours, HOUR_END, "late.test")
    submitted(session, ours, HOUR_START - TICK, "early.test")
    for _ in range(20):
        confirmed(session, theirs, HOUR_START + timedelta(minutes=5), "theirs.test")
        submitted(session, theirs, HOUR_START + timedelta(minutes=5), "new.net")
    confirmed(session, theirs, usual, "flood.test")
    session.flush()

    seen = activity(session, letter_id=ours.id, window=Window.HOUR, now=NOW)

    # Seen in the window: flood.test 8, example.org 3, new.net 1 (12 with a domain).
    # example.org fell from 90% to 25%: not on the rise.
    assert seen.domains_seen == 12
    assert seen.confirmed_without_domain == 2
    assert [row.key for row in seen.domains] == ["flood.test", "new.net"]
    flood, new = seen.domains
    assert (flood.recent, flood.confirmed, flood.removed, flood.usual) == (8, 6, 2, 0)
    assert flood.recent_share == pytest.approx(8 / 12)
    assert flood.usual_share == 0
    assert flood.rise == pytest.approx(8 / 12)
    assert (new.recent, new.confirmed, new.removed, new.usual) == (1, 0, 0, 0)
    assert new.rise == pytest.approx(1 / 12)


def test_a_usual_domain_that_grows_is_ranked_by_its_rise(
    session: Session, letters: tuple[Letter, Letter]
) -> None:
    ours, _ = letters
    usual = HOUR_START - timedelta(days=1)
    # Usually: a.org 50%, b.org 40%, c.org 10%. Now: a.org 20%, b.org 50%, c.org 30%.
    for domain, before, now in (("a.org", 5, 2), ("b.org", 4, 5), ("c.org", 1, 3)):
        for _ in range(before):
            confirmed(session, ours, usual, domain)
        for _ in range(now):
            confirmed(session, ours, HOUR_START + timedelta(minutes=10), domain)
    session.flush()

    seen = activity(session, letter_id=ours.id, window=Window.HOUR, now=NOW)

    assert [(row.key, round(row.rise, 6)) for row in seen.domains] == [
        ("c.org", 0.2),
        ("b.org", 0.1),
    ]
    c = seen.domains[0]
    assert (c.recent, c.usual) == (3, 1)
    assert (c.recent_share, c.usual_share) == pytest.approx((0.3, 0.1))


def test_at_most_the_top_domains_highest_rise_first(
    session: Session, letters: tuple[Letter, Letter]
) -> None:
    ours, _ = letters
    # TOP + 2 new domains: d0 seen most, then the rest once each (ties by name).
    for n in range(TOP + 2):
        for _ in range(3 if n == 0 else 1):
            submitted(session, ours, HOUR_START + timedelta(minutes=n), f"d{n:02}.test")
    session.flush()

    seen = activity(session, letter_id=ours.id, window=Window.HOUR, now=NOW)

    assert len(seen.domains) == TOP
    assert [row.key for row in seen.domains] == [f"d{n:02}.test" for n in range(TOP)]


def test_networks_on_the_rise_with_short_labels(
    session: Session, letters: tuple[Letter, Letter]
) -> None:
    ours, theirs = letters
    a, b, c = "a1" * 32, "b2" * 32, "c3" * 32
    usual = HOUR_START - timedelta(days=2)
    # Before: a 1, b 9 (and c older than 7 days: not part of the usual mix).
    submitted(session, ours, usual, source=a)
    for _ in range(9):
        submitted(session, ours, HOUR_START - TICK, source=b)
    submitted(session, ours, HOUR_START - WEEK - TICK, source=c)
    # The window: a 5, b 1, c 2 and 3 without a network recorded.
    for n in range(5):
        submitted(session, ours, HOUR_START + timedelta(minutes=n), source=a)
    submitted(session, ours, HOUR_END - TICK, source=b)
    submitted(session, ours, HOUR_START, source=c)
    submitted(session, ours, HOUR_START + timedelta(minutes=1), source=c)
    for _ in range(3):
        submitted(session, ours, HOUR_START + timedelta(minutes=3))
    # Another letter's flood from b, and a later one from a: neither counts.
    for _ in range(30):
        submitted(session, theirs, HOUR_START + timedelta(minutes=3), source=b)
    submitted(session, ours, HOUR_END, source=a)
    session.flush()

    seen = activity(session, letter_id=ours.id, window=Window.HOUR, now=NOW)

    # Now: a 5/8, c 2/8, b 1/8. Usually: a 1/10, b 9/10, c none.
    assert [row.key for row in seen.networks] == [a, c]
    first, second = seen.networks
    assert (first.label, second.label) == ("a1a1a1a1", "c3c3c3c3")
    assert (first.recent, first.usual) == (5, 1)
    assert first.rise == pytest.approx(5 / 8 - 1 / 10)
    assert (second.recent, second.usual, second.usual_share) == (2, 0, 0)
    assert second.rise == pytest.approx(2 / 8)
    assert seen.submissions_without_network == 3
    assert seen.submitted == 11


def test_refused_attempts_by_kind_in_the_window(
    session: Session, letters: tuple[Letter, Letter]
) -> None:
    ours, theirs = letters
    for _ in range(3):
        refused(session, ours, HOUR_START + timedelta(minutes=2), "rate_limited")
    refused(session, ours, HOUR_START, "honeypot")
    refused(session, ours, HOUR_END - TICK, "too_fast")
    refused(session, ours, HOUR_END - TICK, "honeypot")
    refused(session, ours, HOUR_START - TICK, "too_fast")
    refused(session, ours, HOUR_END, "too_fast")
    refused(session, theirs, HOUR_START + timedelta(minutes=2), "disposable_domain")
    refused(session, None, HOUR_START + timedelta(minutes=2), "rate_limited")
    session.flush()

    hour = activity(session, letter_id=ours.id, window=Window.HOUR, now=NOW)
    assert hour.refused == [("rate_limited", 3), ("honeypot", 2), ("too_fast", 1)]
    assert hour.refused_total == 6
    # The day, [9 March 13:00, 10 March 13:00), takes in both just outside the hour.
    day = activity(session, letter_id=ours.id, window=Window.DAY, now=NOW)
    assert day.refused == [("rate_limited", 3), ("too_fast", 3), ("honeypot", 2)]


def test_a_quiet_letter_has_empty_steps_and_nothing_on_the_rise(
    session: Session, letters: tuple[Letter, Letter]
) -> None:
    ours, theirs = letters
    confirmed(session, theirs, HOUR_START, "busy.test")
    session.flush()
    seen = activity(session, letter_id=ours.id, window=Window.HOUR, now=NOW)
    assert [(step.confirmed, step.submitted) for step in seen.steps] == [(0, 0)] * 60
    assert (seen.domains, seen.networks, seen.refused) == ([], [], [])
    assert (seen.peak, seen.domains_seen, seen.submissions_without_network) == (1, 0, 0)


def test_parse_window() -> None:
    assert parse_window("") is Window.HOUR
    assert parse_window("hour") is Window.HOUR
    assert parse_window("day") is Window.DAY
    with pytest.raises(InvalidInput) as caught:
        parse_window("week")
    assert set(caught.value.fields) == {"window"}
