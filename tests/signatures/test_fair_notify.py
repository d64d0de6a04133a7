"""Honest signers first: the worker decides new submissions in turn across the networks
that sent them (`source_hash`), and their emails are keyed by that network in the
outbox, so that a flood from one source delays only itself. The per-address cap and
the advisory locks per address still hold."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, utcnow
from app.emails import email_domain
from app.jobs import work_once
from app.letters.models import Letter
from app.letters.service import get_public_letter
from app.mail.backends import SmtpBackend
from app.mail.models import OutboxEmail, OutboxStatus
from app.signatures.addresses import email_hash
from app.signatures.models import PendingSignature, PendingState
from app.signatures.service import notify_pending, verify_signature
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import make_letter, sign
from tests.support.smtp import SmtpServer

FLOOD = "f" * 64
"""The flooding network's keyed hash."""
HONEST = "a" * 64
VERIFY_LINK = re.compile(r"(\S+)/verify/([A-Za-z0-9_\-.]+)")


def _flood(session: Session, letter: Letter, settings: Settings, count: int) -> None:
    """`count` waiting submissions from one source, to addresses of its choosing (at
    the honest signer's domain), straight into the table: as many sign requests
    would leave them, oldest first."""
    start = utcnow() - timedelta(minutes=5)
    rows = []
    for n in range(count):
        address = f"flood{n}@example.org"
        at = start + timedelta(milliseconds=n)
        rows.append(
            {
                "public_id": secrets.token_urlsafe(18),
                "letter_id": letter.id,
                "state": PendingState.WAITING,
                "name": f"Bot {n}",
                "email": address,
                "email_hash": email_hash(settings.secret, letter.id, address),
                "email_domain": email_domain(address),
                "created_at": at,
                "due_at": at,
                "expires_at": at + timedelta(days=7),
                "source_hash": FLOOD,
            }
        )
    session.execute(insert(PendingSignature), rows)


def _honest(
    session: Session, letter: Letter, settings: Settings, **fields: Any
) -> PendingSignature:
    """A submission through the service, from another network (what the sign route
    records; set here so that the test does not depend on how the route hashes)."""
    pending = sign(session, letter, settings, **fields)
    pending.source_hash = HONEST
    session.flush()
    return pending


def _email_to(session: Session, address: str) -> OutboxEmail | None:
    return session.scalar(select(OutboxEmail).where(OutboxEmail.to_address == address))


