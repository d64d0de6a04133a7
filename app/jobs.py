"""The background work, above the domains: the mail worker's loop (new submissions'
emails, delivery, the signature log's sequencer every LOG_SEQUENCE_SECONDS, the
retention rules once an hour, the integrity check once a day, and on SQLite a WAL
checkpoint once a minute) and the retention rules.

`undersigned worker` runs the loop in its own process; `undersigned serve` runs it in a
thread unless `--no-worker`; `undersigned purge` applies the retention rules once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.abuse.models import AbuseEvent
from app.abuse.proof import purge_spent_challenges
from app.config import Settings
from app.db import Database, utcnow
from app.integrity import run_check
from app.mail.backends import Backend, dev_mailbox
from app.mail.models import OutboxEmail, OutboxStatus
from app.mail.service import SENT_RETENTION, purge_outbox
from app.mail.worker import deliver_due
from app.organizers.logins import purge_login_links, send_login_links
from app.organizers.service import purge_expired_sessions
from app.redaction import REDACT
from app.signatures.models import PendingSignature, PendingState
from app.signatures.retention import forget_closed_letters
from app.signatures.service import notify_pending, purge_expired_pending
from app.signlog import sequencer
from app.updates.service import fan_out_updates

log = logging.getLogger("undersigned.jobs")
log.addFilter(REDACT)  # a failing pass may quote an address or a token

PURGE_EVERY = timedelta(hours=1)
CHECKPOINT_EVERY = timedelta(minutes=1)
CHECK_EVERY = timedelta(days=1)
CHECK_FIRST_AFTER = timedelta(minutes=10)
"""The integrity check's first run after the worker starts (then once a day)."""
ABUSE_EVENT_RETENTION = timedelta(days=30)


def purge(session: Session, *, settings: Settings) -> dict[str, int]:
    """Every retention rule, in the caller's transaction; how many of each went."""
    return {
        "expired_pending_signatures": purge_expired_pending(session, now=utcnow()),
        "finished_emails": purge_outbox(session),
        "expired_login_links": purge_login_links(session, now=utcnow()),
        "expired_organizer_sessions": purge_expired_sessions(session, now=utcnow()),
        "dev_mailbox_files": dev_mailbox(settings).purge(older_than=SENT_RETENTION),
        "abuse_events": purge_abuse_events(session, now=utcnow()),
        "spent_challenges": purge_spent_challenges(session, now=utcnow()),
        # Closed letters: kept contact addresses expire, signers are anonymized.
        **forget_closed_letters(session, now=utcnow()),
    }


