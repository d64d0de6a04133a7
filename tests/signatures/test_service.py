"""The signing loop at the service level, on SQLite and PostgreSQL.

Each test runs in a rolled-back transaction (the `session` fixture)."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import tokens
from app.config import Settings
from app.db import Database, utcnow
from app.errors import InvalidInput, InvalidToken, LetterNotFound, LetterNotOpen
from app.letters.models import Letter, LetterStatus, LetterTally
from app.letters.service import add_to_tally, get_public_letter
from app.mail.models import OutboxEmail
from app.signatures.addresses import email_hash
from app.signatures.models import (
    PendingSignature,
    PendingState,
    Signature,
    SignatureDisplay,
    SignatureStatus,
)
from app.signatures.schemas import PublicSignature
from app.signatures.service import (
    decode_cursor,
    encode_cursor,
    list_public_signatures,
    notify_pending,
    read_verification,
    recent_public_signers,
    sign_letter,
    verify_signature,
)
from tests.support.config import make_settings
from tests.support.factories import (
    make_letter,
    sign,
    sign_and_confirm,
    signature_in,
    tampered,
    verify_token,
)

# --- helpers -------------------------------------------------------------------------


def outbox_to(session: Session, settings: Settings, letter: Letter, address: str) -> list[Any]:
    """(kind, text body) of the emails queued for any spelling of `address`, oldest first."""
    wanted = email_hash(settings.secret, letter.id, address)
    return [
        (email.kind, email.text_body)
        for email in session.scalars(select(OutboxEmail).order_by(OutboxEmail.id))
        if email.to_address is not None
        and email_hash(settings.secret, letter.id, email.to_address) == wanted
    ]


def outbox_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OutboxEmail)) or 0


def pending_count(session: Session, letter: Letter) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(PendingSignature)
            .where(PendingSignature.letter_id == letter.id)
        )
        or 0
    )


def signatures_of(session: Session, letter: Letter) -> list[Signature]:
    return list(
        session.scalars(
            select(Signature).where(Signature.letter_id == letter.id).order_by(Signature.id)
        )
    )


def tally(session: Session, letter: Letter) -> int:
    """The stored counter, read straight from the table."""
    value = session.scalar(
        select(LetterTally.verified_count).where(LetterTally.letter_id == letter.id)
    )
    assert value is not None
    return value


def withdraw(session: Session, signature: Signature) -> None:
    """What withdrawing will do (a later issue): the status, and the tally, together."""
    signature.status = SignatureStatus.WITHDRAWN
    add_to_tally(session, letter_id=signature.letter_id, delta=-1)
    session.flush()


def fresh(session: Session, row: PendingSignature) -> PendingSignature:
    """The row as the database holds it now."""
    session.expire(row)
    return session.get_one(PendingSignature, row.id)


def token_in(body: str, settings: Settings) -> str:
    match = re.search(re.escape(settings.base_url) + r"/verify/([A-Za-z0-9_\-.]+)", body)
    assert match, f"no verify link under {settings.base_url} in {body!r}"
    return match.group(1)


def issued_ago(
    monkeypatch: pytest.MonkeyPatch, seconds: int, settings: Settings, payload: str
) -> str:
    """A verify token whose timestamp lies `seconds` in the past."""
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - seconds)
        return tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, payload)


# --- signing -------------------------------------------------------------------------


def test_sign_records_the_submission_and_the_worker_sends_its_link(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url, base_url="https://letters.example.org/")
    letter = make_letter(session, title="Cancel the contract")
    before = outbox_count(session)

    pending = sign(session, letter, settings, email="Alice@Example.org", contact_ok=False)

    assert pending.state == PendingState.WAITING
    assert pending.email == "Alice@example.org"  # kept to send the link
    assert pending.email_hash == email_hash(settings.secret, letter.id, "alice@example.org")
    assert pending.email_domain == "example.org"
    assert signatures_of(session, letter) == []
    assert tally(session, letter) == 0
    assert outbox_count(session) == before  # the request itself queues nothing

    assert notify_pending(session, settings=settings) == 1

    [(kind, body)] = outbox_to(session, settings, letter, "alice@example.org")
    assert kind == "verify"
    assert "https://letters.example.org/verify/" in body  # built from BASE_URL
    token = token_in(body, settings)
    assert tokens.read(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, token) == (
        pending.public_id
    )
    row = fresh(session, pending)
    assert row.state == PendingState.SENT
    assert row.email is None  # the outbox holds it until it is sent; no consent to keep it
    assert row.notified_at is not None


def test_the_submission_and_its_email_belong_to_the_callers_transaction(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    before = outbox_count(session)
    savepoint = session.begin_nested()
    sign(session, letter, settings, email="rolled@example.org")
    notify_pending(session, settings=settings)
    savepoint.rollback()
    assert outbox_count(session) == before
    assert pending_count(session, letter) == 0


def test_each_submission_is_its_own_version_with_its_own_link(
    session: Session, settings: Settings
) -> None:
    """A later submission for the same address never rewrites what an earlier link
    confirms: an attacker who knows the victim's address cannot change what the victim
    is about to confirm."""
    letter = make_letter(session)
    victim = sign(
        session, letter, settings, email="victim@example.org", name="Quiet Person",
        display=SignatureDisplay.ANONYMOUS, city="", organization="",
    )  # fmt: skip
    attacker = sign(
        session, letter, settings, email="Victim+x@Example.org", name="Quiet Person",
        display=SignatureDisplay.PUBLIC, city="Springfield", organization="Acme Defense",
        contact_ok=True,
    )  # fmt: skip
    assert attacker.id != victim.id and attacker.public_id != victim.public_id
    notify_pending(session, settings=settings)
    links = [token_in(body, settings) for _, body in outbox_to(session, settings, letter,
                                                                "victim@example.org")]  # fmt: skip
    assert len(links) == 2

    # What the victim's link shows is what the victim sent, not the later submission.
    shown = read_verification(session, token=links[0], settings=settings)
    assert shown.pending.display == SignatureDisplay.ANONYMOUS
    assert (shown.pending.city, shown.pending.contact_ok) == ("", False)

    verify_signature(session, token=links[0], settings=settings)
    [signature] = signatures_of(session, letter)
    assert signature.display == SignatureDisplay.ANONYMOUS
    assert (signature.name, signature.organization, signature.city) == ("", "", "")
    assert (signature.email, signature.contact_ok) == (None, False)
    assert tally(session, letter) == 1

    # The attacker's version can no longer be confirmed, and its fields are gone.
    later = verify_signature(session, token=links[1], settings=settings)
    assert later.already
    assert tally(session, letter) == 1
    other = fresh(session, attacker)
    assert (other.name, other.city, other.organization, other.email) == ("", "", "", None)
    assert signatures_of(session, letter)[0].display == SignatureDisplay.ANONYMOUS


def test_signing_again_when_confirmed_sends_already_signed(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(
        session, letter, settings, email="first.last@gmail.com", name="Real Name"
    )
    before = (signature.name, signature.verified_at, signature.position)

    impostor = sign(
        session, letter, settings, email="FirstLast+again@googlemail.com", name="Impostor",
        display=SignatureDisplay.ANONYMOUS, contact_ok=True,
    )  # fmt: skip
    notify_pending(session, settings=settings)

    [after] = signatures_of(session, letter)
    assert (after.name, after.verified_at, after.position) == before
    assert after.email is None  # no address comes back with a second attempt
    assert tally(session, letter) == 1
    kinds = [kind for kind, _ in outbox_to(session, settings, letter, "firstlast@gmail.com")]
    assert kinds == ["verify", "already_signed"]
    _, body = outbox_to(session, settings, letter, "firstlast@gmail.com")[1]
    assert "/verify/" not in body
    row = fresh(session, impostor)
    assert (row.name, row.email, row.state) == ("", None, PendingState.SENT)


def test_emails_per_address_are_capped_per_window_and_the_newest_waits(
    session: Session, settings: Settings
) -> None:
    """The cap limits emails, never signing: past it the newest submission waits for
    the window instead of being dropped, and older waiting ones give way to it."""
    cap, window = settings.email_cap
    assert (cap, window) == (5, timedelta(hours=1))  # RATE_LIMIT_EMAILS's default
    letter = make_letter(session)
    flood = [sign(session, letter, settings, email="target@example.org", name=f"Attempt {n}")
             for n in range(cap + 3)]  # fmt: skip
    now = utcnow()
    notify_pending(session, settings=settings, now=now)
    assert len(outbox_to(session, settings, letter, "target@example.org")) == cap
    states = [fresh(session, row).state for row in flood]
    assert states == [PendingState.SENT] * cap + [PendingState.SKIPPED] * 2 + [PendingState.WAITING]

    # Later in the window, nothing more goes out.
    notify_pending(session, settings=settings, now=now + window / 2)
    assert len(outbox_to(session, settings, letter, "target@example.org")) == cap

    # When the window has passed, the newest submission gets its link.
    notify_pending(session, settings=settings, now=now + window + timedelta(seconds=1))
    emails = outbox_to(session, settings, letter, "target@example.org")
    assert len(emails) == cap + 1
    newest = read_verification(session, token=token_in(emails[-1][1], settings), settings=settings)
    assert newest.pending.name == f"Attempt {cap + 2}"


def _cap_edge(session: Session, settings: Settings, cap: int, window: timedelta) -> None:
    """The cap-th email of a window goes, the next waits exactly until the first one of
    the window ages out of it."""
    letter = make_letter(session)
    address = "edge@example.org"
    start = utcnow() + timedelta(minutes=1)  # after every submission below is due
    for n in range(cap):
        sign(session, letter, settings, email=address, name=f"Sent {n}")
        notify_pending(session, settings=settings, now=start + timedelta(seconds=n))
    assert len(outbox_to(session, settings, letter, address)) == cap  # the last one went
    over = sign(session, letter, settings, email=address, name="Over the cap")
    notify_pending(session, settings=settings, now=start + timedelta(seconds=cap))
    held = fresh(session, over)
    assert held.state == PendingState.WAITING
    assert len(outbox_to(session, settings, letter, address)) == cap
    assert held.due_at == start + window  # when the first email leaves the window

    notify_pending(session, settings=settings, now=start + window - timedelta(seconds=1))
    assert fresh(session, over).state == PendingState.WAITING
    notify_pending(session, settings=settings, now=start + window + timedelta(seconds=1))
    assert fresh(session, over).state == PendingState.SENT
    assert len(outbox_to(session, settings, letter, address)) == cap + 1


def test_the_fifth_email_goes_and_the_sixth_waits_by_default(
    session: Session, settings: Settings
) -> None:
    _cap_edge(session, settings, 5, timedelta(hours=1))


def test_the_email_cap_follows_rate_limit_emails(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url, rate_limit_emails="2/10 minutes")
    assert settings.email_cap == (2, timedelta(minutes=10))
    _cap_edge(session, settings, 2, timedelta(minutes=10))


def test_nobody_can_lock_a_person_out_of_signing(session: Session, settings: Settings) -> None:
    """An attacker uses up the cap with the victim's address; the victim signs after
    that, and the victim's own submission is the one whose link goes out next."""
    letter = make_letter(session)
    cap, window = settings.email_cap
    for n in range(cap + 2):
        sign(session, letter, settings, email="victim@example.org", name=f"Fake {n}",
             display=SignatureDisplay.PUBLIC, contact_ok=True)  # fmt: skip
    now = utcnow()
    notify_pending(session, settings=settings, now=now)
    mine = sign(session, letter, settings, email="victim@example.org", name="The Victim",
                display=SignatureDisplay.ANONYMOUS)  # fmt: skip
    notify_pending(session, settings=settings, now=now + timedelta(minutes=1))
    assert fresh(session, mine).state == PendingState.WAITING

    notify_pending(session, settings=settings, now=now + window + timedelta(minutes=1))
    body = outbox_to(session, settings, letter, "victim@example.org")[-1][1]
    found = verify_signature(session, token=token_in(body, settings), settings=settings)
    assert found.submission_id == mine.id
    [signature] = signatures_of(session, letter)
    assert signature.display == SignatureDisplay.ANONYMOUS
    assert tally(session, letter) == 1


