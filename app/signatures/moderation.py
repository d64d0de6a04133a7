"""Moderation: the organizers' view of a letter's signatures, hiding, removing,
restoring, bulk invalidation, and comments. (Filled in by the moderation work.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class PublicComment:
    """An approved comment as the public sees it."""

    name: str | None
    """None for an anonymous signer."""
    comment: str
    signed_on: date


def public_comments(session: Session, *, letter_id: int) -> list[PublicComment]:
    return []
