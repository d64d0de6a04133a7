"""The signing loop at the service level, on SQLite and PostgreSQL.

Each test runs in a rolled-back transaction (the `session` fixture)."""

from __future__ import annotations

import base64
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
from app.errors import InvalidToken, LetterNotFound, LetterNotOpen
from app.letters.models import Letter, LetterStatus, LetterTally
from app.letters.service import get_public_letter
from app.mail.models import OutboxEmail, OutboxStatus
from app.signatures.addresses import email_hash
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus
from app.signatures.schemas import PublicSignature
from app.signatures.service import (
    MAX_EMAILS_PER_SIGNATURE,
    list_public_signatures,
    read_verification,
    recent_public_signers,
    sign_letter,
    verify_signature,
)
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign, signature_in, verify_token

# --- helpers -------------------------------------------------------------------------


def outbox_of(session: Session, settings: Settings, signature: Signature) -> list[OutboxEmail]:
    """The emails sent to any spelling of the signature's address, oldest first."""
    return [
        email
        for email in session.scalars(select(OutboxEmail).order_by(OutboxEmail.id))
        if email.to_address is not None
        and email_hash(settings.secret, email.to_address) == signature.email_hash
    ]


def outbox_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OutboxEmail)) or 0


def signature_count(session: Session, letter: Letter, status: SignatureStatus | None = None) -> int:
    statement = select(func.count()).select_from(Signature).where(Signature.letter_id == letter.id)
    if status is not None:
        statement = statement.where(Signature.status == status)
    return session.scalar(statement) or 0


def tally(session: Session, letter: Letter) -> int:
    """The stored counter, read straight from the table."""
    value = session.scalar(
        select(LetterTally.verified_count).where(LetterTally.letter_id == letter.id)
    )
    assert value is not None
    return value


def stored(session: Session, signature: Signature) -> Any:
    """The row as the database holds it now, bypassing the identity map."""
    return session.execute(
        select(
            Signature.status,
            Signature.email,
            Signature.email_domain,
            Signature.contact_ok,
            Signature.verified_at,
            Signature.emails_sent,
            Signature.name,
        ).where(Signature.id == signature.id)
    ).one()


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


def test_sign_stores_pending_signature_and_one_verify_email(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url, base_url="https://letters.example.org/")
    letter = make_letter(session, title="Cancel the contract")
    before = outbox_count(session)

    signature = sign(session, letter, settings, email="Alice@Example.org", contact_ok=False)

    assert signature.status == SignatureStatus.PENDING
    assert signature.verified_at is None
    assert signature.email == "Alice@example.org"  # kept until verification, to send the link
    assert signature.email_hash == email_hash(settings.secret, "alice@example.org")
    assert signature.email_domain == "example.org"
    assert signature.emails_sent == 1
    assert signature_count(session, letter) == 1
    assert tally(session, letter) == 0

    assert outbox_count(session) == before + 1
    [email] = outbox_of(session, settings, signature)
    assert email.kind == "verify"
    assert email.to_address == "Alice@example.org"
    assert email.status == OutboxStatus.PENDING
    assert "Cancel the contract" in email.subject
    token = token_in(email.text_body, settings)
    assert token == token_in(email.html_body, settings)
    assert settings.base_url == "https://letters.example.org"
    # itsdangerous signs but does not encrypt: the link carries an opaque id only.
    assert tokens.read(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, token) == (
        signature.public_id
    )
    readable = base64.urlsafe_b64decode(token.split(".")[0] + "==").decode().lower()
    assert "alice" not in readable
    assert "example" not in readable
    assert "https://letters.example.org/letters/" + letter.slug in email.text_body
    # The link in the email really confirms this signature.
    confirmed = verify_signature(session, token=token, settings=settings)
    assert confirmed.signature.id == signature.id
    assert stored(session, signature).status == SignatureStatus.VERIFIED