def test_a_removed_signature_gets_no_email(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(session, letter, settings, email="removed@example.org")
    signature.status = SignatureStatus.REMOVED
    session.flush()
    again = sign(session, letter, settings, email="removed@example.org")
    notify_pending(session, settings=settings)
    assert [k for k, _ in outbox_to(session, settings, letter, "removed@example.org")] == ["verify"]
    assert fresh(session, again).state == PendingState.SKIPPED
    with pytest.raises(InvalidToken) as caught:
        verify_signature(session, token=verify_token(settings, again), settings=settings)
    assert caught.value.reason == "gone"


def test_a_withdrawn_signature_comes_back_with_the_new_submission(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(session, letter, settings, email="back@example.org", name="Old")
    first_position = signature.position
    withdraw(session, signature)
    assert tally(session, letter) == 0

    again = sign(session, letter, settings, email="back@example.org", name="New Name")
    notify_pending(session, settings=settings)
    assert [k for k, _ in outbox_to(session, settings, letter, "back@example.org")] == [
        "verify",
        "verify",
    ]
    verify_signature(session, token=verify_token(settings, again), settings=settings)
    session.expire_all()
    [back] = signatures_of(session, letter)
    assert (back.status, back.name) == (SignatureStatus.VERIFIED, "New Name")
    assert back.position is not None and first_position is not None
    assert back.position > first_position
    assert tally(session, letter) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"status": LetterStatus.CLOSED},
        {"closes_at": utcnow() - timedelta(minutes=1)},
        {"status": LetterStatus.DRAFT},
    ],
    ids=["closed", "past-closing-time", "draft"],
)
def test_sign_refused_stores_nothing(
    session: Session, settings: Settings, overrides: dict[str, Any]
) -> None:
    letter = make_letter(session, **overrides)
    expected = LetterNotFound if overrides.get("status") == LetterStatus.DRAFT else LetterNotOpen
    with pytest.raises(expected):
        sign_letter(session, slug=letter.slug, data=signature_in(), settings=settings)
    assert pending_count(session, letter) == 0


