"""A letter's text versions: what changed after people signed, and how many signed
each text. (Filled in by the letters dashboard work.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.letters.models import Letter


@dataclass(frozen=True, slots=True)
class EditNotice:
    """What the public page says about a letter edited after people signed it."""

    edited_at: datetime
    signed_earlier: int
    """Confirmed signatures (counted now) of earlier versions of the text."""


def edit_notice(session: Session, *, letter: Letter) -> EditNotice | None:
    """None unless the letter has more than one version."""
    return None
