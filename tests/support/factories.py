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
from app.signatures.models import Signature
from app.signatures.schemas import SignatureIn
from app.signatures.service import sign_letter

_counter = itertools.count(1)


def make_letter(session: Session, **overrides: Any) -> Letter:
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
    return create_letter(session, data=LetterCreate(**values))


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


def sign(session: Session, letter: Letter, settings: Settings, **overrides: Any) -> Signature:
    """Signs and returns the (pending or existing) signature row."""
    data = signature_in(**overrides)
    sign_letter(session, slug=letter.slug, data=data, settings=settings)
    from app.signatures.addresses import email_hash

    return session.scalars(
        select(Signature).where(
            Signature.letter_id == letter.id,
            Signature.email_hash == email_hash(settings.secret, data.email),
        )
    ).one()


def verify_token(settings: Settings, signature: Signature) -> str:
    return tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)