def test_sign_unknown_letter(session: Session, settings: Settings) -> None:
    with pytest.raises(LetterNotFound):
        sign_letter(session, slug="no-such-letter", data=signature_in(), settings=settings)


def test_sign_before_closes_at_is_accepted(session: Session, settings: Settings) -> None:
    letter = make_letter(session, closes_at=utcnow() + timedelta(hours=1))
    pending = sign(session, letter, settings)
    assert pending.state == PendingState.WAITING


def test_a_letter_that_closes_before_the_email_goes_gets_no_link(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings, email="late@example.org")
    letter.status = LetterStatus.CLOSED
    session.flush()
    notify_pending(session, settings=settings)
    assert outbox_to(session, settings, letter, "late@example.org") == []
    assert fresh(session, pending).state == PendingState.SKIPPED


# --- verifying -----------------------------------------------------------------------


def test_verify_counts_once(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings)
    token = verify_token(settings, pending)

    first = verify_signature(session, token=token, settings=settings)
    second = verify_signature(session, token=token, settings=settings)

    assert (first.already, second.already) == (False, True)
    [signature] = signatures_of(session, letter)
    assert signature.status == SignatureStatus.VERIFIED
    assert signature.position == 1
    assert tally(session, letter) == 1
    assert get_public_letter(session, slug=letter.slug).signature_count == 1
    assert fresh(session, pending).state == PendingState.CONFIRMED