def test_an_honest_submission_is_decided_in_the_first_batch_despite_a_flood(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    _flood(session, letter, settings, 2000)
    honest = _honest(session, letter, settings, email="honest@example.org")

    assert notify_pending(session, settings=settings, limit=100) == 100

    session.refresh(honest)
    assert honest.state == PendingState.SENT
    email = _email_to(session, "honest@example.org")
    assert email is not None and email.kind == "verify"
    # Keyed by its network in the outbox, not by the domain it shares with the flood.
    assert (email.priority, email.fairness_key) == (0, HONEST)
    flood_emails = session.scalars(
        select(OutboxEmail.fairness_key).where(OutboxEmail.to_address.like("flood%@example.org"))
    ).all()
    assert len(flood_emails) == 99 and set(flood_emails) == {FLOOD}
    waiting = session.scalar(
        select(func.count())
        .select_from(PendingSignature)
        .where(
            PendingSignature.letter_id == letter.id,
            PendingSignature.state == PendingState.WAITING,
        )
    )
    assert waiting == 2000 - 99


def test_sources_take_turns_oldest_first(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    rows = []
    for n, source in enumerate("xxxxyyz"):
        pending = sign(session, letter, settings, email=f"s{n}@{source}.example")
        pending.source_hash = source * 64
        pending.due_at = utcnow() - timedelta(minutes=1) + timedelta(seconds=n)
        rows.append(pending)
    session.flush()

    decided: list[int] = []
    for expected in ([0, 4, 6], [1, 5], [2], [3]):
        assert notify_pending(session, settings=settings, limit=len(expected)) == len(expected)
        for row in rows:
            session.refresh(row)
        now_sent = [n for n, row in enumerate(rows) if row.state == PendingState.SENT]
        assert [n for n in now_sent if n not in decided] == expected
        decided = now_sent


def test_a_submission_without_a_source_is_keyed_by_its_domain(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    sign(session, letter, settings, email="someone@Mail.Example.net")
    notify_pending(session, settings=settings)
    email = session.scalar(select(OutboxEmail).where(OutboxEmail.to_address.like("someone@%")))
    assert email is not None and email.fairness_key == "mail.example.net"


def test_the_cap_per_address_holds_in_turn(session: Session, settings: Settings) -> None:
    """One source sends the same victim's address eight times: five links in the
    window (the default cap), the rest superseded or held; the honest signer's link
    goes at once."""
    letter = make_letter(session)
    victim = [_honest(session, letter, settings, email="victim@example.org") for _ in range(8)]
    for row in victim:
        row.source_hash = FLOOD
    honest = _honest(session, letter, settings, email="honest@example.org")
    session.flush()

    for _ in range(5):
        notify_pending(session, settings=settings)

    to_victim = session.scalar(
        select(func.count())
        .select_from(OutboxEmail)
        .where(OutboxEmail.to_address == "victim@example.org")
    )
    cap, _ = settings.email_cap
    assert cap == 5
    assert to_victim == cap
    session.refresh(honest)
    assert honest.state == PendingState.SENT
    for row in victim:
        session.refresh(row)
    states = [row.state for row in victim]
    assert states.count(PendingState.SENT) == cap
    assert states[-1] == PendingState.WAITING  # the newest waits for the window
    assert victim[-1].due_at > utcnow()


@contextmanager
def _statements(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_ranking_reads_the_due_index(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    _flood(session, letter, settings, 2000)
    with _statements(session.get_bind()) as seen:
        notify_pending(session, settings=settings, limit=10)
    [(ranking, parameters)] = [s for s in seen if "row_number()" in s[0]]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {ranking}", parameters)
        plan = json.dumps(rows.scalar_one())
        connection.exec_driver_sql("SET LOCAL enable_seqscan = on")
        # The oldest (forward) and the newest (backward), in index order.
        assert plan.count('"Index Name": "ix_pending_signatures_due"') >= 2, plan
        assert '"Scan Direction": "Backward"' in plan, plan
        assert '"Node Type": "Seq Scan"' not in plan, plan
    else:
        found = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {ranking}", parameters)
        plan = "\n".join(str(row[-1]) for row in found)
        index = (
            "SEARCH pending_signatures USING INDEX ix_pending_signatures_due (state=? AND due_at<?)"
        )
        assert plan.count(index) == 2, plan
        assert "SCAN pending_signatures" not in plan, plan


def test_two_workers_at_once_decide_different_submissions(
    postgres: Database, tmp_path: Path
) -> None:
    truncate(postgres)
    settings = make_settings(tmp_path, postgres.url)
    with postgres.write() as session:
        letter = make_letter(session)
        for n in range(30):
            pending = sign(session, letter, settings, email=f"p{n}@example.org")
            pending.source_hash = "abc"[n % 3] * 64
    with postgres.write() as first, postgres.write() as second:
        assert notify_pending(first, settings=settings, limit=10) == 10
        # The first worker's rows and addresses stay locked (uncommitted) meanwhile.
        assert notify_pending(second, settings=settings, limit=10) == 10
    with postgres.read() as session:
        emails = session.scalars(select(OutboxEmail.to_address)).all()
    assert len(emails) == len(set(emails)) == 20


# --- End to end: a real SMTP server on loopback --------------------------------------


def test_an_honest_link_arrives_first_while_a_flood_is_queued(
    clean_database: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    """2,000 submissions from one source are queued (and the worker has already moved
    some of them into the outbox) when an honest signer at the same domain signs: the
    worker's next pass delivers the honest link in its first batch, and the link
    confirms. Asserted on the order of delivery, not on the clock."""
    db, settings = clean_database, smtp_settings
    backend = SmtpBackend(settings)
    with db.write() as session:
        letter = make_letter(session)
        slug = letter.slug
        _flood(session, letter, settings, 2000)
    for _ in range(3):  # the flood is being worked through
        work_once(db, backend, settings=settings)
    with db.read() as session:
        queued_emails = session.scalar(
            select(func.count())
            .select_from(OutboxEmail)
            .where(OutboxEmail.status == OutboxStatus.PENDING)
        )
    assert queued_emails is not None and queued_emails >= 200
    delivered_before = len(smtp_server.received)
    assert delivered_before >= 40

    with db.write() as session:
        letter = session.scalars(select(Letter).where(Letter.slug == slug)).one()
        _honest(session, letter, settings, email="honest@example.org")

    passes = 0
    while not any(r.rcpt_tos == ["honest@example.org"] for r in smtp_server.received):
        passes += 1
        assert passes <= 3, "the honest link is still queued"
        work_once(db, backend, settings=settings)
    after = [r.rcpt_tos[0] for r in smtp_server.received[delivered_before:]]
    position = after.index("honest@example.org")
    assert passes == 1
    assert position < 20, after  # in the first batch the worker sent after it signed
    with db.read() as session:
        still_waiting = session.scalar(
            select(func.count())
            .select_from(PendingSignature)
            .where(PendingSignature.state == PendingState.WAITING)
        )
    assert still_waiting is not None and still_waiting > 1000, "the flood is still queued"

    [received] = [r for r in smtp_server.received if r.rcpt_tos == ["honest@example.org"]]
    text_part = received.message.get_body(preferencelist=("plain",))
    assert text_part is not None
    found = VERIFY_LINK.search(text_part.get_content())
    assert found, text_part.get_content()
    with db.write() as session:
        verify_signature(session, token=found.group(2), settings=settings)
    with db.read() as session:
        assert get_public_letter(session, slug=slug).signature_count == 1
