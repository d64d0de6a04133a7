"""The outbox worker against a real SMTP server (aiosmtpd on loopback), on SQLite and
PostgreSQL: delivery, retries with backoff, permanent failures, leases, concurrent
claims, and the dev mailbox."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import MailBackend, Settings
from app.db import Database, utcnow
from app.letters.service import get_public_letter
from app.mail import worker
from app.mail.backends import (
    DevMailbox,
    Outgoing,
    SmtpBackend,
    TransientMailError,
    make_backend,
)
from app.mail.models import OutboxEmail, OutboxStatus
from app.mail.worker import LEASE, MAX_ATTEMPTS, backoff, claim_batch, deliver_due
from app.signatures.service import notify_pending, sign_letter, verify_signature
from tests.support.config import make_settings
from tests.support.factories import make_letter, signature_in
from tests.support.ports import free_port
from tests.support.smtp import SmtpServer

VERIFY_LINK = re.compile(r"(\S+)/verify/([A-Za-z0-9_\-.]+)")


def sign_committed(db: Database, settings: Settings, email: str) -> str:
    """A new open letter signed by `email`, committed; returns the letter's slug."""
    with db.write() as session:
        slug = make_letter(session).slug
    with db.write() as session:
        sign_letter(session, slug=slug, data=signature_in(email=email), settings=settings)
        notify_pending(session, settings=settings)  # what the worker does first
    return slug


def add_signer(db: Database, settings: Settings, slug: str, email: str) -> None:
    with db.write() as session:
        sign_letter(session, slug=slug, data=signature_in(email=email), settings=settings)
        notify_pending(session, settings=settings)


def outbox(db: Database) -> list[OutboxEmail]:
    with db.read() as session:
        return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def only_row(db: Database) -> OutboxEmail:
    rows = outbox(db)
    assert len(rows) == 1, rows
    return rows[0]


# 1. End to end -------------------------------------------------------------------------