def test_a_session_that_holds_the_rows_sees_the_confirmation(
    session: Session, settings: Settings
) -> None:
    """The confirmation writes with Core statements (no entities): the rows it changed
    that the caller's session holds are read again, not left as they were."""
    letter = make_letter(session)
    held_tally = session.get_one(LetterTally, letter.id)
    assert held_tally.verified_count == 0
    pending = sign(session, letter, settings, name="Ada Held", email="ada@example.org")
    again = sign(session, letter, settings, name="Ada Later", email="ada@example.org")
    assert (pending.state, again.name) == (PendingState.WAITING, "Ada Later")

    done = verify_signature(session, token=verify_token(settings, pending), settings=settings)

    assert (done.already, done.submission_id) == (False, pending.id)
    assert (held_tally.verified_count, held_tally.last_position) == (1, 1)
    assert (pending.state, pending.name, pending.email) == (PendingState.CONFIRMED, "", None)
    assert (again.state, again.name) == (PendingState.WAITING, "")
    assert again.email is not None  # still waiting for its email: the "already signed" note


def test_read_verification_changes_nothing(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings, name="Grace Hopper", city="Arlington",
                   contact_ok=True)  # fmt: skip
    found = read_verification(session, token=verify_token(settings, pending), settings=settings)
    assert (found.pending.name, found.pending.city, found.pending.contact_ok) == (
        "Grace Hopper",
        "Arlington",
        True,
    )
    assert found.letter.id == letter.id
    assert not found.already
    assert fresh(session, pending).state == PendingState.WAITING
    assert signatures_of(session, letter) == []
    assert tally(session, letter) == 0


