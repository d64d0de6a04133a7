"""What the outbox keeps about a signer, and what the mail code writes in its logs and
error texts, on SQLite and PostgreSQL (D50).

- A finished email (sent, or failed for good) keeps no address, subject, body or
  headers: the UPDATE that records the outcome empties them.
- SMTP replies quote the recipient (`550 <victim@example.org> unknown`) and sometimes a
  link: neither reaches `last_error` or the log.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from app import tokens
from app.config import Settings
from app.db import Database, utcnow
from app.mail.backends import Outgoing, SmtpBackend
from app.mail.models import OutboxEmail, OutboxStatus
from app.mail.service import purge_outbox
from app.mail.worker import MAX_ATTEMPTS, deliver_due
from tests.mail.outbox import queue_email, rows
from tests.support.config import TEST_SECRET
from tests.support.smtp import SmtpServer

VICTIM = "victim@example.org"
NAME = "Ada Lovelace"
PUBLIC_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TOKEN = tokens.issue(TEST_SECRET, tokens.Purpose.SIGNATURE_VERIFY, PUBLIC_ID)
SECRETS = (VICTIM, "victim", NAME, TOKEN, TOKEN.split(".")[0], PUBLIC_ID)
"""The address, its mailbox name, the name, the link's token, its payload and the id
inside it."""


def queue_link_email(db: Database, settings: Settings) -> int:
    link = f"{settings.base_url}/verify/{TOKEN}"
    return queue_email(db, to=VICTIM, text=f"Hello {NAME}, confirm here: {link}")


def assert_forgotten(row: OutboxEmail) -> None:
    """A finished row: the address and every part of the message are gone."""
    assert row.to_address is None
    assert (row.subject, row.text_body, row.html_body, row.headers) == ("", "", "", {})
    assert row.finished_at is not None
    assert row.claim_token is None and row.lease_expires_at is None


def app_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the app logged, as its handlers print it (without the test SMTP server's own
    log, `mail.log`, which quotes every address it receives)."""
    return "\n".join(
        caplog.handler.format(record)
        for record in caplog.records
        if not record.name.startswith("mail.log")
    )


def assert_nothing_leaked(*texts: str | None) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret.lower() not in (text or "").lower(), (secret, text)


# 1. Finished emails forget the address and the message ----------------------------------


