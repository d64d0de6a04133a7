"""Writing emails into the outbox, the retention rules for finished ones, and keeping
addresses and link tokens out of error texts and logs (`redact`)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.utils import make_msgid
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    SQLColumnExpression,
    Subquery,
    delete,
    desc,
    func,
    select,
    union,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import Label

from app.config import Settings
from app.db import utcnow
from app.i18n import current_locale, use_locale
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


class Priority(IntEnum):
    """Which emails the worker sends first (`OutboxEmail.priority`)."""

    WAITING = 0
    """A person is waiting for it: a confirmation link, a sign-in link, an invitation."""
    BULK = 1
    """Nobody is waiting: an update to signers."""


FAIRNESS_KEY_LENGTH = 64


def recipient_domain(address: str) -> str:
    """The default fairness key: the recipient's domain, lower-cased."""
    return address.rpartition("@")[2].strip().lower()[:FAIRNESS_KEY_LENGTH]


def enqueue(
    session: Session,
    *,
    settings: Settings,
    kind: str,
    to: str,
    context: dict[str, Any],
    headers: dict[str, str] | None = None,
    priority: Priority = Priority.WAITING,
    fairness_key: str | None = None,
    locale: str | None = None,
) -> OutboxEmail:
    """Render `templates/emails/{kind}.jinja` (blocks subject, text, html) into the
    outbox, in the caller's transaction. The worker delivers it after commit.

    The worker sends the lowest `priority` first and, within it, serves `fairness_key`s
    in turn (by default the recipient's domain; at most 64 characters), so that many
    emails for one key never hold up the others'.

    `headers`: more header fields, such as `List-Unsubscribe`; each value one line of
    ASCII (they are sent as written, never re-encoded: see `backends.build_message`).

    `locale`: the language to write it in (a signer's `locale`, kept from the request
    they signed in); by default the current one (the request asking for it)."""
    for name, value in (headers or {}).items():
        if not (_HEADER_NAME.fullmatch(name) and value.isascii() and value.isprintable()):
            raise ValueError(f"not a header field this outbox can send as written: {name!r}")
        if len(name) + 2 + len(value) > MAX_HEADER_LINE:
            raise ValueError(f"header field {name!r} is too long")
    with use_locale(locale or current_locale()):
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
        priority=int(priority),
        fairness_key=(recipient_domain(to) if fairness_key is None else fairness_key)[
            :FAIRNESS_KEY_LENGTH
        ],
    )
    session.add(email)
    return email


FAIR_WINDOW = 1000
"""How many of the oldest, and of the newest, waiting rows `in_turn` ranks."""


def in_turn(
    *,
    id_: SQLColumnExpression[int],
    key: SQLColumnExpression[str],
    at: SQLColumnExpression[datetime],
    where: SQLColumnExpression[bool],
    limit: int,
    window: int | None = None,
) -> Subquery:
    """Up to `limit` rows of a queue that match `where`, served in turn across `key`:
    the oldest (by `at`, then `id_`) of each key, then the second of each, and so on. A
    subquery of (id, at, turn), ordered by (turn, at, id); the outbox's claim and the
    worker's decisions on new submissions (`notify_pending`) use it. Each batch is
    ranked afresh: in a batch, every key waiting gets a turn before any gets a second.

    Only the `window` (default FAIR_WINDOW) oldest and as many newest matching rows are
    ranked, each read in index order (an index on the columns of `where` followed by
    `at`), so the cost stays the same with 100,000 rows queued. Below twice `window`
    rows that is every row; above, a newly queued row still competes at once (it is
    among the newest), and the oldest row of all is always first (it is the first of its
    key), so none starves.

    The caller joins it on id, re-checks `where` on the rows it locks (PostgreSQL cannot
    lock rows under a window function: the ranking runs without locks) and orders by
    (turn, at, id)."""
    window = window or FAIR_WINDOW
    columns: tuple[Label[Any], ...] = (id_.label("id"), key.label("key"), at.label("at"))
    # By `at` alone: the index gives that order as it stands (PostgreSQL's does not hold
    # the id, and sorting a big tie by id would read every tied row).
    oldest = select(*columns).where(where).order_by(at).limit(window).subquery()
    newest = select(*columns).where(where).order_by(desc(at)).limit(window)
    seen = union(select(oldest), select(newest.subquery())).subquery("seen")
    turn = func.row_number().over(partition_by=seen.c.key, order_by=(seen.c.at, seen.c.id))
    ranked = select(seen.c.id, seen.c.at, turn.label("turn")).subquery("ranked")
    return (
        select(ranked)
        .order_by(ranked.c.turn, ranked.c.at, ranked.c.id)
        .limit(limit)
        .subquery("in_turn")
    )


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
