"""Writing emails into the outbox, the retention rules for finished ones, and keeping
addresses and link tokens out of error texts and logs (`redact`)."""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.mail.models import OutboxEmail, OutboxStatus
from app.templating import render_blocks

SENT_RETENTION = timedelta(days=7)
MAX_HEADER_LINE = 998
"""RFC 5322's limit on a line, CRLF excluded."""
_HEADER_NAME = re.compile(r"[!-9;-~]+")
"""RFC 5322 field names: printable ASCII except the colon."""

FORGOTTEN: dict[str, Any] = {
    "to_address": None,
    "subject": "",
    "text_body": "",
    "html_body": "",
    "headers": {},
}
"""What a finished email (sent, or failed for good) keeps of its content: nothing. The
row keeps kind, status, times, attempts, Message-ID and a redacted `last_error` (D50)."""


def enqueue(
    session: Session,
    *,
    settings: Settings,
    kind: str,
    to: str,
    context: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> OutboxEmail:
    """Render `templates/emails/{kind}.jinja` (blocks subject, text, html) into the
    outbox, in the caller's transaction. The worker delivers it after commit.

    `headers`: more header fields, such as `List-Unsubscribe`; each value one line of
    ASCII (they are sent as written, never re-encoded: see `backends.build_message`)."""
    for name, value in (headers or {}).items():
        if not (_HEADER_NAME.fullmatch(name) and value.isascii() and value.isprintable()):
            raise ValueError(f"not a header field this outbox can send as written: {name!r}")
        if len(name) + 2 + len(value) > MAX_HEADER_LINE:
            raise ValueError(f"header field {name!r} is too long")
    parts = render_blocks(f"emails/{kind}.jinja", context)
    email = OutboxEmail(
        kind=kind,
        to_address=to,
        # A header holds one line: a line break (say, in a letter title) would make
        # the message unbuildable.
        subject=" ".join(parts["subject"].split()),
        text_body=parts["text"] + "\n",
        html_body=parts["html"],
        headers=dict(headers or {}),
        message_id=make_msgid(domain=urlsplit(settings.base_url).hostname or "localhost"),
        status=OutboxStatus.PENDING,
        next_attempt_at=utcnow(),
    )
    session.add(email)
    return email


def purge_outbox(session: Session) -> int:
    """Finished emails (sent, or failed for good) are deleted after 7 days. Their address
    and content were already forgotten when they finished; any finished row that still
    has them (finished by an older version) forgets them here."""
    finished = OutboxEmail.status.in_([OutboxStatus.SENT, OutboxStatus.FAILED])
    session.execute(
        update(OutboxEmail).where(finished, OutboxEmail.to_address.is_not(None)).values(**FORGOTTEN)
    )
    cutoff = utcnow() - SENT_RETENTION
    result = session.execute(delete(OutboxEmail).where(finished, OutboxEmail.finished_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