def test_signature_and_email_belong_to_the_callers_transaction(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    before = outbox_count(session)
    nested = session.begin_nested()
    sign(session, letter, settings)
    assert signature_count(session, letter) == 1
    assert outbox_count(session) == before + 1
    nested.rollback()
    assert signature_count(session, letter) == 0
    assert outbox_count(session) == before


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("alice@example.org", "ALICE@Example.Org"),
        ("alice@example.org", "alice+letters@example.org"),
        ("first.last@gmail.com", "firstlast@googlemail.com"),
        ("First.Last+a@gmail.com", "f.i.r.s.t.l.a.s.t+b@GMAIL.com"),
    ],
)
def test_signing_again_resends_the_link(
    session: Session, settings: Settings, first: str, second: str
) -> None:
    letter = make_letter(session)
    original = sign(session, letter, settings, email=first, name="First Try")
    again = sign(session, letter, settings, email=second, name="Second Try")

    assert again.id == original.id
    assert signature_count(session, letter) == 1
    row = stored(session, original)
    assert row.status == SignatureStatus.PENDING
    assert row.emails_sent == 2
    assert row.name == "Second Try"  # the latest submission wins while pending
    emails = outbox_of(session, settings, original)
    assert [email.kind for email in emails] == ["verify", "verify"]
    assert (emails[1].to_address or "").lower() == second.lower()
    # Both links point at the one signature.
    for email in emails:
        found = read_verification(
            session, token=token_in(email.text_body, settings), settings=settings
        )
        assert found.signature.id == original.id


def test_signing_again_when_verified_sends_already_signed(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings, email="first.last@gmail.com", name="Real Name")
    verify_signature(session, token=verify_token(settings, signature), settings=settings)
    before = stored(session, signature)
    assert before.status == SignatureStatus.VERIFIED

    sign(
        session,
        letter,
        settings,
        email="FirstLast+again@googlemail.com",
        name="Impostor",
        display=SignatureDisplay.ANONYMOUS,
        contact_ok=True,
    )

    assert signature_count(session, letter) == 1
    after = stored(session, signature)
    assert after.status == SignatureStatus.VERIFIED
    assert after.verified_at == before.verified_at
    assert after.name == "Real Name"
    assert after.email is None  # no address comes back with a second attempt
    assert after.contact_ok is False
    assert tally(session, letter) == 1
    emails = outbox_of(session, settings, signature)
    assert [email.kind for email in emails] == ["verify", "already_signed"]
    assert emails[1].to_address == "FirstLast+again@googlemail.com"
    assert "/verify/" not in emails[1].text_body
    assert "/verify/" not in emails[1].html_body


def test_at_most_five_emails_per_signature(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    for _ in range(MAX_EMAILS_PER_SIGNATURE + 2):
        signature = sign(session, letter, settings, email="spam@example.org")
    assert MAX_EMAILS_PER_SIGNATURE == 5
    assert len(outbox_of(session, settings, signature)) == 5
    assert stored(session, signature).emails_sent == 5
    assert signature_count(session, letter) == 1


def test_the_cap_counts_already_signed_emails_too(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings, email="again@example.org")
    verify_signature(session, token=verify_token(settings, signature), settings=settings)
    for _ in range(6):
        sign(session, letter, settings, email="again@example.org")
    kinds = [email.kind for email in outbox_of(session, settings, signature)]
    assert kinds == ["verify"] + ["already_signed"] * 4


def test_signing_a_removed_signature_sends_nothing(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings, email="removed@example.org")
    signature.status = SignatureStatus.REMOVED
    session.flush()
    sign(session, letter, settings, email="removed@example.org")
    assert stored(session, signature).status == SignatureStatus.REMOVED
    assert len(outbox_of(session, settings, signature)) == 1


def test_signing_a_withdrawn_signature_makes_it_pending_again(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings, email="back@example.org")
    signature.status = SignatureStatus.WITHDRAWN
    session.flush()
    sign(session, letter, settings, email="back@example.org")
    assert stored(session, signature).status == SignatureStatus.PENDING
    assert [email.kind for email in outbox_of(session, settings, signature)] == ["verify", "verify"]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"status": LetterStatus.CLOSED}, LetterNotOpen),
        ({"closes_at": utcnow() - timedelta(minutes=1)}, LetterNotOpen),
        ({"status": LetterStatus.DRAFT}, LetterNotFound),
    ],
    ids=["closed", "past-closes-at", "draft"],
)
def test_sign_refused_stores_nothing(
    session: Session, settings: Settings, overrides: dict[str, Any], error: type[Exception]
) -> None:
    letter = make_letter(session, **overrides)
    before = outbox_count(session)
    with pytest.raises(error):
        sign_letter(session, slug=letter.slug, data=signature_in(), settings=settings)
    assert signature_count(session, letter) == 0
    assert outbox_count(session) == before


