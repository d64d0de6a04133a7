"""Emails put straight into the outbox, for tests of the worker that do not depend on
what the domains write there (or when)."""

from __future__ import annotations

from email.utils import make_msgid

from sqlalchemy import select

from app.db import Database, utcnow
from app.mail.models import OutboxEmail, OutboxStatus


def queue_email(db: Database, *, to: str, text: str = "Hello.", kind: str = "verify") -> int:
    """One pending email to `to`, committed; returns its id."""
    with db.write() as session:
        email = OutboxEmail(
            kind=kind,
            to_address=to,
            subject="Confirm your signature",
            text_body=f"{text}\n",
            html_body=f"<p>{text}</p>",
            headers={"X-Undersigned-Test": "yes"},
            message_id=make_msgid(domain="testserver"),
            status=OutboxStatus.PENDING,
            next_attempt_at=utcnow(),
        )
        session.add(email)
        session.flush()
        return email.id


def rows(db: Database) -> list[OutboxEmail]:
    with db.read() as session:
        return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))
