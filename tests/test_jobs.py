"""The retention rules: expired pending signatures and finished emails are deleted."""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import jobs
from app.abuse.models import AbuseEvent
from app.db import Database, utcnow
from app.jobs import purge
from app.mail.backends import dev_mailbox
from app.mail.models import OutboxEmail, OutboxStatus
from app.signatures.models import PendingSignature, PendingState, Signature
from app.signatures.service import notify_pending, verify_signature
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign, verify_token


def _exists(session: Session, model: type[PendingSignature] | type[OutboxEmail], id_: int) -> bool:
    return session.scalar(select(model.id).where(model.id == id_)) is not None


def test_purge_deletes_submissions_whose_link_has_expired(
    session: Session, database: Database, tmp_path: Path
) -> None:
    """Each submission lives until its link expires (VERIFY_MAX_AGE_DAYS after the
    email went, or after it was recorded if no email went), confirmed ones included."""
    settings = make_settings(tmp_path, database.url, verify_max_age_days=3)
    letter = make_letter(session)
    now = utcnow()
    rows = {
        name: sign(session, letter, settings, email=f"{name}@example.org")
        for name in ("waiting", "sent", "confirmed", "old_waiting", "old_sent", "old_confirmed")
    }
    notify_pending(session, settings=settings)
    for name in ("confirmed", "old_confirmed"):
        verify_signature(session, token=verify_token(settings, rows[name]), settings=settings)
    rows["waiting"].state = rows["old_waiting"].state = PendingState.WAITING
    for name in ("old_waiting", "old_sent", "old_confirmed"):
        rows[name].expires_at = now - timedelta(minutes=1)
    session.flush()
    # The expired submission's email follows the outbox's own retention rule.
    emails_before = session.scalar(select(func.count()).select_from(OutboxEmail))

    result = purge(session, settings=settings)

    assert result["expired_pending_signatures"] >= 3
    for name, row in rows.items():
        assert _exists(session, PendingSignature, row.id) == (not name.startswith("old")), name
    assert session.scalar(select(func.count()).select_from(OutboxEmail)) == emails_before
    # Confirmed signatures are not pending rows: purging never touches them.
    assert (
        session.scalar(
            select(func.count()).select_from(Signature).where(Signature.letter_id == letter.id)
        )
        == 2
    )


def test_default_link_age_is_seven_days(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url)
    assert settings.verify_max_age_days == 7
    letter = make_letter(session)
    before = utcnow()
    pending = sign(session, letter, settings)
    notify_pending(session, settings=settings)
    session.refresh(pending)
    assert pending.notified_at is not None
    assert pending.expires_at - pending.notified_at == timedelta(days=7)
    assert pending.expires_at >= before + timedelta(days=7)


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
    stale.expires_at = utcnow() - timedelta(days=3)
    _email(session, OutboxStatus.SENT, finished_ago=timedelta(days=10))
    session.flush()
    first = purge(session, settings=settings)
    assert first["expired_pending_signatures"] >= 1
    assert first["finished_emails"] >= 1
    assert purge(session, settings=settings) == {
        "expired_pending_signatures": 0,
        "finished_emails": 0,
        "expired_login_links": 0,
        "expired_organizer_sessions": 0,
        "dev_mailbox_files": 0,
        "abuse_events": 0,
        "spent_challenges": 0,
        "expired_contact_addresses": 0,
        "anonymized_signatures": 0,
    }


def test_purge_deletes_abuse_events_after_thirty_days(
    session: Session, database: Database, tmp_path: Path
) -> None:
    """An abuse event keeps a keyed hash of a client's network: 30 days, then gone."""
    settings = make_settings(tmp_path, database.url)
    letter = make_letter(session)
    now = utcnow()
    events = {
        age: AbuseEvent(
            letter_id=letter.id,
            kind="honeypot",
            source_hash="ab" * 32,
            created_at=now - timedelta(days=age),
        )
        for age in (0, 29, 31, 90)
    }
    session.add_all(events.values())
    session.flush()

    assert purge(session, settings=settings)["abuse_events"] >= 2

    kept = session.scalars(select(AbuseEvent.id).where(AbuseEvent.letter_id == letter.id)).all()
    assert sorted(kept) == sorted([events[0].id, events[29].id])


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


def test_the_worker_loop_checkpoints_and_a_failing_chore_never_stops_the_mail(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop: the purge fails (logged), yet the submission's email goes out, and the
    SQLite WAL is checkpointed to nothing (no old page image of a wiped row stays)."""
    path = tmp_path / "loop.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    settings = make_settings(tmp_path, database.url)
    try:
        with database.write() as session:
            letter = make_letter(session)
            sign(session, letter, settings, email="loop@example.org")
        assert path.with_name("loop.db-wal").stat().st_size > 0

        def broken_purge(*_: object, **__: object) -> None:
            raise RuntimeError("the purge broke")

        monkeypatch.setattr(jobs, "purge", broken_purge)
        monkeypatch.setattr(jobs, "CHECKPOINT_EVERY", timedelta(milliseconds=50))
        wal = path.with_name("loop.db-wal")
        stop = threading.Event()
        mailbox = dev_mailbox(settings)
        thread = threading.Thread(
            target=jobs.run_worker,
            args=(database, mailbox),
            kwargs={"settings": settings, "stop": stop, "poll_seconds": 0.05},
        )
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not mailbox.messages() and time.monotonic() < deadline:
                time.sleep(0.05)
            # After its work, the loop's own checkpoint empties the WAL.
            while wal.stat().st_size and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(timeout=20)
        assert not thread.is_alive()
        assert [m["To"] for m in mailbox.messages()] == ["loop@example.org"]
        assert wal.stat().st_size == 0
    finally:
        database.dispose()