def test_sign_unknown_letter(session: Session, settings: Settings) -> None:
    with pytest.raises(LetterNotFound):
        sign_letter(session, slug="no-such-letter", data=signature_in(), settings=settings)


def test_sign_before_closes_at_is_accepted(session: Session, settings: Settings) -> None:
    letter = make_letter(session, closes_at=utcnow() + timedelta(hours=1))
    sign(session, letter, settings)
    assert signature_count(session, letter, SignatureStatus.PENDING) == 1


# --- verifying -----------------------------------------------------------------------


def test_verify_counts_once(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    other = make_letter(session)
    signature = sign(session, letter, settings)
    token = verify_token(settings, signature)

    first = verify_signature(session, token=token, settings=settings)
    assert first.signature.status == SignatureStatus.VERIFIED
    assert first.signature.verified_at is not None
    assert first.letter.id == letter.id
    assert tally(session, letter) == 1

    second = verify_signature(session, token=token, settings=settings)
    assert second.signature.status == SignatureStatus.VERIFIED
    assert second.signature.verified_at == first.signature.verified_at
    assert tally(session, letter) == 1
    assert get_public_letter(session, slug=letter.slug).signature_count == 1
    assert tally(session, other) == 0


def test_read_verification_changes_nothing(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings)
    found = read_verification(session, token=verify_token(settings, signature), settings=settings)
    assert found.signature.id == signature.id
    assert found.letter.title == letter.title
    assert stored(session, signature).status == SignatureStatus.PENDING
    assert tally(session, letter) == 0


def _tampered(token: str) -> str:
    payload, rest = token.split(".", 1)
    middle = len(payload) // 2
    swapped = "A" if payload[middle] != "A" else "B"
    return payload[:middle] + swapped + payload[middle + 1 :] + "." + rest


@pytest.mark.parametrize(
    "mangle",
    [
        _tampered,
        lambda token: token[: len(token) // 2],
        lambda token: token + "x",
        lambda token: "not-a-token",
    ],
    ids=["payload-changed", "cut-short", "appended", "garbage"],
)
def test_tampered_token_is_rejected(session: Session, settings: Settings, mangle: Any) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings)
    bad = mangle(verify_token(settings, signature))
    with pytest.raises(InvalidToken) as caught:
        verify_signature(session, token=bad, settings=settings)
    assert caught.value.expired is False
    assert stored(session, signature).status == SignatureStatus.PENDING
    assert tally(session, letter) == 0


def test_token_signed_with_another_key_is_rejected(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings)
    forged = tokens.issue("another-key", tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)
    with pytest.raises(InvalidToken) as caught:
        verify_signature(session, token=forged, settings=settings)
    assert caught.value.expired is False
    assert tally(session, letter) == 0


@pytest.mark.parametrize(
    "purpose",
    [tokens.Purpose.SIGNATURE_MANAGE, tokens.Purpose.UNSUBSCRIBE, tokens.Purpose.ORGANIZER_LOGIN],
)
def test_token_of_another_purpose_is_rejected(
    session: Session, settings: Settings, purpose: tokens.Purpose
) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings)
    token = tokens.issue(settings.secret, purpose, signature.public_id)
    with pytest.raises(InvalidToken):
        verify_signature(session, token=token, settings=settings)
    assert stored(session, signature).status == SignatureStatus.PENDING
    assert tally(session, letter) == 0


def test_token_for_no_signature_is_rejected(session: Session, settings: Settings) -> None:
    for payload in ("no-such-public-id", 12345, ["a", "list"]):
        token = tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, payload)
        with pytest.raises(InvalidToken) as caught:
            verify_signature(session, token=token, settings=settings)
        assert caught.value.expired is False