@pytest.mark.parametrize(
    "mangle",
    [tampered, lambda t: t[:-5], lambda t: t + "x", lambda t: "x" + t, lambda t: ""],
    ids=["flipped", "truncated", "suffixed", "prefixed", "empty"],
)
def test_tampered_token_is_rejected(session: Session, settings: Settings, mangle: Any) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings)
    with pytest.raises(InvalidToken) as caught:
        verify_signature(session, token=mangle(verify_token(settings, pending)), settings=settings)
    assert caught.value.reason == "invalid"
    assert tally(session, letter) == 0


def test_token_signed_with_another_key_is_rejected(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings)
    forged = tokens.issue("another-key-" * 4, tokens.Purpose.SIGNATURE_VERIFY, pending.public_id)
    with pytest.raises(InvalidToken):
        verify_signature(session, token=forged, settings=settings)


@pytest.mark.parametrize("purpose", [tokens.Purpose.SIGNATURE_MANAGE, tokens.Purpose.LIST_CURSOR])
def test_token_of_another_purpose_is_rejected(
    session: Session, settings: Settings, purpose: tokens.Purpose
) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings)
    with pytest.raises(InvalidToken):
        verify_signature(
            session, token=tokens.issue(settings.secret, purpose, pending.public_id),
            settings=settings,
        )  # fmt: skip


def test_token_for_no_signature_is_rejected(session: Session, settings: Settings) -> None:
    token = tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, "no-such-public-id")
    with pytest.raises(InvalidToken) as caught:
        verify_signature(session, token=token, settings=settings)
    assert caught.value.reason == "gone"


def test_expired_token_is_rejected_as_expired(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings)
    max_age = settings.verify_max_age_seconds
    fresh_enough = issued_ago(monkeypatch, max_age - 60, settings, pending.public_id)
    expired = issued_ago(monkeypatch, max_age + 60, settings, pending.public_id)
    with pytest.raises(InvalidToken) as caught:
        read_verification(session, token=expired, settings=settings)
    assert caught.value.expired
    with pytest.raises(InvalidToken):
        verify_signature(session, token=expired, settings=settings)
    assert tally(session, letter) == 0
    verify_signature(session, token=fresh_enough, settings=settings)
    assert tally(session, letter) == 1


def test_token_payload_is_an_opaque_id(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings, email="secret.person@example.org", name="Secret")
    token = verify_token(settings, pending)
    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert json.loads(decoded) == pending.public_id
    for private in ("secret", "person", "example", "Secret"):
        assert private not in decoded.decode()


