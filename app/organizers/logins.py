"""Sign-in links: asked for on /login, sent by the worker, used once. (Stub.)"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.config import Settings


def send_login_links(session: Session, *, settings: Settings) -> int:
    """Worker step: sends the links asked for. Returns how many requests it handled."""
    return 0


def purge_login_links(session: Session, *, now: datetime) -> int:
    return 0
