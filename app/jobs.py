"""The background work, above the domains: the mail worker's loop (new submissions'
emails, delivery, and the retention rules once an hour) and the retention rules.

`undersigned worker` runs the loop in its own process; `undersigned serve` runs it in a
thread unless `--no-worker`; `undersigned purge` applies the retention rules once.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, utcnow
from app.mail.backends import Backend, dev_mailbox
from app.mail.service import SENT_RETENTION, purge_outbox
from app.mail.worker import deliver_due
from app.signatures.service import notify_pending, purge_expired_pending

log = logging.getLogger("undersigned.jobs")

PURGE_EVERY = timedelta(hours=1)


def purge(session: Session, *, settings: Settings) -> dict[str, int]:
    """Every retention rule, in the caller's transaction; how many of each went."""
    return {
        "expired_pending_signatures": purge_expired_pending(session, now=utcnow()),
        "finished_emails": purge_outbox(session),
        "dev_mailbox_files": dev_mailbox(settings).purge(older_than=SENT_RETENTION),
    }


def work_once(database: Database, backend: Backend, *, settings: Settings) -> int:
    """One pass: decide what new submissions get (their emails join the outbox in the
    same transaction), then deliver what is due. Returns how many things were done."""
    with database.write() as session:
        decided = notify_pending(session, settings=settings)
    return decided + deliver_due(database, backend, settings=settings)


def run_worker(
    database: Database,
    backend: Backend,
    *,
    settings: Settings,
    stop: threading.Event,
    poll_seconds: float = 1.0,
) -> None:
    """Deliver until `stop` is set; apply the retention rules once an hour."""
    next_purge = utcnow()
    while not stop.is_set():
        try:
            if utcnow() >= next_purge:
                with database.write() as session:
                    purge(session, settings=settings)
                next_purge = utcnow() + PURGE_EVERY
            if work_once(database, backend, settings=settings):
                continue  # more may be waiting
        except Exception:
            log.exception("mail worker pass failed; retrying")
        stop.wait(poll_seconds)
