"""Delivers the outbox. Safe to run in several processes at once.

A worker claims a batch in a short transaction (PostgreSQL: FOR UPDATE SKIP LOCKED,
so workers never wait on each other; SQLite: BEGIN IMMEDIATE), marks it `sending`
with a lease, commits, sends, then records the outcome only if it still holds the
claim. A crash between send and record means the lease runs out and the email is
sent again: at least once, never lost.
"""

from __future__ import annotations

import logging
import random
import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, utcnow
from app.mail.backends import Backend, PermanentMailError, TransientMailError, build_message
from app.mail.models import OutboxEmail, OutboxStatus

log = logging.getLogger("undersigned.mail")

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with 'equal jitter': half fixed, half random."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311


def claim_batch(session: Session, *, now: datetime, limit: int) -> list[tuple[int, str]]:
    """Claims up to `limit` due emails; returns (id, claim_token) pairs."""
    due = or_(
        (OutboxEmail.status == OutboxStatus.PENDING) & (OutboxEmail.next_attempt_at <= now),
        (OutboxEmail.status == OutboxStatus.SENDING) & (OutboxEmail.lease_expires_at < now),
    )
    ids = list(
        session.scalars(
            select(OutboxEmail.id)
            .where(due)
            .order_by(OutboxEmail.next_attempt_at, OutboxEmail.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    claims = []
    for email_id in ids:
        token = secrets.token_hex(16)
        session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.id == email_id)
            .values(
                status=OutboxStatus.SENDING,
                lease_expires_at=now + LEASE,
                claim_token=token,
                attempts=OutboxEmail.attempts + 1,
            )
        )
        claims.append((email_id, token))
    return claims


def deliver_due(
    database: Database,
    backend: Backend,
    *,
    settings: Settings,
    now: datetime | None = None,
    limit: int = 20,
) -> int:
    """One pass: claim, send, record. Returns how many were sent."""
    now = now or utcnow()
    with database.write() as session:
        claims = claim_batch(session, now=now, limit=limit)
    sent = 0
    for email_id, token in claims:
        with database.read() as session:
            email = session.get(OutboxEmail, email_id)
            if email is None or email.claim_token != token:
                # A slow send earlier in this batch outlived the lease and another
                # worker took this one over: sending it now would send it twice.
                log.warning("email %s: lease lost before sending; skipped", email_id)
                continue
            session.expunge(email)
        outcome: dict[str, object]
        try:
            backend.send(build_message(email, mail_from=settings.mail_from))
        except TransientMailError as exc:
            outcome = _retry_or_give_up(email.attempts, str(exc))
            log.warning("email %s: transient failure: %s", email_id, exc)
        except PermanentMailError as exc:
            outcome = _failed(str(exc))
            log.error("email %s: permanent failure: %s", email_id, exc)
        except Exception as exc:
            # A bug or a surprise: retried (up to MAX_ATTEMPTS) like a transient
            # failure, so that one bad email never stalls the rest of the outbox.
            outcome = _retry_or_give_up(email.attempts, f"{type(exc).__name__}: {exc}")
            log.exception("email %s: unexpected failure", email_id)
        else:
            outcome = {"status": OutboxStatus.SENT, "finished_at": utcnow(), "last_error": None}
            sent += 1
        with database.write() as session:
            session.execute(
                update(OutboxEmail)
                .where(OutboxEmail.id == email_id, OutboxEmail.claim_token == token)
                .values(lease_expires_at=None, claim_token=None, **outcome)
            )
    return sent


def _retry_or_give_up(attempts: int, error: str) -> dict[str, object]:
    if attempts >= MAX_ATTEMPTS:
        return _failed(f"gave up after {attempts} attempts: {error}")
    return {
        "status": OutboxStatus.PENDING,
        "next_attempt_at": utcnow() + backoff(attempts),
        "last_error": error[:1000],
    }


def _failed(reason: str) -> dict[str, object]:
    return {"status": OutboxStatus.FAILED, "finished_at": utcnow(), "last_error": reason[:1000]}