def purge_abuse_events(session: Session, *, now: datetime) -> int:
    """Abuse events (with their keyed hash of a client's network) go after 30 days."""
    cutoff = now - ABUSE_EVENT_RETENTION
    result = session.execute(delete(AbuseEvent).where(AbuseEvent.created_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def forget_in_files(database: Database) -> None:
    """SQLite keeps the pages a transaction wrote in its WAL file until a checkpoint, so
    an address wiped from a row can still sit in an older page image there. A TRUNCATE
    checkpoint copies the WAL into the database file (where `secure_delete` has zeroed
    what was deleted) and empties it. PostgreSQL: nothing to do here."""
    if database.dialect == "sqlite":
        database.checkpoint()


def work_once(database: Database, backend: Backend, *, settings: Settings, senders: int = 1) -> int:
    """One pass: decide what new submissions get (their emails join the outbox in the
    same transaction), send asked-for sign-in links, queue the next batch of any
    update's emails, then deliver what is due. Returns how many things were done."""
    with database.write() as session:
        decided = notify_pending(session, settings=settings)
    with database.write() as session:
        decided += send_login_links(session, settings=settings)
    with database.write() as session:
        decided += fan_out_updates(session, settings=settings)
    return decided + deliver_due(database, backend, settings=settings, senders=senders)


def run_worker(
    database: Database,
    backend: Backend,
    *,
    settings: Settings,
    stop: threading.Event,
    poll_seconds: float = 1.0,
    senders: int = 1,
) -> None:
    """Deliver until `stop` is set; sequence the signature log at least every
    LOG_SEQUENCE_SECONDS (at once again while a pass fills a whole batch), apply the
    retention rules once an hour, run the integrity check once a day (logging its
    report) and, on SQLite, checkpoint the WAL once a minute. A failing chore is logged
    and retried on its own schedule: it never stops the mail."""
    next_purge = next_checkpoint = next_sequence = utcnow()
    next_check = utcnow() + CHECK_FIRST_AFTER
    sequence_every = timedelta(seconds=settings.log_sequence_seconds)
    while not stop.is_set():
        if utcnow() >= next_sequence:
            next_sequence = utcnow() + sequence_every
            if _chore("log sequencing", lambda: sequence_log(database, settings)) is True:
                next_sequence = utcnow()  # a full batch: more is queued
        if utcnow() >= next_purge:
            next_purge = utcnow() + PURGE_EVERY
            _chore("retention purge", lambda: _purge_now(database, settings))
        if utcnow() >= next_check:
            next_check = utcnow() + CHECK_EVERY
            _chore("integrity check", lambda: check_and_log(database))
        if utcnow() >= next_checkpoint:
            next_checkpoint = utcnow() + CHECKPOINT_EVERY
            _chore("WAL checkpoint", lambda: forget_in_files(database))
        busy = False
        try:
            busy = work_once(database, backend, settings=settings, senders=senders) > 0
        except Exception:
            log.exception("mail worker pass failed; retrying")
        if not busy:  # when busy, go again at once: more may be waiting
            until_sequence = (next_sequence - utcnow()).total_seconds()
            stop.wait(max(0.0, min(poll_seconds, until_sequence)))


def sequence_log(database: Database, settings: Settings) -> bool:
    """One sequencer pass over every letter with queued log entries; whether a letter
    filled a whole batch (so more may be queued)."""
    done = sequencer.sequence_letters(database, settings)
    return any(batch.appended >= sequencer.BATCH for batch in done)


def check_and_log(database: Database) -> bool:
    """The integrity report (no repair), logged: a warning when something is wrong.
    It names letters by slug and counts emails by kind, never an address."""
    report = run_check(database)
    log.log(
        logging.INFO if report.ok else logging.WARNING,
        "integrity check:\n%s",
        "\n".join(report.lines()),
    )
    return report.ok


def _purge_now(database: Database, settings: Settings) -> None:
    with database.write() as session:
        purge(session, settings=settings)
    forget_in_files(database)  # what was erased leaves the WAL now, not in a minute


def _chore(name: str, run: Callable[[], object]) -> object:
    """`run()`'s result, or None when it failed (logged: the names of what failed, never
    an address, a name or a token)."""
    try:
        return run()
    except Exception:
        log.exception("%s failed; trying again later", name)
        return None


# --- The worker's backlog, for /metrics ------------------------------------------------

BACKLOG_COUNT_CAP = 100_000
"""The outbox depth is counted up to this (a bounded read through the due index)."""


@dataclass(frozen=True, slots=True)
class Backlog:
    outbox_depth: int
    """Emails waiting for their first or next attempt (due or not), up to the cap."""
    oldest_due_email_seconds: float
    """How long the oldest due email has been due; 0 when none is."""
    worker_lag_seconds: float
    """How long the oldest due submission has waited for the worker's decision (its
    email); 0 when none waits."""


def backlog(database: Database, *, now: datetime | None = None) -> Backlog:
    """Three reads through the (status/state, due) indexes: cheap enough for each scrape."""
    now = now or utcnow()
    pending = OutboxEmail.status == OutboxStatus.PENDING
    with database.read() as session:
        capped = select(OutboxEmail.id).where(pending).limit(BACKLOG_COUNT_CAP).subquery()
        depth = session.scalar(select(func.count()).select_from(capped)) or 0
        oldest_email = session.scalar(
            select(func.min(OutboxEmail.next_attempt_at)).where(
                pending, OutboxEmail.next_attempt_at <= now
            )
        )
        oldest_waiting = session.scalar(
            select(func.min(PendingSignature.due_at)).where(
                PendingSignature.state == PendingState.WAITING, PendingSignature.due_at <= now
            )
        )
    return Backlog(
        outbox_depth=int(depth),
        oldest_due_email_seconds=_age(oldest_email, now),
        worker_lag_seconds=_age(oldest_waiting, now),
    )


def _age(since: datetime | None, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0
