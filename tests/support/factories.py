"""Small typed factories for tests."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import tokens
from app.config import Settings
from app.letters.models import Letter, LetterStatus
from app.letters.schemas import LetterCreate
from app.letters.service import create_letter
from app.signatures.addresses import email_hash
from app.signatures.models import PendingSignature, Signature
from app.signatures.schemas import SignatureIn
from app.signatures.service import notify_pending, sign_letter, verify_signature

_counter = itertools.count(1)

LETTER_SETTINGS = (
    "field_title",
    "field_organization",
    "field_city",
    "field_comment",
    "allow_anonymous",
    "show_signers",
    "version",
)
"""Letter columns `make_letter` sets on the letter itself after creating it, whether or
not `LetterCreate` takes them (`version`, for one, it does not)."""


def make_letter(session: Session, **overrides: Any) -> Letter:
    """A letter (open unless `status` says otherwise). `field_comment=FieldRule.REQUIRED`,
    `allow_anonymous=False`, `show_signers=False`, `version=3` and the like set the
    letter's settings."""
    number = next(_counter)
    values: dict[str, Any] = {
        "slug": f"letter-{number}",
        "title": f"Test letter {number}",
        "summary": "A letter for tests.",
        "body_markdown": "We ask for **one thing**.",
        "addressed_to": "Someone in charge",
        "goal": 100,
        "status": LetterStatus.OPEN,
    }
    values.update(overrides)
    letter = create_letter(session, data=LetterCreate(**values))
    settings = {name: value for name, value in overrides.items() if name in LETTER_SETTINGS}
    if settings:
        for name, value in settings.items():
            setattr(letter, name, value)
        session.flush()
    return letter


def signature_in(**overrides: Any) -> SignatureIn:
    number = next(_counter)
    values: dict[str, Any] = {
        "name": f"Signer {number}",
        "email": f"signer{number}@example.org",
        "title": "Engineer",
        "organization": "Example Corp",
        "city": "Oakland",
    }
    values.update(overrides)
    return SignatureIn(**values)


def sign(
    session: Session, letter: Letter, settings: Settings, **overrides: Any
) -> PendingSignature:
    """Signs and returns the submission just recorded (a new pending row)."""
    data = signature_in(**overrides)
    sign_letter(session, slug=letter.slug, data=data, settings=settings)
    return session.scalars(
        select(PendingSignature)
        .where(
            PendingSignature.letter_id == letter.id,
            PendingSignature.email_hash == email_hash(settings.secret, letter.id, data.email),
        )
        .order_by(PendingSignature.id.desc())
        .limit(1)
    ).one()


def verify_token(settings: Settings, pending: PendingSignature) -> str:
    return tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, pending.public_id)


def sign_and_confirm(
    session: Session, letter: Letter, settings: Settings, **overrides: Any
) -> Signature:
    """A confirmed signature, straight through the services (fast set-up)."""
    pending = sign(session, letter, settings, **overrides)
    notify_pending(session, settings=settings)
    verify_signature(session, token=verify_token(settings, pending), settings=settings)
    return session.scalars(
        select(Signature).where(
            Signature.letter_id == letter.id, Signature.email_hash == pending.email_hash
        )
    ).one()


def tampered(token: str) -> str:
    """An itsdangerous token with its signature's first character changed. (Not the last
    one: its low bits are base64 padding, so changing it can decode to the same bytes.)"""
    payload, _, signature = token.rpartition(".")
    return f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
