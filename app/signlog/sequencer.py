"""The sequencer: gives queued log entries their place in their letter's log, appends
their leaves to the tree and signs a checkpoint. It runs in the worker (every
LOG_SEQUENCE_SECONDS), in `undersigned log sequence`, and in `dev seed`.

Rules kept here:
- One transaction per letter and batch. The letter's `LogHead` row is locked first: on
  PostgreSQL with SKIP LOCKED, so a second worker passes over a letter another one is
  sequencing instead of waiting for it; SQLite has one writer at a time anyway.
- A batch is the letter's oldest queued entries (by id, at most `limit`), numbered
  size, size + 1, … in ONE guarded `UPDATE … WHERE seq IS NULL … RETURNING`; the
  numbers it returns must be exactly those, or the transaction is rolled back. With the
  unique index on (letter_id, seq), an entry is never sequenced twice and no two share
  a place; the checkpoint's primary key (letter_id, size) makes sizes strictly increase.
- Only the old tree's frontier is read (`merkle.append_leaves`); the new stored hashes
  are written in bulk (COPY on PostgreSQL), the head moves by the batch's adds and
  removes, and the checkpoint (signed note) is stored with the same numbers. That
  append is `Appending`, shared with `dev seed`, which holds the head itself and writes
  its entries already in their places (D180).
- Nothing queued: nothing is written, no checkpoint is signed.
- Entries committed out of id order (a transaction that took a lower id commits later)
  are simply sequenced by a later pass: the log's order is the order of sequencing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, upsert, utcnow
from app.letters.models import Letter
from app.signlog import keys
from app.signlog.entries import hour_text, leaf_line
from app.signlog.hashes import TableHashes
from app.signlog.models import LogCheckpoint, LogEntry, LogEvent, LogHead
from app.transparency import merkle
from app.transparency.note import Checkpoint, sign_checkpoint

log = logging.getLogger("undersigned.signlog")

BATCH = 10_000
"""Entries per transaction in the worker: a surge's seconds of confirmations, sequenced
in well under a second."""


class SequencerError(RuntimeError):
    """The numbers the guarded UPDATE gave do not follow the head: nothing is written."""


@dataclass(frozen=True, slots=True)
class Sequenced:
    """One batch appended to a letter's log."""

    letter_id: int
    slug: str
    appended: int
    size: int
    """The new tree size (that of the checkpoint just signed)."""
    last_id: int
    """The id of the batch's last entry (`drain`'s cursor)."""


def sequence(session: Session, settings: Settings, *, letter_id: int, limit: int = BATCH) -> int:
    """Appends up to `limit` of the letter's queued entries to its log and signs a
    checkpoint, in the caller's transaction. Returns how many were appended (0: none
    queued, or, on PostgreSQL, another sequencer holds the letter)."""
    done = sequence_batch(session, settings, letter_id=letter_id, limit=limit)
    return 0 if done is None else done.appended


def sequence_batch(
    session: Session,
    settings: Settings,
    *,
    letter_id: int,
    limit: int = BATCH,
    after_id: int = 0,
) -> Sequenced | None:
    """`sequence`, saying what it did. `after_id`: only entries with a greater id (see
    `drain`); 0 for all."""
    if limit < 1:
        raise ValueError("a batch has at least one entry")
    head = _lock_head(session, letter_id)
    if head is None:
        return None
    rows = _number_batch(session, letter_id=letter_id, size=head[0], limit=limit, after_id=after_id)
    if not rows:
        return None
    tree = Appending(session, letter_id, head)
    tree.append([row[2:] for row in rows])
    slug = tree.publish(session, settings)
    return Sequenced(letter_id, slug, len(rows), tree.size, max(row[1] for row in rows))


def drain(session: Session, settings: Settings, *, letter_id: int, limit: int = BATCH) -> int:
    """Sequences every queued entry of the letter, batch after batch (a checkpoint
    each), in the caller's transaction; returns how many.

    Each batch starts after the previous one's last id, so a long queue is read once
    (the queue's index keeps the entries sequenced earlier in this transaction, dead,
    until it commits). That is right only while no entry of this letter with a lower id
    can commit meanwhile: the caller holds the letter's counter row (`dev seed` does),
    which every change to a count takes before it commits."""
    total, after_id = 0, 0
    while (
        done := sequence_batch(
            session, settings, letter_id=letter_id, limit=limit, after_id=after_id
        )
    ) is not None:
        total += done.appended
        after_id = done.last_id
    return total


def queued_letters(session: Session) -> list[int]:
    """The letters with queued entries, through the queue's partial index (one short
    index read per letter, however long its queue)."""
    found: list[int] = []
    while (
        letter_id := session.scalar(
            select(func.min(LogEntry.letter_id)).where(
                LogEntry.seq.is_(None), LogEntry.letter_id > (found[-1] if found else 0)
            )
        )
    ) is not None:
        found.append(int(letter_id))
    return found