def test_expired_token_is_rejected_as_expired(
    session: Session, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, database.url, verify_max_age_days=2)
    letter = make_letter(session)
    signature = sign(session, letter, settings)
    two_days = 2 * 24 * 3600

    expired = issued_ago(monkeypatch, two_days + 60, settings, signature.public_id)
    with pytest.raises(InvalidToken) as caught:
        verify_signature(session, token=expired, settings=settings)
    assert caught.value.expired is True
    with pytest.raises(InvalidToken) as caught:
        read_verification(session, token=expired, settings=settings)
    assert caught.value.expired is True
    assert stored(session, signature).status == SignatureStatus.PENDING
    assert tally(session, letter) == 0

    # Just inside the configured age, the same kind of token still works.
    fresh = issued_ago(monkeypatch, two_days - 3600, settings, signature.public_id)
    verify_signature(session, token=fresh, settings=settings)
    assert stored(session, signature).status == SignatureStatus.VERIFIED
    assert tally(session, letter) == 1


def test_verify_after_the_letter_closed_is_refused(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings)
    letter.status = LetterStatus.CLOSED
    session.flush()
    with pytest.raises(LetterNotOpen):
        verify_signature(session, token=verify_token(settings, signature), settings=settings)
    assert stored(session, signature).status == SignatureStatus.PENDING
    assert tally(session, letter) == 0


def test_withdrawn_signature_cannot_be_verified(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings)
    token = verify_token(settings, signature)
    signature.status = SignatureStatus.WITHDRAWN
    session.flush()
    with pytest.raises(InvalidToken):
        verify_signature(session, token=token, settings=settings)
    assert stored(session, signature).status == SignatureStatus.WITHDRAWN
    assert tally(session, letter) == 0


# --- what is kept about signers ------------------------------------------------------


def test_plain_email_is_forgotten_after_verification(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings, email="Someone@EXAMPLE.org", contact_ok=False)
    assert stored(session, signature).email is not None
    verify_signature(session, token=verify_token(settings, signature), settings=settings)
    row = stored(session, signature)
    assert row.status == SignatureStatus.VERIFIED
    assert row.email is None
    assert row.email_domain == "example.org"
    assert signature.email is None  # the returned object agrees with the database


def test_plain_email_is_kept_with_consent(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings, email="Keep.Me@Example.ORG", contact_ok=True)
    verify_signature(session, token=verify_token(settings, signature), settings=settings)
    row = stored(session, signature)
    assert row.status == SignatureStatus.VERIFIED
    assert row.email == "Keep.Me@example.org"
    assert row.email_domain == "example.org"
    assert row.contact_ok is True


# --- the public list -----------------------------------------------------------------


def _verified(session: Session, letter: Letter, settings: Settings, **fields: Any) -> Signature:
    signature = sign(session, letter, settings, **fields)
    verify_signature(session, token=verify_token(settings, signature), settings=settings)
    return signature


SECRET_FIELDS = {
    "name": "Zanzibar Quillfeather",
    "title": "Whistleblower-in-chief",
    "organization": "Clandestine Agency",
    "city": "Undisclosed Bunker",
}