def test_signing_email_arrives_and_its_link_verifies(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = smtp_settings
    slug = sign_committed(db, settings, "ada@example.org")

    assert deliver_due(db, SmtpBackend(settings), settings=settings) == 1

    assert len(smtp_server.received) == 1
    envelope = smtp_server.received[0]
    assert envelope.rcpt_tos == ["ada@example.org"]
    assert envelope.mail_from == parseaddr(settings.mail_from)[1]
    message = envelope.message
    row = only_row(db)
    assert message["To"] == "ada@example.org"
    assert message["From"] == settings.mail_from
    assert message["Message-ID"] == row.message_id
    assert re.fullmatch(r"<[^<>@\s]+@testserver>", message["Message-ID"])
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert row.status == OutboxStatus.SENT
    assert row.finished_at is not None and row.claim_token is None and row.last_error is None

    found = VERIFY_LINK.search(text_part.get_content())
    assert found, text_part.get_content()
    assert found.group(1) == settings.base_url
    token = found.group(2)
    assert f"{settings.base_url}/verify/{token}" in html_part.get_content()

    with db.write() as session:
        confirmation = verify_signature(session, token=token, settings=settings)
        assert not confirmation.already
    with db.read() as session:
        assert get_public_letter(session, slug=slug).signature_count == 1
    # Nothing more to send: the worker does not send the same email twice.
    assert deliver_due(db, SmtpBackend(settings), settings=settings) == 0
    assert len(smtp_server.received) == 1


# 2. Transient refusal and backoff ------------------------------------------------------


@pytest.mark.parametrize("stage", ["data", "rcpt"])
def test_transient_refusal_is_retried_after_backoff(
    db: Database,
    smtp_settings: Settings,
    smtp_server: SmtpServer,
    stage: str,
) -> None:
    settings = smtp_settings
    sign_committed(db, settings, "grace@example.org")
    smtp_server.refuse("451 4.3.0 Try again later", times=1, at=stage)  # type: ignore[arg-type]
    backend = SmtpBackend(settings)

    start = utcnow()
    assert deliver_due(db, backend, settings=settings, now=start) == 0
    row = only_row(db)
    assert row.status == OutboxStatus.PENDING
    assert row.attempts == 1
    assert row.last_error is not None and "451" in row.last_error
    assert row.claim_token is None and row.lease_expires_at is None
    # backoff(1) is 15..30 seconds from the failure.
    assert start + timedelta(seconds=15) <= row.next_attempt_at
    assert row.next_attempt_at <= utcnow() + timedelta(seconds=30)
    assert smtp_server.received == []

    # Not yet due: nothing is claimed or sent.
    early = row.next_attempt_at - timedelta(seconds=1)
    assert deliver_due(db, backend, settings=settings, now=early) == 0
    assert smtp_server.received == []
    assert only_row(db).attempts == 1

    assert deliver_due(db, backend, settings=settings, now=row.next_attempt_at) == 1
    assert [r.rcpt_tos for r in smtp_server.received] == [["grace@example.org"]]
    row = only_row(db)
    assert row.status == OutboxStatus.SENT
    assert row.attempts == 2
    assert row.last_error is None
    assert smtp_server.attempts == 2


def test_backoff_grows_exponentially_with_bounded_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    for attempts in range(1, 16):
        ceiling = min(worker.BACKOFF_CAP_SECONDS, worker.BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
        samples = [backoff(attempts).total_seconds() for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), (attempts, ceiling)
        assert len(set(samples)) > 1, "no jitter"
    # The exact ends of the range, and the cap.
    monkeypatch.setattr("app.mail.worker.random.uniform", lambda low, high: low)
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [15, 30, 60, 120]
    monkeypatch.setattr("app.mail.worker.random.uniform", lambda low, high: high)
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff(MAX_ATTEMPTS + 20).total_seconds() == worker.BACKOFF_CAP_SECONDS


# 3. Permanent refusal, connection refused ---------------------------------------------


@pytest.mark.parametrize("stage", ["data", "rcpt"])
def test_permanent_refusal_fails_without_retry(
    db: Database,
    smtp_settings: Settings,
    smtp_server: SmtpServer,
    stage: str,
) -> None:
    settings = smtp_settings
    sign_committed(db, settings, "nobody@example.org")
    smtp_server.refuse("550 5.1.1 No such user here", times=None, at=stage)  # type: ignore[arg-type]
    backend = SmtpBackend(settings)

    assert deliver_due(db, backend, settings=settings) == 0
    row = only_row(db)
    assert row.status == OutboxStatus.FAILED
    assert row.last_error is not None
    assert "550" in row.last_error and "No such user here" in row.last_error
    assert row.finished_at is not None and row.claim_token is None
    assert row.attempts == 1

    # Never tried again, however late it gets.
    later = utcnow() + timedelta(days=1)
    assert deliver_due(db, backend, settings=settings, now=later) == 0
    assert smtp_server.attempts == 1
    assert only_row(db).status == OutboxStatus.FAILED


def test_connection_refused_is_transient(
    tmp_path: Path, db: Database, clean_database: Database
) -> None:
    settings = make_settings(
        tmp_path,
        clean_database.url,
        mail_backend=MailBackend.SMTP,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),  # nothing listens there
        smtp_timeout_seconds=5.0,
    )
    sign_committed(db, settings, "ada@example.org")
    start = utcnow()

    assert deliver_due(db, SmtpBackend(settings), settings=settings, now=start) == 0
    row = only_row(db)
    assert row.status == OutboxStatus.PENDING
    assert row.attempts == 1
    assert row.last_error is not None and "ConnectionRefused" in row.last_error
    assert row.next_attempt_at >= start + timedelta(seconds=15)


# 7. Out of attempts --------------------------------------------------------------------


def test_gives_up_after_max_attempts(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = smtp_settings
    sign_committed(db, settings, "ada@example.org")
    smtp_server.refuse("421 4.7.0 Try again later", times=None)
    backend = SmtpBackend(settings)

    now = utcnow()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert deliver_due(db, backend, settings=settings, now=now) == 0
        row = only_row(db)
        assert row.attempts == attempt
        if attempt < MAX_ATTEMPTS:
            assert row.status == OutboxStatus.PENDING, attempt
            assert row.next_attempt_at > now
            now = row.next_attempt_at
    assert row.status == OutboxStatus.FAILED
    assert row.last_error is not None
    assert row.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert "421" in row.last_error
    assert row.finished_at is not None

    assert deliver_due(db, backend, settings=settings, now=now + timedelta(days=1)) == 0
    assert smtp_server.attempts == MAX_ATTEMPTS
    assert smtp_server.received == []


# 4. Leases -----------------------------------------------------------------------------


def claim_and_crash(db: Database, now: datetime) -> list[tuple[int, str]]:
    """A worker that claims a batch, commits, and dies before sending."""
    with db.write() as session:
        return claim_batch(session, now=now, limit=20)


def test_expired_lease_is_claimed_again_and_delivered(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = smtp_settings
    sign_committed(db, settings, "ada@example.org")
    crashed_at = utcnow()
    [(email_id, crashed_token)] = claim_and_crash(db, crashed_at)
    row = only_row(db)
    assert row.status == OutboxStatus.SENDING
    assert row.claim_token == crashed_token
    assert row.lease_expires_at == crashed_at + LEASE
    backend = SmtpBackend(settings)

    # While the lease holds, nobody else takes it.
    for now in (crashed_at, crashed_at + LEASE - timedelta(seconds=1), crashed_at + LEASE):
        assert deliver_due(db, backend, settings=settings, now=now) == 0
    assert smtp_server.received == []
    assert only_row(db).claim_token == crashed_token

    after_lease = crashed_at + LEASE + timedelta(seconds=1)
    assert deliver_due(db, backend, settings=settings, now=after_lease) == 1
    assert len(smtp_server.received) == 1
    row = only_row(db)
    assert row.id == email_id
    assert row.status == OutboxStatus.SENT
    assert row.attempts == 2
    assert row.claim_token is None and row.lease_expires_at is None


def test_stale_worker_does_not_overwrite_the_new_outcome(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    """Worker A claims, then stalls in `send` past its lease; worker B re-claims and
    delivers; then A's send fails. A's outcome must not touch B's result."""
    settings = smtp_settings
    sign_committed(db, settings, "ada@example.org")
    start = utcnow()
    b_sent: list[int] = []

    class StallingBackend:
        def send(self, message: object) -> None:
            later = start + LEASE + timedelta(seconds=1)
            b_sent.append(deliver_due(db, SmtpBackend(settings), settings=settings, now=later))
            raise TransientMailError("timed out after a long stall")

    assert deliver_due(db, StallingBackend(), settings=settings, now=start) == 0
    assert b_sent == [1]
    assert len(smtp_server.received) == 1
    row = only_row(db)
    assert row.status == OutboxStatus.SENT
    assert row.last_error is None
    assert row.finished_at is not None
    assert row.attempts == 2


# 5. Concurrent claims ------------------------------------------------------------------


def test_concurrent_claims_get_disjoint_rows(
    clean_database: Database, db: Database, tmp_path: Path
) -> None:
    """PostgreSQL: FOR UPDATE SKIP LOCKED, the second claimer neither waits nor takes
    the first one's rows. SQLite: BEGIN IMMEDIATE, the second waits for the first."""
    settings = make_settings(tmp_path, clean_database.url)
    with db.write() as session:
        slug = make_letter(session).slug
    with db.write() as session:
        for n in range(6):
            data = signature_in(email=f"signer{n}@example.org")
            sign_letter(session, slug=slug, data=data, settings=settings)
        notify_pending(session, settings=settings)
    now = utcnow()
    second: list[list[tuple[int, str]]] = []
    errors: list[BaseException] = []

    def claim_in_other_session() -> None:
        try:
            with db.write() as other:
                if clean_database.dialect == "postgresql":
                    # Fail loudly instead of hanging if SKIP LOCKED ever waits.
                    other.connection().exec_driver_sql("SET LOCAL lock_timeout = '5s'")
                second.append(claim_batch(other, now=now, limit=20))
        except BaseException as exc:
            errors.append(exc)

    with db.write() as first:
        first_claims = claim_batch(first, now=now, limit=2)
        assert len(first_claims) == 2
        thread = threading.Thread(target=claim_in_other_session)
        thread.start()
        thread.join(timeout=10 if clean_database.dialect == "postgresql" else 0.5)
        if clean_database.dialect == "postgresql":
            assert not thread.is_alive(), "the second claimer waited for the first"
        else:
            assert thread.is_alive(), "SQLite writers should be serialised"
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    [second_claims] = second

    first_ids = {email_id for email_id, _ in first_claims}
    second_ids = {email_id for email_id, _ in second_claims}
    # PostgreSQL: the first one's rows were locked and skipped. SQLite: the second ran
    # after the first committed, when those rows were leased and no longer due.
    assert first_ids.isdisjoint(second_ids)
    assert len(second_ids) == 4
    assert first_ids | second_ids == {row.id for row in outbox(db)}
    rows = outbox(db)
    assert all(row.status == OutboxStatus.SENDING and row.attempts == 1 for row in rows)


# 6. The dev mailbox --------------------------------------------------------------------


def test_dev_mailbox_writes_a_parsable_eml(
    tmp_path: Path, clean_database: Database, db: Database
) -> None:
    settings = make_settings(tmp_path, clean_database.url, mail_backend=MailBackend.DEV)
    backend = make_backend(settings)
    assert isinstance(backend, DevMailbox)
    sign_committed(db, settings, "ada@example.org")

    assert deliver_due(db, backend, settings=settings) == 1

    directory = settings.data_dir / "dev-mail"
    files = list(directory.iterdir())
    assert [path.suffix for path in files] == [".eml"]  # no temporary file left behind
    [message] = backend.messages()
    assert message["To"] == "ada@example.org"
    assert message["Message-ID"] == only_row(db).message_id
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    assert html_part.get_content_type() == "text/html"
    assert f"{settings.base_url}/verify/" in text_part.get_content()
    assert only_row(db).status == OutboxStatus.SENT


def test_worker_that_lost_its_lease_does_not_send_the_rest_of_its_batch(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    """Worker A claims two emails and stalls on the first past its lease; worker B
    takes both over and sends them. A must not then send the second one again."""
    settings = smtp_settings
    slug = sign_committed(db, settings, "ada@example.org")
    add_signer(db, settings, slug, "bob@example.org")
    start = utcnow()
    smtp = SmtpBackend(settings)
    b_sent: list[int] = []

    class StallsOnce:
        def send(self, message: Outgoing) -> None:
            if not b_sent:
                later = start + LEASE + timedelta(seconds=1)
                b_sent.append(deliver_due(db, smtp, settings=settings, now=later))
            smtp.send(message)

    deliver_due(db, StallsOnce(), settings=settings, now=start)

    assert b_sent == [2]
    first, second = outbox(db)
    received_ids = [message["Message-ID"] for message in smtp_server.messages()]
    # A was already sending the first one when it lost the lease (at least once);
    # it had not started the second, so that one goes out once.
    assert received_ids.count(second.message_id) == 1
    assert first.status == second.status == OutboxStatus.SENT


def test_unexpected_error_in_one_email_does_not_stall_the_batch(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = smtp_settings
    slug = sign_committed(db, settings, "broken@example.org")
    add_signer(db, settings, slug, "bob@example.org")
    smtp = SmtpBackend(settings)

    class BreaksOnOne:
        def send(self, message: Outgoing) -> None:
            if message["To"] == "broken@example.org":
                raise RuntimeError("a bug in a backend")
            smtp.send(message)

    start = utcnow()
    assert deliver_due(db, BreaksOnOne(), settings=settings, now=start) == 1
    broken, fine = outbox(db)
    assert fine.status == OutboxStatus.SENT
    assert [r.rcpt_tos for r in smtp_server.received] == [["bob@example.org"]]
    # The broken one is retried later like a transient failure, not left `sending`.
    assert broken.status == OutboxStatus.PENDING
    assert broken.attempts == 1 and broken.claim_token is None
    assert broken.last_error == "RuntimeError: a bug in a backend"
    assert broken.next_attempt_at >= start + timedelta(seconds=15)


def test_letter_title_with_a_line_break_still_makes_a_valid_subject(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = smtp_settings
    with db.write() as session:
        letter = make_letter(session)
        # Forms refuse control characters in a title; a letter stored by other means (an
        # older version, the database itself) must still make a valid email.
        letter.title = "Cancel the contracts\r\nBcc: everyone@example.org"
        slug = letter.slug
    add_signer(db, settings, slug, "ada@example.org")

    assert deliver_due(db, SmtpBackend(settings), settings=settings) == 1

    [received] = smtp_server.received
    assert received.rcpt_tos == ["ada@example.org"]
    message = received.message
    # (Python's folder may start the value on a continuation line: hence strip().)
    assert message["Subject"].strip() == (
        "Confirm your signature: Cancel the contracts Bcc: everyone@example.org"
    )
    assert message["Bcc"] is None