def sequence_letters(
    database: Database,
    settings: Settings,
    *,
    limit: int = BATCH,
    letter_ids: Sequence[int] | None = None,
) -> list[Sequenced]:
    """One pass: a batch for each letter with queued entries (or each of `letter_ids`),
    each in its own transaction."""
    if letter_ids is None:
        with database.read() as session:
            letter_ids = queued_letters(session)
    done: list[Sequenced] = []
    for letter_id in letter_ids:
        with database.write() as session:
            batch = sequence_batch(session, settings, letter_id=letter_id, limit=limit)
        if batch is not None:
            done.append(batch)
    return done


def sequence_all(database: Database, settings: Settings, *, limit: int = BATCH) -> int:
    """One pass over every letter with queued entries; how many entries were appended."""
    return sum(batch.appended for batch in sequence_letters(database, settings, limit=limit))


# --- The steps -------------------------------------------------------------------------------


_MAKING_HEADS = 0x6C6F6748
"""PostgreSQL advisory lock class of "making a letter's log head" ("logH")."""


def lock_head(session: Session, letter_id: int) -> tuple[int, int, int]:
    """`_lock_head`, waiting for another sequencer instead of passing over the letter
    (`dev seed`, which holds the letter's counter row and must own its log)."""
    head = _lock_head(session, letter_id, wait=True)
    assert head is not None  # a wait always ends with the row ours
    return head


def _lock_head(
    session: Session, letter_id: int, *, wait: bool = False
) -> tuple[int, int, int] | None:
    """(size, adds, removes) of the letter's head, its row locked (made if missing);
    None when another transaction holds it (PostgreSQL: SKIP LOCKED, never a wait), or,
    with `wait`, once that transaction ends."""
    locked = (
        select(LogHead.size, LogHead.adds, LogHead.removes)
        .where(LogHead.letter_id == letter_id)
        .with_for_update(skip_locked=not wait)
    )
    head = session.execute(locked).first()
    if head is None:
        exists = session.scalar(select(LogHead.letter_id).where(LogHead.letter_id == letter_id))
        if exists is not None and wait:
            return _lock_head(session, letter_id, wait=wait)  # made meanwhile: wait for it
        if exists is not None or not _may_make_head(session, letter_id, wait=wait):
            return None  # another sequencer has it, or is making it
        session.execute(
            upsert(session, LogHead)
            .values(letter_id=letter_id, size=0, adds=0, removes=0)
            .on_conflict_do_nothing()
        )
        head = session.execute(locked).first()
        if head is None:
            return None  # another sequencer made it meanwhile, and holds it
    size, adds, removes = head
    return int(size), int(adds), int(removes)


