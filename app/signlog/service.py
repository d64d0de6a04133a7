"""Reading a letter's signature log: checkpoints, entries, proofs and receipt buckets.

Everything here reads sequenced entries and stored hashes only, so every answer about a
given tree size is the same forever (cacheable as immutable); only `latest` moves."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput, NotFound
from app.i18n import N_
from app.signlog import keys
from app.signlog.entries import leaf_text
from app.signlog.hashes import TableHashes
from app.signlog.models import LogCheckpoint, LogEntry
from app.transparency import merkle
from app.transparency.note import Checkpoint, sign_checkpoint

MAX_ENTRIES = 1000
"""Entries per `entries` answer."""
MAX_BUCKET = 2000
"""Entries per `lookup` answer (a bucket is about 64 to 1,024 entries)."""
BUCKET_TARGET = 64
"""`receipt_prefix` is chosen so that a bucket holds at least about this many entries."""


@dataclass(frozen=True, slots=True)
class CheckpointView:
    origin: str
    size: int
    root_hash: bytes
    adds: int
    removes: int
    created_at: datetime | None
    """None for the empty log's checkpoint (signed on the fly, before any entry)."""
    note: str
    """The signed note (c2sp.org/tlog-checkpoint in c2sp.org/signed-note)."""

    @property
    def count(self) -> int:
        return self.adds - self.removes

    @property
    def root_base64(self) -> str:
        return base64.b64encode(self.root_hash).decode()

    @property
    def receipt_prefix(self) -> int:
        return receipt_prefix(self.size)


@dataclass(frozen=True, slots=True)
class EntryView:
    index: int
    event: str
    reason: str
    hour: datetime
    commitment: str

    @property
    def leaf(self) -> str:
        return leaf_text(self.event, self.reason, self.hour, self.commitment)


def receipt_prefix(size: int) -> int:
    """How many hex digits of a commitment a receipt lookup sends: the most that still
    leaves about BUCKET_TARGET (at most 16 times that) entries in its bucket, so the
    server cannot tell which of them the reader holds."""
    digits = 0
    while size >= BUCKET_TARGET * 16 ** (digits + 1):
        digits += 1
    return digits


def _empty(settings: Settings, slug: str) -> CheckpointView:
    origin = keys.origin(settings, slug)
    note = sign_checkpoint(Checkpoint(origin, 0, merkle.EMPTY_ROOT), keys.signer(settings))
    return CheckpointView(origin, 0, merkle.EMPTY_ROOT, 0, 0, None, note)


def _view(row: LogCheckpoint) -> CheckpointView:
    return CheckpointView(
        row.note.partition("\n")[0],  # the origin it was signed with (BASE_URL may move)
        row.size,
        row.root,
        row.adds,
        row.removes,
        row.created_at,
        row.note,
    )


def latest(session: Session, settings: Settings, *, letter_id: int, slug: str) -> CheckpointView:
    """The letter's latest signed checkpoint (the empty log's, signed now, if the
    sequencer has not published one yet)."""
    row = session.scalar(
        select(LogCheckpoint)
        .where(LogCheckpoint.letter_id == letter_id)
        .order_by(LogCheckpoint.size.desc())
        .limit(1)
    )
    return _empty(settings, slug) if row is None else _view(row)


def checkpoint_at(
    session: Session, settings: Settings, *, letter_id: int, slug: str, size: int
) -> CheckpointView:
    """A past (or the latest) checkpoint of exactly `size` entries; NotFound if the log
    never published one of that size."""
    if size == 0:
        return _empty(settings, slug)
    row = session.get(LogCheckpoint, (letter_id, size))
    if row is None:
        raise NotFound(N_("This log has no checkpoint of that size."))
    return _view(row)


def unsequenced(session: Session, *, letter_id: int) -> int:
    """Entries queued for the sequencer (changes to the count not yet in a checkpoint)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(LogEntry)
            .where(LogEntry.letter_id == letter_id, LogEntry.seq.is_(None))
        )
        or 0
    )


def _refuse(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, fields={field: message})


def _entry_views(rows: Iterable[Any]) -> list[EntryView]:
    return [EntryView(*row) for row in rows]


_ENTRY_COLUMNS = (LogEntry.seq, LogEntry.event, LogEntry.reason, LogEntry.hour, LogEntry.commitment)


def entries(
    session: Session, *, letter_id: int, start: int, end: int, size: int
) -> list[EntryView]:
    """Entries [start, end) of a log whose latest checkpoint has `size` entries."""
    if not 0 <= start < end:
        raise _refuse("end", N_("Ask for 0 <= start < end."))
    if end > size:
        raise _refuse("end", N_("The log's latest checkpoint has fewer entries than that."))
    if end - start > MAX_ENTRIES:
        raise _refuse("end", N_("Ask for at most 1,000 entries at a time."))
    return _entry_views(
        session.execute(
            select(*_ENTRY_COLUMNS)
            .where(LogEntry.letter_id == letter_id, LogEntry.seq >= start, LogEntry.seq < end)
            .order_by(LogEntry.seq)
        )
    )


def lookup(
    session: Session, *, letter_id: int, prefix: str, size: int
) -> tuple[list[EntryView], bool]:
    """The sequenced entries (below `size`) whose commitment starts with `prefix` (hex,
    at least `receipt_prefix(size)` digits), and whether the answer was cut at
    MAX_BUCKET."""
    prefix = prefix.lower()
    if len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
        raise _refuse("prefix", N_("A prefix is up to 64 hexadecimal digits."))
    if len(prefix) < receipt_prefix(size):
        raise _refuse("prefix", N_("This log is too big for so short a prefix: send more digits."))
    where = [LogEntry.letter_id == letter_id, LogEntry.seq.is_not(None), LogEntry.seq < size]
    if prefix:
        where += [LogEntry.commitment >= prefix, LogEntry.commitment < prefix + "g"]
    rows = _entry_views(
        session.execute(
            select(*_ENTRY_COLUMNS).where(*where).order_by(LogEntry.seq).limit(MAX_BUCKET + 1)
        )
    )
    return rows[:MAX_BUCKET], len(rows) > MAX_BUCKET


def inclusion_proof(
    session: Session, *, letter_id: int, index: int, size: int, latest_size: int
) -> list[bytes]:
    """RFC 6962 PATH of entry `index` in the tree of `size` entries."""
    if not 0 <= index < size:
        raise _refuse("index", N_("Ask for 0 <= index < size."))
    if size > latest_size:
        raise _refuse("size", N_("The log's latest checkpoint has fewer entries than that."))
    return merkle.prove_record(TableHashes(session, letter_id), index, size)


def consistency_proof(
    session: Session, *, letter_id: int, first: int, second: int, latest_size: int
) -> list[bytes]:
    """RFC 6962 PROOF that the tree of `first` entries is a prefix of that of `second`."""
    if not 1 <= first <= second:
        raise _refuse("first", N_("Ask for 1 <= first <= second."))
    if second > latest_size:
        raise _refuse("second", N_("The log's latest checkpoint has fewer entries than that."))
    if first == second:
        return []
    return merkle.prove_tree(TableHashes(session, letter_id), first, second)