def test_verify_after_the_letter_closed_is_refused(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings)
    letter.status = LetterStatus.CLOSED
    session.flush()
    with pytest.raises(LetterNotOpen):
        verify_signature(session, token=verify_token(settings, pending), settings=settings)
    assert tally(session, letter) == 0
    assert signatures_of(session, letter) == []


def test_plain_email_is_forgotten_after_verification(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(session, letter, settings, email="forget.me@example.org")
    assert signature.email is None
    assert signature.contact_ok is False
    assert signature.email_domain == "example.org"  # kept for verified-domain features
    leftovers = session.scalars(
        select(PendingSignature.email).where(PendingSignature.letter_id == letter.id)
    ).all()
    assert leftovers == [None]


def test_plain_email_is_kept_with_consent(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(
        session, letter, settings, email="Keep.Me@Example.org", contact_ok=True
    )
    assert signature.email == "Keep.Me@example.org"
    assert signature.contact_ok is True


def test_anonymous_signatures_keep_no_identity(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(
        session, letter, settings, email="whistle@smallcompany.example", name="Whistle Blower",
        title="Engineer", organization="Small Company", city="Tiny Town",
        display=SignatureDisplay.ANONYMOUS, contact_ok=True,
    )  # fmt: skip
    assert (signature.name, signature.title, signature.organization, signature.city) == (
        "",
        "",
        "",
        "",
    )
    assert (signature.email, signature.email_domain, signature.contact_ok) == (None, "", False)
    pending_rows = session.execute(
        select(PendingSignature.name, PendingSignature.email, PendingSignature.organization).where(
            PendingSignature.letter_id == letter.id
        )
    ).all()
    assert pending_rows == [("", None, "")]


def test_the_hash_is_keyed_per_letter(session: Session, settings: Settings) -> None:
    """A leaked database cannot join one person's signatures across letters."""
    first, second = make_letter(session), make_letter(session)
    one = sign_and_confirm(session, first, settings, email="same@example.org")
    two = sign_and_confirm(session, second, settings, email="same@example.org")
    assert one.email_hash != two.email_hash


# --- listing -------------------------------------------------------------------------


def test_anonymous_signers_are_never_exposed(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    sign_and_confirm(session, letter, settings, name="Public Person", organization="Acme")
    sign_and_confirm(session, letter, settings, name="Hidden Person", organization="Acme",
                     display=SignatureDisplay.ANONYMOUS)  # fmt: skip
    items, _ = list_public_signatures(session, letter_id=letter.id)
    assert [item.name for item in items] == [None, "Public Person"]
    assert items[0] == PublicSignature(
        name=None, title=None, organization=None, city=None, verified_domain=None,
        signed_on=items[0].signed_on,
    )  # fmt: skip
    found, _ = list_public_signatures(session, letter_id=letter.id, query="Person")
    assert [item.name for item in found] == ["Public Person"]
    recent = recent_public_signers(session, letter_id=letter.id)
    assert [item.name for item in recent] == ["Public Person"]


def test_pending_signers_are_not_listed(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    sign(session, letter, settings, name="Not Yet")
    sign_and_confirm(session, letter, settings, name="Confirmed One")
    items, _ = list_public_signatures(session, letter_id=letter.id)
    assert [item.name for item in items] == ["Confirmed One"]


@pytest.mark.parametrize(("count", "sizes"), [(7, [3, 3, 1]), (6, [3, 3]), (2, [2])])
def test_keyset_pagination_returns_each_signature_once(
    session: Session, settings: Settings, count: int, sizes: list[int]
) -> None:
    letter = make_letter(session)
    for n in range(count):
        sign_and_confirm(session, letter, settings, name=f"Person {n:02d}")
    seen: list[str | None] = []
    page_sizes = []
    after = None
    while True:
        items, after = list_public_signatures(session, letter_id=letter.id, after=after, limit=3)
        seen += [item.name for item in items]
        page_sizes.append(len(items))
        if after is None:
            break
    assert page_sizes == sizes
    assert seen == [f"Person {n:02d}" for n in reversed(range(count))]


def test_pagination_of_search_results(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    for n in range(5):
        sign_and_confirm(session, letter, settings, name=f"Match {n}")
        sign_and_confirm(session, letter, settings, name=f"Other {n}")
    first, after = list_public_signatures(session, letter_id=letter.id, query="match", limit=3)
    rest, end = list_public_signatures(
        session, letter_id=letter.id, query="match", after=after, limit=3
    )
    assert [i.name for i in first + rest] == [f"Match {n}" for n in reversed(range(5))]
    assert end is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("100%", ["100% Human"]),
        ("a_b", ["a_b Corp"]),
        ("\\x\\", ["Back\\x\\slash"]),
        ('"qu', ['Say "quoted"']),
        ("ACME", ["Acme Widgets"]),
        ("widg", ["Acme Widgets"]),
    ],
)
def test_search_is_literal_and_case_insensitive(
    session: Session, settings: Settings, query: str, expected: list[str]
) -> None:
    letter = make_letter(session)
    for name in ("100% Human", "1000 Humans", "a_b Corp", "axb Corp", "Back\\x\\slash",
                 'Say "quoted"', "Acme Widgets"):  # fmt: skip
        sign_and_confirm(session, letter, settings, name=name, organization="")
    items, _ = list_public_signatures(session, letter_id=letter.id, query=query)
    assert [item.name for item in items] == expected


def test_search_matches_organizations_too(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    sign_and_confirm(session, letter, settings, name="Ada", organization="Analytical Engines")
    sign_and_confirm(session, letter, settings, name="Bob", organization="Other")
    items, _ = list_public_signatures(session, letter_id=letter.id, query="engines")
    assert [item.name for item in items] == ["Ada"]


@pytest.mark.parametrize("query", ["a", "ab", " ab "])
def test_search_needs_three_characters(session: Session, settings: Settings, query: str) -> None:
    letter = make_letter(session)
    with pytest.raises(InvalidInput) as caught:
        list_public_signatures(session, letter_id=letter.id, query=query)
    assert "q" in caught.value.fields


def test_cursors_are_opaque_and_tamper_proof(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signatures = [sign_and_confirm(session, letter, settings) for _ in range(3)]
    _, after = list_public_signatures(session, letter_id=letter.id, limit=1)
    assert after is not None
    cursor = encode_cursor(settings, after)
    assert decode_cursor(settings, cursor) == after
    for signature in signatures:
        assert str(signature.id) not in cursor.split(".")[1:]  # no row id in the clear
    for bad in (tampered(cursor), "12", "", cursor[:-3],
                tokens.issue(settings.secret, tokens.Purpose.LIST_CURSOR, "x"),
                tokens.issue(settings.secret, tokens.Purpose.LIST_CURSOR, 2**40)):  # fmt: skip
        with pytest.raises(InvalidInput):
            decode_cursor(settings, bad)


def test_tally_equals_verified_rows_after_a_random_sequence(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    rng = random.Random(20261127)
    addresses = [f"person{n}@example.org" for n in range(12)]
    pending: list[PendingSignature] = []
    for _ in range(200):
        action = rng.choice(["sign", "sign", "notify", "verify", "verify", "withdraw"])
        if action == "sign":
            pending.append(sign(session, letter, settings, email=rng.choice(addresses)))
        elif action == "notify":
            notify_pending(
                session, settings=settings, now=utcnow() + timedelta(hours=rng.randint(0, 5))
            )
        elif action == "verify" and pending:
            with contextlib.suppress(InvalidToken):  # a skipped submission
                verify_signature(session, token=verify_token(settings, rng.choice(pending)),
                                 settings=settings)  # fmt: skip
        elif action == "withdraw":
            verified = [s for s in signatures_of(session, letter)
                        if s.status == SignatureStatus.VERIFIED]  # fmt: skip
            if verified:
                withdraw(session, rng.choice(verified))
        counted = session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter.id, Signature.status == SignatureStatus.VERIFIED)
        )
        assert tally(session, letter) == counted
    positions = [s.position for s in signatures_of(session, letter)]
    assert len(set(positions)) == len(positions)
    assert None not in positions