def test_anonymous_signers_are_never_exposed(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    _verified(session, letter, settings, name="Open Person", organization="Example Corp")
    _verified(session, letter, settings, display=SignatureDisplay.ANONYMOUS, **SECRET_FIELDS)
    _verified(session, letter, settings, name="Other Person", organization="Example Corp")

    page, cursor = list_public_signatures(session, letter_id=letter.id)
    assert cursor is None
    assert len(page) == 3
    names = [item.name for item in page]
    assert names == ["Other Person", None, "Open Person"]
    anonymous = page[1]
    assert anonymous.title is None
    assert anonymous.organization is None
    assert anonymous.city is None
    assert anonymous.verified_domain is None

    recent = recent_public_signers(session, letter_id=letter.id)
    assert [item.name for item in recent] == ["Other Person", "Open Person"]

    dumped = json.dumps([item.model_dump(mode="json") for item in [*page, *recent]])
    for value in SECRET_FIELDS.values():
        assert value not in dumped

    for query in ("Zanzibar", "quillfeather", "Clandestine", "Agency"):
        found, _ = list_public_signatures(session, letter_id=letter.id, query=query)
        assert found == [], query
    found, _ = list_public_signatures(session, letter_id=letter.id, query="example corp")
    assert sorted(item.name or "" for item in found) == ["Open Person", "Other Person"]


def test_pending_signers_are_not_listed(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    sign(session, letter, settings, name="Pending Pat")
    _verified(session, letter, settings, name="Verified Val")
    page, _ = list_public_signatures(session, letter_id=letter.id)
    assert [item.name for item in page] == ["Verified Val"]
    assert [item.name for item in recent_public_signers(session, letter_id=letter.id)] == [
        "Verified Val"
    ]
    found, _ = list_public_signatures(session, letter_id=letter.id, query="Pending")
    assert found == []


def _all_pages(
    session: Session, letter: Letter, *, limit: int, query: str = ""
) -> list[list[PublicSignature]]:
    pages = []
    cursor: int | None = None
    while True:
        page, cursor = list_public_signatures(
            session, letter_id=letter.id, query=query, after=cursor, limit=limit
        )
        pages.append(page)
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"


@pytest.mark.parametrize(("count", "sizes"), [(7, [3, 3, 1]), (6, [3, 3]), (2, [2])])
def test_keyset_pagination_returns_each_signature_once(
    session: Session, settings: Settings, count: int, sizes: list[int]
) -> None:
    letter = make_letter(session)
    other = make_letter(session)
    names = [f"Page Signer {number}" for number in range(count)]
    for name in names:
        _verified(session, letter, settings, name=name)
        _verified(session, other, settings, name="Elsewhere " + name)
    sign(session, letter, settings, name="Pending Page Signer")

    pages = _all_pages(session, letter, limit=3)

    assert [len(page) for page in pages] == sizes
    listed = [item.name for page in pages for item in page]
    assert listed == list(reversed(names))  # newest first, each exactly once


def test_pagination_of_search_results(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    for number in range(5):
        _verified(session, letter, settings, name=f"Match {number}", organization="Union")
        _verified(session, letter, settings, name=f"Other {number}", organization="Guild")
    pages = _all_pages(session, letter, limit=2, query="union")
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [item.name for page in pages for item in page] == [
        f"Match {n}" for n in range(4, -1, -1)
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("%", ["Percy"]),
        ("0%", ["Percy"]),
        ("_", ["Under_Score"]),
        ("under_score", ["Under_Score"]),
        ("r_s", ["Under_Score"]),
        ("\\", ["Back\\Slash"]),
        ("%%", []),
        ("x_", []),
    ],
)
def test_search_wildcards_are_literal(
    session: Session, settings: Settings, query: str, expected: list[str]
) -> None:
    letter = make_letter(session)
    _verified(session, letter, settings, name="Percy", organization="100% Organised")
    _verified(session, letter, settings, name="Hundred", organization="100 Percent")
    _verified(session, letter, settings, name="Under_Score", organization="")
    _verified(session, letter, settings, name="UnderXScore", organization="")
    _verified(session, letter, settings, name="Back\\Slash", organization="")
    found, _ = list_public_signatures(session, letter_id=letter.id, query=query)
    assert sorted(item.name or "" for item in found) == expected


# --- the tally is exact --------------------------------------------------------------


def test_tally_equals_verified_rows_after_a_random_sequence(
    session: Session, settings: Settings
) -> None:
    rng = random.Random(20240601)
    letter = make_letter(session)
    other = make_letter(session)
    people = [f"person.{number}@gmail.com" for number in range(12)]
    variants = [
        lambda address: address,
        lambda address: address.upper(),
        lambda address: address.replace("@", "+tag@"),
        lambda address: address.replace(".", "", 1).replace("gmail", "googlemail"),
    ]
    signed: dict[str, Signature] = {}
    verified: set[str] = set()
    for _ in range(150):
        person = rng.choice(people)
        action = rng.choice(["sign", "verify", "verify", "sign-other"])
        if action == "sign":
            signed[person] = sign(session, letter, settings, email=rng.choice(variants)(person))
        elif action == "sign-other":
            sign(session, other, settings, email=person)
        elif person in signed:
            found = verify_signature(
                session, token=verify_token(settings, signed[person]), settings=settings
            )
            assert found.signature.status == SignatureStatus.VERIFIED
            verified.add(person)

    verified_rows = signature_count(session, letter, SignatureStatus.VERIFIED)
    assert verified_rows == len(verified) > 0
    assert tally(session, letter) == verified_rows
    assert signature_count(session, letter) == len(signed)
    assert tally(session, other) == 0
