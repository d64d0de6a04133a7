"""The retention rules: expired pending signatures and finished emails are deleted."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.jobs import purge
from app.mail.backends import dev_mailbox
from app.mail.models import OutboxEmail, OutboxStatus
from app.signatures.models import Signature, SignatureStatus
from app.signatures.service import verify_signature
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign, verify_token


def _exists(session: Session, model: type[Signature] | type[OutboxEmail], id_: int) -> bool:
    return session.scalar(select(model.id).where(model.id == id_)) is not None


def test_purge_deletes_expired_pending_signatures(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url, verify_max_age_days=3)
    now = utcnow()
    letter = make_letter(session)

    def pending(age: timedelta) -> Signature:
        signature = sign(session, letter, settings)
        signature.link_sent_at = now - age
        return signature

    def verified(age: timedelta) -> Signature:
        signature = sign(session, letter, settings)
        verify_signature(session, token=verify_token(settings, signature), settings=settings)
        signature.link_sent_at = now - age
        return signature

    expired = pending(timedelta(days=4))
    long_expired = pending(timedelta(days=40))
    fresh = pending(timedelta(hours=1))
    nearly_expired = pending(timedelta(days=3) - timedelta(minutes=5))
    old_verified = verified(timedelta(days=40))
    new_verified = verified(timedelta(minutes=1))
    session.flush()
    expired_id = expired.id
    # The expired signature's link email follows its own retention rule.
    [expired_email_id] = session.scalars(
        select(OutboxEmail.id).where(OutboxEmail.to_address == expired.email)
    ).all()

    result = purge(session, settings=settings)

    assert result["expired_pending_signatures"] >= 2
    assert not _exists(session, Signature, expired_id)
    assert not _exists(session, Signature, long_expired.id)
    for kept in (fresh, nearly_expired, old_verified, new_verified):
        assert _exists(session, Signature, kept.id)
    statuses = session.execute(
        select(Signature.id, Signature.status).where(Signature.letter_id == letter.id)
    ).all()
    assert sorted(statuses) == sorted(
        [
            (fresh.id, SignatureStatus.PENDING),
            (nearly_expired.id, SignatureStatus.PENDING),
            (old_verified.id, SignatureStatus.VERIFIED),
            (new_verified.id, SignatureStatus.VERIFIED),
        ]
    )
    assert _exists(session, OutboxEmail, expired_email_id)


def test_default_link_age_is_seven_days(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url)
    assert settings.verify_max_age_days == 7
    letter = make_letter(session)
    six_days = sign(session, letter, settings)
    six_days.link_sent_at = utcnow() - timedelta(days=6)
    eight_days = sign(session, letter, settings)
    eight_days.link_sent_at = utcnow() - timedelta(days=8)
    session.flush()
    purge(session, settings=settings)
    assert _exists(session, Signature, six_days.id)
    assert not _exists(session, Signature, eight_days.id)


def _email(
    session: Session,
    status: OutboxStatus,
    *,
    finished_ago: timedelta | None,
    created_ago: timedelta = timedelta(days=30),
) -> OutboxEmail:
    now = utcnow()
    email = OutboxEmail(
        kind="verify",
        to_address="someone@example.org",
        subject="Subject",
        text_body="text",
        html_body="<p>html</p>",
        headers={},
        message_id=f"<{status}-{finished_ago}@test>",
        status=status,
        created_at=now - created_ago,
        next_attempt_at=now - created_ago,
        finished_at=None if finished_ago is None else now - finished_ago,
    )
    session.add(email)
    return email


def test_purge_deletes_finished_emails_after_seven_days(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url)
    old_sent = _email(session, OutboxStatus.SENT, finished_ago=timedelta(days=8))
    old_failed = _email(session, OutboxStatus.FAILED, finished_ago=timedelta(days=30))
    recent_sent = _email(session, OutboxStatus.SENT, finished_ago=timedelta(days=6))
    recent_failed = _email(session, OutboxStatus.FAILED, finished_ago=timedelta(hours=1))
    old_pending = _email(session, OutboxStatus.PENDING, finished_ago=None)
    old_sending = _email(session, OutboxStatus.SENDING, finished_ago=None)
    session.flush()

    result = purge(session, settings=settings)

    assert result["finished_emails"] >= 2
    assert not _exists(session, OutboxEmail, old_sent.id)
    assert not _exists(session, OutboxEmail, old_failed.id)
    for kept in (recent_sent, recent_failed, old_pending, old_sending):
        assert _exists(session, OutboxEmail, kept.id)


def test_purge_twice_deletes_nothing_more(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url)
    letter = make_letter(session)
    stale = sign(session, letter, settings)
    stale.link_sent_at = utcnow() - timedelta(days=10)
    _email(session, OutboxStatus.SENT, finished_ago=timedelta(days=10))
    session.flush()
    first = purge(session, settings=settings)
    assert first["expired_pending_signatures"] >= 1
    assert first["finished_emails"] >= 1
    assert purge(session, settings=settings) == {
        "expired_pending_signatures": 0,
        "finished_emails": 0,
        "dev_mailbox_files": 0,
    }


def test_dev_mailbox_files_follow_the_outbox_retention(
    session: Session, database: Database, tmp_path: Path
) -> None:
    """Dev mail holds addresses too: files older than 7 days are deleted."""
    settings = make_settings(tmp_path, database.url)
    mailbox = dev_mailbox(settings)
    for subject in ("old", "new"):
        message = EmailMessage()
        message["To"] = f"{subject}@example.org"
        message["Subject"] = subject
        message.set_content("body")
        mailbox.send(message)
    old, new = sorted(mailbox.directory.glob("*.eml"))
    eight_days_ago = time.time() - timedelta(days=8).total_seconds()
    os.utime(old, (eight_days_ago, eight_days_ago))

    assert purge(session, settings=settings)["dev_mailbox_files"] == 1
    assert not old.exists()
    assert new.exists()
    assert [m["Subject"] for m in mailbox.messages()] == ["new"]
