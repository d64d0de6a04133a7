"""Moderation at the service level, on SQLite and PostgreSQL: the list and its filters,
hiding, removing, restoring, bulk invalidation, comments, and the tally staying exact
through all of it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, utcnow
from app.errors import InvalidInput, InvalidToken, NotFound
from app.letters.models import FieldRule, Letter, LetterTally
from app.letters.service import add_to_tally
from app.organizers.models import AuditEvent
from app.organizers.service import SHELL, Actor
from app.signatures.models import RemovalReason, Signature, SignatureDisplay, SignatureStatus
from app.signatures.moderation import (
    PUBLIC_COMMENTS,
    ModeratedSignature,
    SignatureFilter,
    StatusFilter,
    apply_bulk,
    count_signatures,
    list_signatures,
    parse_as_of,
    parse_filter,
    preview_bulk,
    public_comments,
    remove_signature,
    restore_signature,
    set_comment_approved,
    set_hidden,
    tally,
)
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.organizers import make_organizer

# --- helpers -------------------------------------------------------------------------


def stored_tally(session: Session, letter: Letter) -> int:
    return int(
        session.scalar(select(LetterTally.verified_count).where(LetterTally.letter_id == letter.id))
        or 0
    )


def verified_rows(session: Session, letter: Letter) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter.id, Signature.status == SignatureStatus.VERIFIED)
        )
        or 0
    )


def assert_exact(session: Session, letter: Letter) -> int:
    """The invariant: the counter equals the number of verified rows."""
    count = verified_rows(session, letter)
    assert stored_tally(session, letter) == count
    return count


def confirm(session: Session, letter: Letter, settings: Settings, **fields: Any) -> int:
    """A confirmed signature; returns its list position."""
    signature = sign_and_confirm(session, letter, settings, **fields)
    session.refresh(signature)
    assert signature.position is not None
    return signature.position


def set_fields(session: Session, letter: Letter, position: int, **values: Any) -> None:
    session.execute(
        update(Signature)
        .where(Signature.letter_id == letter.id, Signature.position == position)
        .values(**values)
    )


def status_of(session: Session, letter: Letter, position: int) -> tuple[SignatureStatus, bool]:
    row = session.execute(
        select(Signature.status, Signature.hidden).where(
            Signature.letter_id == letter.id, Signature.position == position
        )
    ).one()
    return row[0], row[1]


def withdraw(session: Session, letter: Letter, position: int) -> bool:
    """What a signer's withdrawal does (the manage page is another issue's): the same
    guarded pattern as moderation, so this test can interleave it."""
    result = session.execute(
        update(Signature)
        .where(
            Signature.letter_id == letter.id,
            Signature.position == position,
            Signature.status == SignatureStatus.VERIFIED,
        )
        .values(status=SignatureStatus.WITHDRAWN)
    )
    changed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if changed:
        add_to_tally(session, letter_id=letter.id, delta=-changed)
    return bool(changed)


def events(session: Session, letter: Letter) -> list[tuple[str, dict[str, Any]]]:
    return [
        (event.action, event.detail)
        for event in session.scalars(
            select(AuditEvent).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
        )
    ]


def positions(rows: list[ModeratedSignature]) -> list[int]:
    return [row.position for row in rows]


# --- Filters -------------------------------------------------------------------------


def test_a_filter_is_parsed_and_normalised() -> None:
    found = parse_filter(
        status="hidden",
        domain="  @Example.ORG ",
        organization=" Acme ",
        name="Ada",
        confirmed_from="2026-11-01",
        confirmed_to="2026-11-02 14:30",
    )
    assert found.status == StatusFilter.HIDDEN
    assert found.domain == "example.org"
    assert found.organization == "Acme"
    assert found.since == datetime(2026, 11, 1, tzinfo=UTC)
    # "to" includes the minute it names.
    assert found.until == datetime(2026, 11, 2, 14, 31, tzinfo=UTC)
    assert found.query() == {
        "status": "hidden",
        "domain": "example.org",
        "organization": "Acme",
        "name": "Ada",
        "from": "2026-11-01",
        "to": "2026-11-02 14:30",
    }
    assert found.bulk_query() == {
        "domain": "example.org",
        "organization": "Acme",
        "from": "2026-11-01",
        "to": "2026-11-02 14:30",
    }
    assert found.narrows


def test_a_date_alone_as_the_end_includes_that_whole_day() -> None:
    found = parse_filter(confirmed_to="2026-11-02")
    assert found.until == datetime(2026, 11, 3, tzinfo=UTC)
    assert parse_filter(confirmed_to="2026-11-02T10:00:05").until == datetime(
        2026, 11, 2, 10, 0, 6, tzinfo=UTC
    )


def test_an_empty_filter_shows_everything_and_cannot_be_bulk_applied() -> None:
    found = parse_filter()
    assert found == SignatureFilter()
    assert found.status == StatusFilter.ALL
    assert not found.narrows
    assert not parse_filter(status="removed", name="Ada").narrows


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"confirmed_from": "yesterday"}, "from"),
        ({"confirmed_from": "2026-02-30"}, "from"),
        ({"confirmed_from": "20261101"}, "from"),
        ({"confirmed_to": "2026-11-01T25:00"}, "to"),
        ({"confirmed_to": "2026-11-01+02:00"}, "to"),
        ({"confirmed_to": "9999-12-31"}, "to"),
        ({"confirmed_from": "2026-11-02", "confirmed_to": "2026-11-01"}, "to"),
        ({"domain": "not a domain"}, "domain"),
        ({"domain": "localhost"}, "domain"),
        ({"domain": "a@b.org"}, "domain"),
        ({"organization": "ab"}, "organization"),
        ({"name": "x" * 201}, "name"),
        ({"name": "Ada\x00"}, "name"),
        ({"status": "deleted"}, "status"),
    ],
)
def test_a_bad_filter_names_the_field(fields: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter(**fields)
    assert set(caught.value.fields) == {field}
    assert caught.value.fields[field]


def test_a_bad_date_says_how_to_write_one() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter(confirmed_from="27/11/2026", confirmed_to="soon")
    assert "YYYY-MM-DD" in caught.value.fields["from"]
    assert "YYYY-MM-DD" in caught.value.fields["to"]


def test_the_preview_moment_is_never_in_the_future() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert parse_as_of("2026-11-27T11:00:00+00:00", now=now) == now - timedelta(hours=1)
    assert parse_as_of("2030-01-01T00:00:00+00:00", now=now) == now
    for bad in ("", "noon", "2026-11-27T11:00:00"):  # naive: refused
        with pytest.raises(InvalidInput):
            parse_as_of(bad, now=now)


# --- The list ------------------------------------------------------------------------


def test_the_list_is_newest_first_with_keyset_pages(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    made = [confirm(session, letter, settings) for _ in range(5)]
    found = SignatureFilter()
    page, after = list_signatures(session, letter_id=letter.id, found=found, limit=2)
    assert positions(page) == made[::-1][:2]
    assert after == made[3]
    page, after = list_signatures(session, letter_id=letter.id, found=found, after=after, limit=2)
    assert positions(page) == [made[2], made[1]]
    page, after = list_signatures(session, letter_id=letter.id, found=found, after=after, limit=2)
    assert positions(page) == [made[0]]
    assert after is None
    assert count_signatures(session, letter_id=letter.id, found=found) == 5


def test_the_list_shows_what_organizers_need_and_no_address(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    public = confirm(
        session,
        letter,
        settings,
        name="Ada Lovelace",
        email="ada@engines.example",
        title="Analyst",
        organization="Engines Ltd",
        city="London",
        contact_ok=True,
    )
    anonymous = confirm(session, letter, settings, display=SignatureDisplay.ANONYMOUS)
    set_fields(session, letter, public, comment="Because.", comment_public_ok=True, version=2)
    rows, _ = list_signatures(session, letter_id=letter.id, found=SignatureFilter())
    by_position = {row.position: row for row in rows}
    ada = by_position[public]
    assert (ada.name, ada.title, ada.organization, ada.city) == (
        "Ada Lovelace",
        "Analyst",
        "Engines Ltd",
        "London",
    )
    assert ada.email_domain == "engines.example"
    assert ada.version == 2
    assert (ada.comment, ada.comment_public_ok, ada.comment_approved) == ("Because.", True, False)
    assert ada.state == StatusFilter.VERIFIED
    assert ada.confirmed_at.tzinfo is not None
    # The address is kept (contact_ok), yet the moderation view has no field for it.
    assert session.scalar(
        select(Signature.email).where(
            Signature.letter_id == letter.id, Signature.position == public
        )
    ) == ("ada@engines.example")
    assert not hasattr(ada, "email")
    nobody = by_position[anonymous]
    assert nobody.anonymous and nobody.name is None
    assert (nobody.title, nobody.organization, nobody.city, nobody.email_domain) == ("",) * 4


def test_filters_by_status(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    listed, hidden, removed, withdrawn = (confirm(session, letter, settings) for _ in range(4))
    set_hidden(session, actor=SHELL, letter_id=letter.id, position=hidden, hidden=True)
    remove_signature(
        session, actor=SHELL, letter_id=letter.id, position=removed, reason=RemovalReason.BOT
    )
    withdraw(session, letter, withdrawn)
    expected = {
        StatusFilter.ALL: [withdrawn, removed, hidden, listed],
        StatusFilter.VERIFIED: [listed],
        StatusFilter.HIDDEN: [hidden],
        StatusFilter.REMOVED: [removed],
        StatusFilter.WITHDRAWN: [withdrawn],
    }
    for state, wanted in expected.items():
        rows, _ = list_signatures(session, letter_id=letter.id, found=SignatureFilter(status=state))
        assert positions(rows) == wanted, state
        assert all(row.state == state for row in rows if state != StatusFilter.ALL)


def test_filters_by_domain_exactly_and_by_text_ignoring_case(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    other = make_letter(session)
    acme = confirm(session, letter, settings, email="a@acme.example", organization="ACME Rockets")
    sub = confirm(session, letter, settings, email="b@mail.acme.example", organization="Initech")
    ada = confirm(session, letter, settings, name="Ada Byron", organization="Acme rockets Ltd")
    confirm(session, letter, settings, display=SignatureDisplay.ANONYMOUS, email="c@acme.example")
    confirm(session, other, settings, email="d@acme.example", organization="Acme")

    def matching(**fields: str) -> list[int]:
        rows, _ = list_signatures(session, letter_id=letter.id, found=parse_filter(**fields))
        return positions(rows)

    # Exact: not a subdomain; the anonymous signer kept no domain; the other letter's
    # signer is not this letter's.
    assert matching(domain="ACME.example") == [acme]
    assert matching(domain="mail.acme.example") == [sub]
    assert matching(organization="acme rockets") == [ada, acme]
    assert matching(organization="ROCKETS LTD") == [ada]
    assert matching(name="ada byr") == [ada]
    assert matching(name="ada", organization="initech") == []
    assert matching(organization='"; DROP') == []  # quotes are text, not syntax
    assert matching(organization="100%") == []


def test_filters_by_time_window(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    early, middle, late = (confirm(session, letter, settings) for _ in range(3))
    set_fields(session, letter, early, verified_at=datetime(2026, 11, 1, 23, 59, tzinfo=UTC))
    set_fields(session, letter, middle, verified_at=datetime(2026, 11, 2, 10, 0, tzinfo=UTC))
    set_fields(session, letter, late, verified_at=datetime(2026, 11, 3, 0, 0, tzinfo=UTC))

    def matching(**fields: str) -> list[int]:
        rows, _ = list_signatures(session, letter_id=letter.id, found=parse_filter(**fields))
        return positions(rows)

    assert matching(confirmed_from="2026-11-02", confirmed_to="2026-11-02") == [middle]
    assert matching(confirmed_from="2026-11-02") == [late, middle]
    assert matching(confirmed_to="2026-11-02") == [middle, early]
    assert matching(confirmed_from="2026-11-02 10:00", confirmed_to="2026-11-02 10:00") == [middle]
    assert matching(confirmed_from="2026-11-02 10:01") == [late]


# --- One signature -------------------------------------------------------------------


def test_hiding_keeps_the_count_and_leaves_the_public_list(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    position = confirm(session, letter, settings)
    actor = Actor(make_organizer(session, "editor@example.org"))
    assert set_hidden(session, actor=actor, letter_id=letter.id, position=position, hidden=True)
    assert not set_hidden(session, actor=actor, letter_id=letter.id, position=position, hidden=True)
    assert status_of(session, letter, position) == (SignatureStatus.VERIFIED, True)
    assert assert_exact(session, letter) == 1
    assert set_hidden(session, actor=actor, letter_id=letter.id, position=position, hidden=False)
    assert status_of(session, letter, position) == (SignatureStatus.VERIFIED, False)
    assert events(session, letter) == [
        ("signature.hide", {"position": position}),
        ("signature.unhide", {"position": position}),
    ]
    event = session.scalars(select(AuditEvent).where(AuditEvent.letter_id == letter.id)).first()
    assert event is not None and event.actor == "editor@example.org"


def test_removing_and_restoring_move_the_tally_once(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    position = confirm(session, letter, settings)
    confirm(session, letter, settings)
    assert assert_exact(session, letter) == 2
    args: dict[str, Any] = {"actor": SHELL, "letter_id": letter.id, "position": position}
    assert remove_signature(session, reason=RemovalReason.DUPLICATE, **args)
    assert not remove_signature(session, reason=RemovalReason.BOT, **args)  # double click
    assert assert_exact(session, letter) == 1
    reason = session.scalar(
        select(Signature.removed_reason).where(
            Signature.letter_id == letter.id, Signature.position == position
        )
    )
    assert reason == RemovalReason.DUPLICATE  # the second click changed nothing
    assert restore_signature(session, **args)
    assert not restore_signature(session, **args)
    assert assert_exact(session, letter) == 2
    assert status_of(session, letter, position) == (SignatureStatus.VERIFIED, False)
    assert (
        session.scalar(
            select(Signature.removed_reason).where(
                Signature.letter_id == letter.id, Signature.position == position
            )
        )
        is None
    )
    assert [action for action, _ in events(session, letter)] == [
        "signature.remove",
        "signature.restore",
    ]
    assert events(session, letter)[0][1] == {"position": position, "reason": "duplicate"}


def test_a_withdrawn_signature_is_neither_removed_nor_restored(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    position = confirm(session, letter, settings)
    assert withdraw(session, letter, position)
    args: dict[str, Any] = {"actor": SHELL, "letter_id": letter.id, "position": position}
    assert not remove_signature(session, reason=RemovalReason.BOT, **args)
    assert not restore_signature(session, **args)
    assert status_of(session, letter, position)[0] == SignatureStatus.WITHDRAWN
    assert assert_exact(session, letter) == 0
    assert events(session, letter) == []


def test_no_signature_there_is_not_found(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    other = make_letter(session)
    position = confirm(session, other, settings)
    calls: list[Callable[[], object]] = [
        lambda: set_hidden(
            session, actor=SHELL, letter_id=letter.id, position=position, hidden=True
        ),
        lambda: remove_signature(
            session, actor=SHELL, letter_id=letter.id, position=position, reason=RemovalReason.BOT
        ),
        lambda: restore_signature(session, actor=SHELL, letter_id=letter.id, position=position),
        lambda: set_comment_approved(
            session, actor=SHELL, letter_id=letter.id, position=position, approved=True
        ),
        lambda: remove_signature(
            session, actor=SHELL, letter_id=letter.id, position=2**40, reason=RemovalReason.BOT
        ),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    assert status_of(session, other, position) == (SignatureStatus.VERIFIED, False)
    assert assert_exact(session, other) == 1


# --- Bulk invalidation -----------------------------------------------------------------


def test_bulk_removes_exactly_what_the_preview_counted(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    bots = [confirm(session, letter, settings, email=f"bot{i}@spam.example") for i in range(4)]
    keep = confirm(session, letter, settings, email="real@example.org")
    hidden_bot = bots[0]
    set_hidden(session, actor=SHELL, letter_id=letter.id, position=hidden_bot, hidden=True)
    already = bots[1]
    remove_signature(
        session, actor=SHELL, letter_id=letter.id, position=already, reason=RemovalReason.DUPLICATE
    )
    found = parse_filter(domain="spam.example")
    preview = preview_bulk(session, letter_id=letter.id, found=found)
    assert preview.count == 3  # counted ones only: hidden counts, removed does not
    assert positions(preview.examples) == [bots[3], bots[2], bots[0]]
    assert preview.as_of <= utcnow()

    owner = Actor(make_organizer(session, "owner@example.org"))
    result = apply_bulk(
        session,
        actor=owner,
        letter_id=letter.id,
        found=found,
        as_of=preview.as_of,
        reason=RemovalReason.BOT,
        expected=preview.count,
    )
    assert (result.removed, result.previewed) == (3, 3)
    assert assert_exact(session, letter) == 1
    assert status_of(session, letter, keep)[0] == SignatureStatus.VERIFIED
    reasons = session.execute(
        select(Signature.position, Signature.removed_reason).where(
            Signature.letter_id == letter.id, Signature.status == SignatureStatus.REMOVED
        )
    ).all()
    assert dict(reasons) == {
        bots[0]: RemovalReason.BOT,
        bots[1]: RemovalReason.DUPLICATE,  # removed before: left alone
        bots[2]: RemovalReason.BOT,
        bots[3]: RemovalReason.BOT,
    }
    ((action, detail),) = events(session, letter)[-1:]
    assert action == "signatures.bulk_remove"
    assert detail == {
        "filter": {"domain": "spam.example", "as_of": preview.as_of.isoformat()},
        "reason": "bot",
        "removed": 3,
        "previewed": 3,
    }
    # Applying again removes nothing more.
    again = apply_bulk(session, actor=owner, letter_id=letter.id, found=found,
                       as_of=utcnow(), reason=RemovalReason.BOT, expected=0)  # fmt: skip
    assert again.removed == 0
    assert assert_exact(session, letter) == 1


def test_bulk_never_touches_signatures_confirmed_after_the_preview(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    first = confirm(session, letter, settings, email="a@spam.example")
    found = parse_filter(domain="spam.example")
    preview = preview_bulk(session, letter_id=letter.id, found=found)
    later = confirm(session, letter, settings, email="b@spam.example")
    set_fields(session, letter, later, verified_at=preview.as_of + timedelta(seconds=1))
    result = apply_bulk(session, actor=SHELL, letter_id=letter.id, found=found,
                        as_of=preview.as_of, reason=RemovalReason.BOT,
                        expected=preview.count)  # fmt: skip
    assert (result.removed, preview.count) == (1, 1)
    assert status_of(session, letter, first)[0] == SignatureStatus.REMOVED
    assert status_of(session, letter, later)[0] == SignatureStatus.VERIFIED
    assert assert_exact(session, letter) == 1


def test_bulk_applies_fewer_than_previewed_and_says_so(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    made = [confirm(session, letter, settings, organization="Bot Farm Inc") for _ in range(3)]
    found = parse_filter(organization="bot farm")
    preview = preview_bulk(session, letter_id=letter.id, found=found)
    withdraw(session, letter, made[0])  # left the count in between
    result = apply_bulk(session, actor=SHELL, letter_id=letter.id, found=found,
                        as_of=preview.as_of, reason=RemovalReason.BOT,
                        expected=preview.count)  # fmt: skip
    assert (result.removed, result.previewed) == (2, 3)
    assert assert_exact(session, letter) == 0
    assert status_of(session, letter, made[0])[0] == SignatureStatus.WITHDRAWN


def test_bulk_refuses_more_than_previewed_and_changes_nothing(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    made = [confirm(session, letter, settings, email=f"x{i}@spam.example") for i in range(3)]
    remove_signature(
        session, actor=SHELL, letter_id=letter.id, position=made[0], reason=RemovalReason.BOT
    )
    found = parse_filter(domain="spam.example")
    preview = preview_bulk(session, letter_id=letter.id, found=found)
    assert preview.count == 2
    restore_signature(session, actor=SHELL, letter_id=letter.id, position=made[0])
    before = events(session, letter)
    with pytest.raises(InvalidInput) as caught:
        apply_bulk(session, actor=SHELL, letter_id=letter.id, found=found,
                   as_of=preview.as_of, reason=RemovalReason.BOT,
                   expected=preview.count)  # fmt: skip
    assert caught.value.fields == {"expected": "changed"}
    assert "3" in caught.value.detail and "2" in caught.value.detail
    assert [status_of(session, letter, p)[0] for p in made] == [SignatureStatus.VERIFIED] * 3
    assert assert_exact(session, letter) == 3
    assert events(session, letter) == before
    # The session is still usable: a fresh preview, then applying it, works.
    fresh = preview_bulk(session, letter_id=letter.id, found=found)
    assert fresh.count == 3
    apply_bulk(session, actor=SHELL, letter_id=letter.id, found=found, as_of=fresh.as_of,
               reason=RemovalReason.BOT, expected=fresh.count)  # fmt: skip
    assert assert_exact(session, letter) == 0


def test_bulk_needs_a_narrowing_filter(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    confirm(session, letter, settings)
    for found in (SignatureFilter(), parse_filter(status="verified", name="Signer")):
        with pytest.raises(InvalidInput) as caught:
            preview_bulk(session, letter_id=letter.id, found=found)
        assert "filter" in caught.value.fields
        with pytest.raises(InvalidInput):
            apply_bulk(session, actor=SHELL, letter_id=letter.id, found=found,
                       as_of=utcnow(), reason=RemovalReason.BOT, expected=1)  # fmt: skip
    assert assert_exact(session, letter) == 1


def test_bulk_by_time_window_hits_anonymous_signers_too(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    anonymous = confirm(session, letter, settings, display=SignatureDisplay.ANONYMOUS)
    public = confirm(session, letter, settings)
    set_fields(session, letter, anonymous, verified_at=datetime(2026, 11, 2, 3, tzinfo=UTC))
    set_fields(session, letter, public, verified_at=datetime(2026, 11, 1, 3, tzinfo=UTC))
    found = parse_filter(confirmed_from="2026-11-02 00:00", confirmed_to="2026-11-02 05:59")
    preview = preview_bulk(session, letter_id=letter.id, found=found)
    assert positions(preview.examples) == [anonymous]
    assert preview.examples[0].name is None
    apply_bulk(session, actor=SHELL, letter_id=letter.id, found=found, as_of=preview.as_of,
               reason=RemovalReason.BOT, expected=preview.count)  # fmt: skip
    assert status_of(session, letter, anonymous)[0] == SignatureStatus.REMOVED
    assert assert_exact(session, letter) == 1


# --- The tally through everything ------------------------------------------------------


def test_the_tally_stays_exact_through_any_sequence(session: Session, settings: Settings) -> None:
    """After each step: LetterTally.verified_count == COUNT(*) of verified signatures."""
    letter = make_letter(session)
    other = make_letter(session)
    confirm(session, other, settings)
    a = confirm(session, letter, settings, email="a@one.example")
    assert_exact(session, letter)
    b = confirm(session, letter, settings, email="b@bots.example")
    c = confirm(session, letter, settings, email="c@bots.example")
    d = confirm(session, letter, settings, email="d@one.example")
    assert assert_exact(session, letter) == 4
    args: dict[str, Any] = {"actor": SHELL, "letter_id": letter.id}

    def resign_removed(email: str) -> None:
        with pytest.raises(InvalidToken):
            sign_and_confirm(session, letter, settings, email=email)

    def remove(position: int, reason: RemovalReason = RemovalReason.BOT) -> bool:
        return remove_signature(session, position=position, reason=reason, **args)

    steps: list[tuple[str, Any]] = [
        ("hide a", lambda: set_hidden(session, position=a, hidden=True, **args)),
        ("remove a", lambda: remove(a)),
        ("remove a again", lambda: remove(a)),
        ("restore a", lambda: restore_signature(session, position=a, **args)),
        ("restore a again", lambda: restore_signature(session, position=a, **args)),
        ("withdraw d", lambda: withdraw(session, letter, d)),
        ("remove d (withdrawn)", lambda: remove(d)),
        ("restore d (withdrawn)", lambda: restore_signature(session, position=d, **args)),
        ("remove c", lambda: remove(c, RemovalReason.INVALID)),
        (
            "bulk bots",
            lambda: apply_bulk(
                session, found=parse_filter(domain="bots.example"), as_of=utcnow(),
                reason=RemovalReason.BOT, expected=1, **args,
            ),
        ),
        ("restore c", lambda: restore_signature(session, position=c, **args)),
        ("sign again as d", lambda: confirm(session, letter, settings, email="d@one.example")),
        ("sign e", lambda: confirm(session, letter, settings, email="e@one.example")),
        ("sign again as b (removed: not counted)", lambda: resign_removed("b@bots.example")),
        (
            "bulk everything since long ago",
            lambda: apply_bulk(
                session, found=parse_filter(confirmed_from="2000-01-01"), as_of=utcnow(),
                reason=RemovalReason.BOT, expected=10, **args,
            ),
        ),
        ("restore b", lambda: restore_signature(session, position=b, **args)),
        ("unhide a", lambda: set_hidden(session, position=a, hidden=False, **args)),
    ]  # fmt: skip
    for name, step in steps:
        step()
        count = verified_rows(session, letter)
        assert stored_tally(session, letter) == count, name
        assert tally(session, letter_id=letter.id) == count, name
    assert verified_rows(session, letter) == 1  # b, restored
    assert assert_exact(session, other) == 1


@pytest.mark.parametrize("operation", ["remove", "restore", "bulk"])
def test_racing_moderators_count_once(
    clean_database: Database, settings: Settings, operation: str
) -> None:
    """Several moderators (each their own transaction) click at once: the tally moves
    once."""
    with clean_database.write() as session:
        letter = make_letter(session)
        positions_made = [confirm(session, letter, settings, email=f"r{i}@race.example")
                          for i in range(3)]  # fmt: skip
        if operation == "restore":
            for position in positions_made:
                remove_signature(session, actor=SHELL, letter_id=letter.id, position=position,
                                 reason=RemovalReason.BOT)  # fmt: skip
        as_of = utcnow()
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def click() -> None:
        try:
            start.wait(timeout=10)
            with clean_database.write() as session:
                args: dict[str, Any] = {"actor": SHELL, "letter_id": letter.id}
                if operation == "remove":
                    remove_signature(session, position=positions_made[0],
                                     reason=RemovalReason.BOT, **args)  # fmt: skip
                elif operation == "restore":
                    restore_signature(session, position=positions_made[0], **args)
                else:
                    apply_bulk(session, found=parse_filter(domain="race.example"), as_of=as_of,
                               reason=RemovalReason.BOT, expected=3, **args)  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with clean_database.read() as session:
        count = assert_exact(session, letter)
        assert count == {"remove": 2, "restore": 1, "bulk": 0}[operation]
        changes = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.letter_id == letter.id)
        )
        # One line per real change: the clicks that changed nothing left none (a bulk
        # that removed nothing still records that it was applied).
        assert changes == {"remove": 1, "restore": 4, "bulk": 4}[operation]


# --- Comments --------------------------------------------------------------------------


def test_only_agreed_comments_can_be_approved(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    agreed = confirm(session, letter, settings)
    private = confirm(session, letter, settings)
    empty = confirm(session, letter, settings)
    set_fields(session, letter, agreed, comment="For my kids.", comment_public_ok=True)
    set_fields(session, letter, private, comment="Private reasons.", comment_public_ok=False)
    set_fields(session, letter, empty, comment="", comment_public_ok=True)
    args: dict[str, Any] = {"actor": SHELL, "letter_id": letter.id}
    assert set_comment_approved(session, position=agreed, approved=True, **args)
    assert not set_comment_approved(session, position=agreed, approved=True, **args)
    for position in (private, empty):
        with pytest.raises(InvalidInput):
            set_comment_approved(session, position=position, approved=True, **args)
    approved = dict(
        session.execute(
            select(Signature.position, Signature.comment_approved).where(
                Signature.letter_id == letter.id
            )
        ).all()
    )
    assert approved == {agreed: True, private: False, empty: False}
    assert set_comment_approved(session, position=agreed, approved=False, **args)
    assert [action for action, _ in events(session, letter)] == [
        "comment.approve",
        "comment.unapprove",
    ]


def test_public_comments_are_approved_counted_listed_and_newest_first(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    assert public_comments(session, letter_id=letter.id) == []
    first = confirm(session, letter, settings, name="Grace Hopper")
    anonymous = confirm(session, letter, settings, display=SignatureDisplay.ANONYMOUS)
    hidden = confirm(session, letter, settings)
    removed = confirm(session, letter, settings)
    unapproved = confirm(session, letter, settings)
    for position in (first, anonymous, hidden, removed, unapproved):
        set_fields(session, letter, position, comment=f"Reason {position}",
                   comment_public_ok=True)  # fmt: skip
    set_fields(session, letter, first, verified_at=datetime(2026, 11, 2, 23, 30, tzinfo=UTC))
    args: dict[str, Any] = {"actor": SHELL, "letter_id": letter.id}
    for position in (first, anonymous, hidden, removed):
        set_comment_approved(session, position=position, approved=True, **args)
    set_hidden(session, position=hidden, hidden=True, **args)
    remove_signature(session, position=removed, reason=RemovalReason.BOT, **args)
    comments = public_comments(session, letter_id=letter.id)
    assert [(c.name, c.comment) for c in comments] == [
        (None, f"Reason {anonymous}"),
        ("Grace Hopper", f"Reason {first}"),
    ]
    assert comments[1].signed_on == date(2026, 11, 2)
    # A signer who takes their consent back (if that ever becomes possible) disappears.
    set_fields(session, letter, first, comment_public_ok=False)
    assert [c.comment for c in public_comments(session, letter_id=letter.id)] == [
        f"Reason {anonymous}"
    ]


def test_public_comments_are_limited(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    made = [confirm(session, letter, settings) for _ in range(PUBLIC_COMMENTS + 2)]
    session.execute(
        update(Signature)
        .where(Signature.letter_id == letter.id)
        .values(comment="Yes.", comment_public_ok=True, comment_approved=True)
    )
    assert len(public_comments(session, letter_id=letter.id)) == PUBLIC_COMMENTS
    assert len(public_comments(session, letter_id=letter.id, limit=3)) == 3
    assert len(made) == PUBLIC_COMMENTS + 2


def test_comments_from_the_sign_form_reach_moderation_and_after_approval_the_public(
    session: Session, settings: Settings
) -> None:
    """Through the real signing loop: what signers wrote and agreed to."""
    letter = make_letter(session, field_comment=FieldRule.OPTIONAL, version=2)
    shown = confirm(session, letter, settings, name="Grace Hopper",
                    comment="For the next generation.", comment_public_ok=True)  # fmt: skip
    quiet = confirm(session, letter, settings, display=SignatureDisplay.ANONYMOUS,
                    comment="I would lose my job.", comment_public_ok=True)  # fmt: skip
    private = confirm(session, letter, settings, comment="Just for you.")
    rows, _ = list_signatures(session, letter_id=letter.id, found=SignatureFilter())
    by_position = {row.position: row for row in rows}
    assert (by_position[shown].comment, by_position[shown].comment_public_ok) == (
        "For the next generation.",
        True,
    )
    assert by_position[shown].version == 2
    assert by_position[quiet].name is None and by_position[quiet].comment_public_ok
    assert (by_position[private].comment, by_position[private].comment_public_ok) == (
        "Just for you.",
        False,
    )
    assert public_comments(session, letter_id=letter.id) == []  # none until approved
    args: dict[str, Any] = {"actor": SHELL, "letter_id": letter.id}
    for position in (shown, quiet):
        set_comment_approved(session, position=position, approved=True, **args)
    with pytest.raises(InvalidInput):
        set_comment_approved(session, position=private, approved=True, **args)
    assert [(c.name, c.comment) for c in public_comments(session, letter_id=letter.id)] == [
        (None, "I would lose my job."),
        ("Grace Hopper", "For the next generation."),
    ]