def test_a_sent_email_keeps_no_address_and_no_message(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    queue_link_email(db, smtp_settings)
    [before] = rows(db)

    assert deliver_due(db, SmtpBackend(smtp_settings), settings=smtp_settings) == 1

    [received] = smtp_server.messages()
    assert received["To"] == VICTIM and TOKEN in received.get_body().get_content()  # type: ignore[union-attr]
    [row] = rows(db)
    assert_forgotten(row)
    # What the row is for now: what happened, when, how often, to which Message-ID.
    assert row.status == OutboxStatus.SENT
    assert (row.kind, row.message_id, row.attempts) == (before.kind, before.message_id, 1)
    assert row.created_at == before.created_at
    assert row.last_error is None


def test_a_permanently_refused_email_keeps_no_address_and_a_redacted_reason(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    queue_link_email(db, smtp_settings)
    smtp_server.refuse(f"550 5.1.1 <{VICTIM}> unknown", times=None, at="rcpt")

    assert deliver_due(db, SmtpBackend(smtp_settings), settings=smtp_settings) == 0

    [row] = rows(db)
    assert row.status == OutboxStatus.FAILED
    assert_forgotten(row)
    assert row.last_error is not None and row.last_error.startswith("550 b'5.1.1 <")
    assert_nothing_leaked(row.last_error)


def test_an_email_that_runs_out_of_attempts_keeps_no_address(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    queue_link_email(db, smtp_settings)
    smtp_server.refuse(f"451 4.2.0 <{VICTIM}> mailbox busy", times=None, at="rcpt")
    backend = SmtpBackend(smtp_settings)
    now = utcnow()
    for _ in range(MAX_ATTEMPTS - 1):
        deliver_due(db, backend, settings=smtp_settings, now=now)
        [row] = rows(db)
        # Still to be sent: it keeps what it needs for the next attempt.
        assert row.status == OutboxStatus.PENDING
        assert row.to_address == VICTIM and TOKEN in row.text_body
        now = row.next_attempt_at

    deliver_due(db, backend, settings=smtp_settings, now=now)

    [row] = rows(db)
    assert row.status == OutboxStatus.FAILED and row.attempts == MAX_ATTEMPTS
    assert_forgotten(row)
    assert row.last_error is not None
    assert row.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempts: 451 b'4.2.0")
    assert_nothing_leaked(row.last_error)


def test_purge_empties_finished_rows_that_still_hold_a_message(db: Database) -> None:
    """Rows finished before this rule (or by an older worker) are emptied by the next
    retention pass, days before the 7-day delete."""
    sent, failed, waiting = (queue_email(db, to=f"{n}@example.org") for n in "abc")
    with db.write() as session:
        for email_id, status in ((sent, OutboxStatus.SENT), (failed, OutboxStatus.FAILED)):
            email = session.get_one(OutboxEmail, email_id)
            email.status = status
            email.finished_at = utcnow() - timedelta(days=1)

    with db.write() as session:
        assert purge_outbox(session) == 0  # nothing is 7 days old: nothing deleted

    by_id = {row.id: row for row in rows(db)}
    assert_forgotten(by_id[sent])
    assert_forgotten(by_id[failed])
    assert by_id[waiting].to_address == "c@example.org"  # still to be sent


# 2. No address or link in error texts and logs -----------------------------------------


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("rcpt", f"550 <{VICTIM}> unknown"),
        ("data", f"550 <{VICTIM}> unknown"),
        ("rcpt", f"451 4.2.0 <{VICTIM}>: mailbox busy, try later"),
        ("data", f"554 5.7.1 http://testserver/verify/{TOKEN} is on a block list"),
        ("data", f"554 5.7.1 rejected: <{VICTIM}>, link ?token={PUBLIC_ID}"),
        # The recipient's own name for its mailbox (the worker knows the address).
        ("rcpt", "550 5.1.1 mailbox VICTIM does not exist"),
    ],
)
def test_smtp_replies_reach_neither_last_error_nor_the_log(
    db: Database,
    smtp_settings: Settings,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
    stage: str,
    reply: str,
) -> None:
    queue_link_email(db, smtp_settings)
    smtp_server.refuse(reply, times=None, at=stage)  # type: ignore[arg-type]

    with caplog.at_level(logging.DEBUG):
        assert deliver_due(db, SmtpBackend(smtp_settings), settings=smtp_settings) == 0

    [row] = rows(db)
    code = reply[:3]
    # Still useful: the reply's code and words, in the row and in the log.
    assert row.last_error is not None and row.last_error.startswith(code)
    logged = app_log(caplog)
    assert f"email {row.id}: " in logged and code in logged
    assert_nothing_leaked(row.last_error, logged)


def test_an_unexpected_error_quoting_the_address_is_redacted_with_its_traceback(
    db: Database, smtp_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    queue_link_email(db, smtp_settings)

    class Broken:
        def send(self, message: Outgoing) -> None:
            try:
                raise LookupError(f"no route for {message['To']}")
            except LookupError as exc:
                link = f"{smtp_settings.base_url}/verify/{TOKEN}"
                raise RuntimeError(f"cannot send {link} to {message['To']}") from exc

    with caplog.at_level(logging.DEBUG):
        assert deliver_due(db, Broken(), settings=smtp_settings) == 0

    [row] = rows(db)
    assert row.status == OutboxStatus.PENDING  # retried later, like a transient failure
    assert row.last_error is not None and row.last_error.startswith("RuntimeError: ")
    logged = app_log(caplog)
    assert "Traceback" in logged and "LookupError: no route for [address]" in logged
    assert_nothing_leaked(row.last_error, logged)
