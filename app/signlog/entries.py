"""Writing log entries, in the transaction that changes a letter's count.

An entry's leaf (what RFC 6962 hashes) is one line of ASCII:

    undersigned-log/v1 <event> <reason> <hour> <commitment>

e.g. `undersigned-log/v1 add confirmed 2026-11-28T03:00:00Z 5f3a…` (64 hex digits).
`event` is `add` or `remove`; `reason` a public code (`LogReason`); `hour` the UTC hour
of the change; `commitment` SHA-256 of the signer's 32-byte receipt secret, in hex. A
removal carries the commitment of the signature it removes, so a receipt finds both.
Nothing here names or hashes an address or a name."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.orm import Session

from app.signlog.models import LogEntry, LogEvent, LogReason

LEAF_PREFIX = "undersigned-log/v1"
SECRET_BYTES = 32
ADDING = frozenset({LogReason.CONFIRMED, LogReason.RESTORED})


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hour_text(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H:00:00Z")


def leaf_text(event: str, reason: str, hour: datetime, commitment: str) -> str:
    return leaf_line(event, reason, hour_text(hour), commitment)


def leaf_line(event: str, reason: str, hour: str, commitment: str) -> str:
    """The leaf with its hour already written out (`hour_text`): the sequencer writes
    each hour of a batch once."""
    return f"{LEAF_PREFIX} {event} {reason} {hour} {commitment}"


def leaf_bytes(entry: LogEntry) -> bytes:
    return leaf_text(entry.event, entry.reason, entry.hour, entry.commitment).encode("ascii")


def new_receipt() -> tuple[str, str]:
    """A fresh receipt secret (URL-safe base64 of 32 random bytes, no padding) and its
    commitment (SHA-256 of the 32 bytes, hex). The secret is given to the signer and
    never stored."""
    raw = secrets.token_bytes(SECRET_BYTES)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), hashlib.sha256(raw).hexdigest()


def commitment_of(secret: str) -> str:
    """The commitment of a receipt secret as `new_receipt` wrote it; ValueError if it is
    not one."""
    text = secret.strip()
    if len(text) != 43:
        raise ValueError("a receipt secret is 43 characters")
    raw = base64.urlsafe_b64decode(text + "=")
    if len(raw) != SECRET_BYTES or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise ValueError("not a receipt secret")
    return hashlib.sha256(raw).hexdigest()


_TABLE = cast(Table, LogEntry.__table__)
_INSERT = insert(_TABLE)
"""Built once, on the table (no ORM bulk machinery): an executemany of (letter_id, event,
reason, hour, commitment)."""
INSERT_ONE = insert(_TABLE).values(
    letter_id=bindparam("entry_letter", type_=_TABLE.c.letter_id.type),
    seq=None,
    event=bindparam("entry_event", type_=_TABLE.c.event.type),
    reason=bindparam("entry_reason", type_=_TABLE.c.reason.type),
    hour=bindparam("entry_hour", type_=_TABLE.c.hour.type),
    commitment=bindparam("entry_commitment", type_=_TABLE.c.commitment.type),
)
"""One entry, with parameters named apart (`entry_values`), for a statement that does
more than queue it: on PostgreSQL a confirmation's count and place take it as a CTE."""


def entry_values(
    *, letter_id: int, reason: LogReason, commitment: str, now: datetime
) -> dict[str, Any]:
    """`INSERT_ONE`'s parameters: the entry `record` would queue for one commitment."""
    return {
        "entry_letter": letter_id,
        "entry_event": (LogEvent.ADD if reason in ADDING else LogEvent.REMOVE).value,
        "entry_reason": reason.value,
        "entry_hour": hour_of(now),
        "entry_commitment": commitment,
    }


def record(
    session: Session,
    *,
    letter_id: int,
    reason: LogReason,
    commitments: Iterable[str | None],
    now: datetime,
) -> int:
    """Queues one entry per commitment for the sequencer, in the caller's transaction:
    an add for `confirmed`/`restored`, a removal otherwise. A signature without a
    commitment (None) cannot happen after migration 0011; it is skipped, never logged
    with a made-up one. Returns how many were queued."""
    event = LogEvent.ADD if reason in ADDING else LogEvent.REMOVE
    hour = hour_of(now)
    rows = [
        {
            "letter_id": letter_id,
            "seq": None,
            "event": event.value,
            "reason": reason.value,
            "hour": hour,
            "commitment": commitment,
        }
        for commitment in commitments
        if commitment
    ]
    if len(rows) == 1:  # a confirmation: one plain INSERT, cheaper than an executemany
        session.execute(_INSERT, rows[0])
    elif rows:
        session.execute(_INSERT, rows)
    return len(rows)