def _may_make_head(session: Session, letter_id: int, *, wait: bool = False) -> bool:
    """PostgreSQL: whether no other transaction is making this head. An INSERT … ON
    CONFLICT DO NOTHING waits for a concurrent uncommitted insert of the same key; this
    try-lock (held to the end of the transaction) makes the second sequencer skip the
    letter instead (with `wait`: waits for the lock, always yes). SQLite: one writer,
    always yes."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    if wait:
        session.execute(select(func.pg_advisory_xact_lock(_MAKING_HEADS, letter_id)))
        return True
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(_MAKING_HEADS, letter_id))))


_Row = tuple[int, int, str, str, datetime, str]
"""(seq, id, event, reason, hour, commitment)"""


def _number_batch(
    session: Session, *, letter_id: int, size: int, limit: int, after_id: int
) -> list[_Row]:
    """Numbers the oldest queued entries size, size + 1, … in one guarded UPDATE; the
    entries in log order. Raises SequencerError if the numbers are not exactly those."""
    oldest = (
        select(LogEntry.id)
        .where(LogEntry.letter_id == letter_id, LogEntry.seq.is_(None), LogEntry.id > after_id)
        .order_by(LogEntry.id)
        .limit(limit)
        .subquery("oldest")
    )
    numbered = select(
        oldest.c.id,
        (func.row_number().over(order_by=oldest.c.id) + (size - 1)).label("seq"),
    ).subquery("numbered")
    statement = (
        update(LogEntry)
        .where(LogEntry.id == numbered.c.id, LogEntry.seq.is_(None))
        .values(seq=numbered.c.seq)
        .returning(
            LogEntry.seq,
            LogEntry.id,
            LogEntry.event,
            LogEntry.reason,
            LogEntry.hour,
            LogEntry.commitment,
        )
        .execution_options(synchronize_session=False)
    )
    rows: list[_Row] = []
    for seq, id_, event, reason, hour, commitment in session.execute(statement):
        if seq is None:  # pragma: no cover - the statement sets it
            raise SequencerError(f"letter {letter_id}: an entry came back without its place")
        rows.append((int(seq), int(id_), event, reason, hour, commitment))
    rows.sort()
    if [row[0] for row in rows] != list(range(size, size + len(rows))):
        raise SequencerError(f"letter {letter_id}: the batch after {size} is not numbered in turn")
    return rows


Entry = tuple[str, str, datetime, str]
"""(event, reason, hour, commitment): what a leaf says."""


def leaf_hashes(entries: Iterable[Entry]) -> tuple[list[bytes], int]:
    """The entries' leaf hashes, and how many of them are adds (each hour written out
    once)."""
    hours: dict[datetime, str] = {}
    leaves: list[bytes] = []
    added = 0
    leaf_hash, add = merkle.leaf_hash, LogEvent.ADD.value
    for event, reason, hour, commitment in entries:
        when = hours.get(hour)
        if when is None:
            when = hours[hour] = hour_text(hour)
        leaves.append(leaf_hash(leaf_line(event, reason, when, commitment).encode()))
        added += event == add
    return leaves, added


@dataclass(frozen=True, slots=True)
class _Signed:
    """A checkpoint to store: the tree after a batch."""

    size: int
    root: bytes
    adds: int
    removes: int


class _Recording:
    """A `merkle.HashReader` that keeps what it read."""

    def __init__(self, reader: merkle.HashReader) -> None:
        self.reader = reader
        self.read: dict[int, bytes] = {}

    def get_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        hashes = list(self.reader.get_hashes(indexes))
        self.read.update(zip(indexes, hashes, strict=True))
        return hashes


class Appending:
    """Batches of numbered entries appended to a letter's tree, in memory, then written
    at once (`publish`): the new stored hashes, the head, a signed checkpoint per batch.

    The caller holds the head (`_lock_head`/`lock_head`) and has given the entries their
    places, head.size on, in the order of the batches. The old tree's frontier is read
    once, here (`merkle.append_leaves` needs no other old hash); later batches read the
    hashes the earlier ones made from memory, so nothing is read from the database
    after this (the seed streams its rows meanwhile)."""

    def __init__(self, session: Session, letter_id: int, head: tuple[int, int, int]) -> None:
        self.letter_id = letter_id
        self.size, self.adds, self.removes = head
        self.start = merkle.stored_hash_count(self.size)
        stored = _Recording(TableHashes(session, letter_id))
        merkle.frontier(stored, self.size)
        self.old = stored.read
        self.new: list[bytes] = []
        self.signed: list[_Signed] = []

    def get_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """`merkle.HashReader`: the old frontier and the hashes appended since."""
        start, new, old = self.start, self.new, self.old
        return [new[i - start] if i >= start else old[i] for i in indexes]

    def append(self, entries: Sequence[Entry]) -> None:
        """One batch (a checkpoint) of entries, in log order."""
        if not entries:
            raise ValueError("a batch has at least one entry")
        leaves, added = leaf_hashes(entries)
        appended = merkle.append_leaves(self, self.size, leaves)
        assert appended.start == self.start + len(self.new)
        self.new.extend(appended.hashes)
        self.size = appended.size
        self.adds, self.removes = self.adds + added, self.removes + len(entries) - added
        self.signed.append(_Signed(self.size, appended.root, self.adds, self.removes))

    def publish(self, session: Session, settings: Settings) -> str:
        """Writes the new stored hashes, moves the head and stores a signed checkpoint
        per batch, in the caller's transaction; the letter's slug."""
        letter_id = self.letter_id
        store_hashes(session, letter_id, self.start, self.new)
        session.execute(
            update(LogHead)
            .where(LogHead.letter_id == letter_id)
            .values(size=self.size, adds=self.adds, removes=self.removes)
        )
        slug = session.scalar(select(Letter.slug).where(Letter.id == letter_id))
        assert slug is not None  # the entries' foreign key
        origin, signer, now = keys.origin(settings, slug), keys.signer(settings), utcnow()
        session.execute(
            insert(LogCheckpoint),
            [
                {
                    "letter_id": letter_id,
                    "size": tree.size,
                    "root": tree.root,
                    "adds": tree.adds,
                    "removes": tree.removes,
                    "note": sign_checkpoint(Checkpoint(origin, tree.size, tree.root), signer),
                    "created_at": now,
                }
                for tree in self.signed
            ],
        )
        return slug


def store_hashes(session: Session, letter_id: int, start: int, hashes: list[bytes]) -> None:
    """The new stored hashes: one COPY on PostgreSQL (psycopg's writer thread sends each
    block of lines while the next is made), `TableHashes.store` elsewhere."""
    if session.get_bind().dialect.name != "postgresql":
        TableHashes(session, letter_id).store(start, hashes)
        return
    from psycopg.copy import QueuedLibpqWriter  # PostgreSQL only (D187)

    connection = session.connection().connection.driver_connection
    statement = "COPY log_hashes (letter_id, idx, hash) FROM STDIN"
    prefix = f"{letter_id}\t"
    cursor = connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
        for begin in range(0, len(hashes), _HASH_LINES):
            copy.write(
                "".join(
                    [
                        f"{prefix}{start + offset}\t\\\\x{value.hex()}\n"
                        for offset, value in enumerate(hashes[begin : begin + _HASH_LINES], begin)
                    ]
                )
            )


_HASH_LINES = 50_000
"""Stored hashes per COPY write."""
