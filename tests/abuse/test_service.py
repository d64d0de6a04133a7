"""app.abuse.service: a client's keyed source, the sign form's traps, and the record of
trapped and refused attempts (on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import tokens
from app.abuse.models import AbuseEvent
from app.abuse.service import (
    EventKind,
    form_timestamp,
    form_trap,
    network_of,
    record_rate_limited,
    rendered_at,
    source_hash,
)
from app.config import Settings
from app.errors import InvalidInput, LetterNotFound, LetterNotOpen
from app.letters.models import FieldRule, LetterStatus
from app.signatures.models import PendingSignature
from app.signatures.service import sign_letter
from tests.support.config import TEST_SECRET
from tests.support.factories import make_letter, sign, signature_in, tampered

OTHER_SECRET = "another-secret-key-also-long-enough-x"


# --- Sources ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("198.51.100.7", "198.51.100.0/24"),
        ("198.51.100.250", "198.51.100.0/24"),
        ("::ffff:198.51.100.7", "198.51.100.0/24"),  # IPv4-mapped: the IPv4 it is
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"),
        ("2001:DB8:1:ffff::1", "2001:db8:1::/48"),
        ("testclient", "literal:testclient"),
        ("", "literal:"),
    ],
)
def test_a_clients_network_is_its_ipv4_24_or_ipv6_48(ip: str, network: str) -> None:
    assert network_of(ip) == network


def test_the_source_hash_is_a_keyed_hash_of_the_network_never_the_address() -> None:
    first = source_hash(TEST_SECRET, "198.51.100.7")
    assert len(first) == 64 and int(first, 16) >= 0
    assert "198.51.100" not in first
    # One network, one source: the attack view groups an office's or a provider's block.
    assert source_hash(TEST_SECRET, "198.51.100.99") == first
    assert source_hash(TEST_SECRET, "::ffff:198.51.100.1") == first
    assert source_hash(TEST_SECRET, "198.51.101.7") != first
    assert source_hash(TEST_SECRET, "2001:db8:1:2::1") == source_hash(
        TEST_SECRET, "2001:db8:1:ffff::2"
    )
    assert source_hash(TEST_SECRET, "2001:db8:2::1") != source_hash(TEST_SECRET, "2001:db8:1::1")
    # Keyed: another key gives another hash, and it is no bare hash of the network
    # (there are only 2^24 IPv4 /24s: a bare hash would be a lookup table away).
    assert source_hash(OTHER_SECRET, "198.51.100.7") != first
    assert first != hashlib.sha256(b"198.51.100.0/24").hexdigest()
    assert first != hmac.new(TEST_SECRET.encode(), b"198.51.100.0/24", "sha256").hexdigest()


# --- The form's traps ------------------------------------------------------------------


def _trap(**overrides: Any) -> EventKind | None:
    now = time.time()
    values: dict[str, Any] = {
        "honeypot": "",
        "timestamp": form_timestamp(TEST_SECRET, now=now - 10),
        "min_seconds": 2.0,
        "now": now,
    }
    values.update(overrides)
    return form_trap(TEST_SECRET, **values)


def test_a_persons_form_falls_into_no_trap() -> None:
    assert _trap() is None
    # A form left open for days is still a person's (the timestamp never expires).
    three_days_ago = form_timestamp(TEST_SECRET, now=time.time() - 3 * 86400)
    assert _trap(timestamp=three_days_ago) is None


def test_the_honeypot_is_a_trap_whatever_the_time() -> None:
    assert _trap(honeypot="http://spam.example") == EventKind.HONEYPOT
    assert _trap(honeypot="x", min_seconds=0) == EventKind.HONEYPOT


def test_a_form_sent_back_sooner_than_the_minimum_is_too_fast() -> None:
    now = time.time()
    assert _trap(timestamp=form_timestamp(TEST_SECRET, now=now - 1.9), now=now) == (
        EventKind.TOO_FAST
    )
    assert _trap(timestamp=form_timestamp(TEST_SECRET, now=now - 2.0), now=now) is None
    # A render time in the future (another server's clock) is too fast as well.
    assert _trap(timestamp=form_timestamp(TEST_SECRET, now=now + 5), now=now) == (
        EventKind.TOO_FAST
    )


@pytest.mark.parametrize(
    "timestamp",
    [
        "",
        "garbage",
        "x" * 300,
        form_timestamp(OTHER_SECRET, now=time.time() - 60),  # another site's
        tampered(form_timestamp(TEST_SECRET, now=time.time() - 60)),
        tokens.issue(TEST_SECRET, tokens.Purpose.CSRF, int(time.time() * 1000) - 60_000),
        tokens.issue(TEST_SECRET, tokens.Purpose.FORM_RENDERED, "1700000000000"),
        tokens.issue(TEST_SECRET, tokens.Purpose.FORM_RENDERED, True),
    ],
    ids=["none", "garbage", "long", "other-key", "tampered", "other-purpose", "text", "bool"],
)
def test_a_missing_or_foreign_timestamp_is_a_trap(timestamp: str) -> None:
    assert rendered_at(TEST_SECRET, timestamp) is None
    assert _trap(timestamp=timestamp) == EventKind.NO_TIMESTAMP


def test_a_minimum_of_zero_turns_the_timestamp_check_off() -> None:
    assert _trap(timestamp="", min_seconds=0) is None
    assert _trap(timestamp="garbage", min_seconds=0) is None
    assert _trap(timestamp=form_timestamp(TEST_SECRET), min_seconds=0) is None


def test_the_timestamp_holds_the_render_time_to_the_millisecond() -> None:
    token = form_timestamp(TEST_SECRET, now=1_800_000_000.1234)
    assert rendered_at(TEST_SECRET, token) == pytest.approx(1_800_000_000.123)


# --- sign_letter: the source and the traps ----------------------------------------------


def _events(session: Session, **where: Any) -> list[AbuseEvent]:
    query = select(AbuseEvent).filter_by(**where).order_by(AbuseEvent.id)
    return list(session.scalars(query))


def _pending(session: Session, letter_id: int) -> int:
    query = select(func.count()).select_from(PendingSignature).filter_by(letter_id=letter_id)
    return int(session.scalar(query) or 0)


def test_a_submission_keeps_its_networks_source_hash(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    source = source_hash(settings.secret, "198.51.100.7")
    data = signature_in()
    sign_letter(session, slug=letter.slug, data=data, settings=settings, source_hash=source)
    pending = session.scalars(select(PendingSignature).filter_by(letter_id=letter.id)).one()
    assert pending.source_hash == source
    # Without one (the command line, older callers): empty, never an address.
    assert sign(session, letter, settings).source_hash == ""


@pytest.mark.parametrize("kind", list(EventKind))
def test_a_trapped_submission_stores_only_its_event(
    session: Session, settings: Settings, kind: EventKind
) -> None:
    letter = make_letter(session)
    source = source_hash(settings.secret, "203.0.113.9")
    sign_letter(
        session,
        slug=letter.slug,
        data=signature_in(),
        settings=settings,
        source_hash=source,
        trapped=kind,
    )
    assert _pending(session, letter.id) == 0
    [event] = _events(session, letter_id=letter.id)
    assert (event.kind, event.source_hash) == (kind.value, source)


def test_a_trapped_submission_meets_the_same_checks_as_anyones(
    session: Session, settings: Settings
) -> None:
    """Its answer is anyone's: a refusal for the letter's rules, a closed or unknown
    letter, exactly as a person gets them (and no event: nothing would be kept)."""
    strict = make_letter(session, field_organization=FieldRule.REQUIRED)
    closed = make_letter(session, status=LetterStatus.CLOSED)
    trap = EventKind.HONEYPOT
    with pytest.raises(InvalidInput) as refused:
        sign_letter(
            session,
            slug=strict.slug,
            data=signature_in(organization=""),
            settings=settings,
            trapped=trap,
        )
    assert refused.value.fields == {"organization": "required"}
    with pytest.raises(LetterNotOpen):
        sign_letter(session, slug=closed.slug, data=signature_in(), settings=settings, trapped=trap)
    with pytest.raises(LetterNotFound):
        sign_letter(
            session, slug="no-such-letter", data=signature_in(), settings=settings, trapped=trap
        )
    assert _events(session, letter_id=strict.id) == _events(session, letter_id=closed.id) == []


# --- Rate-limit events -----------------------------------------------------------------


def test_a_rate_limit_event_names_its_letter_when_it_has_one(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    ip = "2001:db8:5:6::7"
    for slug in (letter.slug, None, "no-such-letter", "a\x00b", "x" * 500):
        record_rate_limited(session, secret_key=settings.secret, ip=ip, letter_slug=slug)
    source = source_hash(settings.secret, ip)
    events = _events(session, kind="rate_limited", source_hash=source)
    assert [event.letter_id for event in events] == [letter.id, None, None, None, None]
