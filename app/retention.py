"""The retention rules, applied by `undersigned purge` and hourly by the worker."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.mail.backends import dev_mailbox
from app.mail.service import SENT_RETENTION, purge_outbox
from app.signatures.service import purge_expired_pending


def purge(session: Session, *, settings: Settings) -> dict[str, int]:
    return {
        "expired_pending_signatures": purge_expired_pending(
            session, settings=settings, now=utcnow()
        ),
        "finished_emails": purge_outbox(session),
        "dev_mailbox_files": dev_mailbox(settings).purge(older_than=SENT_RETENTION),
    }
