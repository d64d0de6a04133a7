"""Leases: short, renewed right before each send and, while a send lasts, by a
heartbeat, so that a crashed worker's emails wait at most LEASE (D52) while a live but
slow one never loses its claim."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from app.config import Settings
from app.db import Database, utcnow
from app.mail import worker
from app.mail.backends import Outgoing
from app.mail.models import OutboxStatus
from app.mail.worker import LEASE, claim_batch, deliver_due
from tests.mail.outbox import queue_email, rows


def test_each_send_first_renews_the_lease_of_its_batch(
    db: Database, smtp_settings: Settings
) -> None:
    """The batch's second email waited for the first one's send: its lease is renewed
    from the moment its own send starts, not left to run out from the claim."""
    for n in range(2):
        queue_email(db, to=f"signer{n}@example.org")
    leases: list[datetime] = []

    class Slowish:
        def send(self, message: Outgoing) -> None:
            [row] = [row for row in rows(db) if row.message_id == message["Message-ID"]]
            assert row.lease_expires_at is not None
            leases.append(row.lease_expires_at)
            time.sleep(0.2)

    start = utcnow()
    assert deliver_due(db, Slowish(), settings=smtp_settings, now=start) == 2

    claimed_until = start + LEASE
    first, second = leases
    assert first >= claimed_until
    assert second >= claimed_until + timedelta(seconds=0.2)


def test_a_long_send_keeps_renewing_its_lease(
    db: Database, smtp_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "HEARTBEAT_SECONDS", 0.05)
    queue_email(db, to="ada@example.org")
    renewed: list[tuple[datetime, datetime]] = []

    class Slow:
        """Sends until it has seen the heartbeat move the lease (or 10 s)."""

        def send(self, message: Outgoing) -> None:
            [row] = rows(db)
            first = row.lease_expires_at
            assert row.status == OutboxStatus.SENDING and first is not None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                [row] = rows(db)
                if row.lease_expires_at != first:
                    assert row.lease_expires_at is not None
                    renewed.append((first, row.lease_expires_at))
                    return
                time.sleep(0.02)

    assert deliver_due(db, Slow(), settings=smtp_settings) == 1

    [(first, later)] = renewed
    assert later > first
    [row] = rows(db)
    assert row.status == OutboxStatus.SENT and row.lease_expires_at is None


def test_the_heartbeat_stops_when_the_claim_is_lost(
    db: Database, smtp_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker took the email over (this one was too slow): the heartbeat must
    not give the lease back to the worker that lost it."""
    monkeypatch.setattr(worker, "HEARTBEAT_SECONDS", 0.05)
    queue_email(db, to="ada@example.org")
    taken_over: list[datetime | None] = []

    class LosesItsClaim:
        def send(self, message: Outgoing) -> None:
            later = utcnow() + LEASE + timedelta(seconds=1)
            with db.write() as session:
                [(_, token)] = claim_batch(session, now=later, limit=20)
            [row] = rows(db)
            assert row.claim_token == token
            taken_over.append(row.lease_expires_at)
            time.sleep(0.3)  # several heartbeats: none of them may renew the other's claim

    deliver_due(db, LosesItsClaim(), settings=smtp_settings)

    [row] = rows(db)
    assert row.status == OutboxStatus.SENDING  # the other worker's, untouched
    assert [row.lease_expires_at] == taken_over
