"""Updates to signers. (Stub.)"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.config import Settings


def fan_out_updates(session: Session, *, settings: Settings) -> int:
    """Worker step: queues the next batch of an update's emails. Returns how many."""
    return 0
