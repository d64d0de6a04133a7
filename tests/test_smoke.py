from __future__ import annotations

from sqlalchemy.orm import Session

from app.config import Settings
from app.letters.service import get_public_letter
from app.signatures.service import verify_signature
from tests.support.factories import make_letter, sign, verify_token


def test_sign_and_verify_moves_the_tally(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign(session, letter, settings)
    assert get_public_letter(session, slug=letter.slug).signature_count == 0
    verify_signature(session, token=verify_token(settings, signature), settings=settings)
    assert get_public_letter(session, slug=letter.slug).signature_count == 1
