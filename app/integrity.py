"""The integrity report (`undersigned check`, and nightly in the worker).

- Tallies: each letter's counter row (`LetterTally.verified_count`) against its
  signatures (status verified; hidden ones count too), found in ONE statement (a GROUP
  BY over signatures joined to the counter rows), so that the check costs one pass
  whatever the number of letters, and sees the counters and the signatures at the same
  instant (a confirmation moves both in one transaction: no false alarm). `--repair`
  sets a counter to its count, one transaction per letter, with the counter row locked
  and the signatures counted again under that lock, and records it in the audit log.
- Signature logs: each letter's counter against its log, read in ONE statement too: the
  head's adds minus removes (the latest checkpoint), plus the queued adds minus the
  queued removes (through the queue's partial index: only what the sequencer has not
  taken yet), so nothing counts all of a letter's entries. A change to a count queues
  its entry in the same transaction, so the two agree at every instant. Not repaired:
  the log is append-only; a difference there is for a person to look into.
- The outbox: emails stuck in `sending` past their lease (no worker took them over),
  pending emails overdue by more than `overdue_after` (no worker, or a backlog), and
  emails that failed for good in the last day.

Nothing here names a signer: the report has slugs, counts, kinds and times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.letters.models import Letter, LetterTally
from app.letters.service import add_to_tally
from app.mail.models import OutboxEmail, OutboxStatus
from app.organizers.service import SHELL, Actor, record
from app.signatures.models import Signature, SignatureStatus
from app.signlog.models import LogEntry, LogEvent, LogHead

OVERDUE_AFTER = timedelta(minutes=15)
"""A pending email due longer ago than this is reported."""
FAILED_WITHIN = timedelta(days=1)
"""Emails that failed for good this recently are reported."""


@dataclass(frozen=True, slots=True)
class TallyDifference:
    letter_id: int
    slug: str
    stored: int | None
    """The counter row's count (None: the letter has no counter row)."""
    actual: int
    """Its verified signatures, hidden ones included."""


@dataclass(frozen=True, slots=True)
class LogDifference:
    letter_id: int
    slug: str
    stored: int
    """The counter row's count (0 without one)."""
    logged: int
    """What its signature log counts: the latest checkpoint's adds minus removes, plus
    the queued adds minus removes."""
    queued: int
    """Entries not sequenced yet."""


@dataclass(frozen=True, slots=True)
class OutboxHealth:
    """Counts by email kind (verify, update, login…)."""

    stuck: dict[str, int] = field(default_factory=dict)
    overdue: dict[str, int] = field(default_factory=dict)
    oldest_overdue: datetime | None = None
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.stuck or self.overdue or self.failed)


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    checked_at: datetime
    letters: int
    """How many letters were checked."""
    tallies: list[TallyDifference]
    """Every counter that differed from its signatures when checked."""
    repaired: list[TallyDifference]
    """The counters `--repair` set, with the count they were set to."""
    outbox: OutboxHealth
    overdue_after: timedelta
    logs: list[LogDifference] = field(default_factory=list)
    """Every counter that differed from its signature log (after the repairs, if any)."""

    @property
    def unrepaired(self) -> list[TallyDifference]:
        fixed = {difference.letter_id for difference in self.repaired}
        return [difference for difference in self.tallies if difference.letter_id not in fixed]

    @property
    def ok(self) -> bool:
        """Nothing is wrong that was not repaired."""
        return not self.unrepaired and not self.logs and self.outbox.ok

    def lines(self) -> Iterator[str]:
        """The report for people (and the worker's log): no address, no name."""
        differ = len(self.tallies)
        yield f"Tallies: {self.letters} letters checked, {differ} differ from their signatures."
        repaired = {difference.letter_id: difference for difference in self.repaired}
        for difference in self.tallies:
            stored = "no counter row" if difference.stored is None else difference.stored
            line = f"  {difference.slug}: stored {stored}, actual {difference.actual}"
            fixed = repaired.get(difference.letter_id)
            if fixed is not None and fixed.stored != fixed.actual:
                line += f" (repaired: set to {fixed.actual})"
            elif fixed is not None:
                line += f" (right again by the repair: {fixed.actual})"
            yield line
        yield f"Signature logs: {len(self.logs)} differ from their tallies."
        for log in self.logs:
            yield (
                f"  {log.slug}: tally {log.stored}, log {log.logged} "
                f"({log.queued} entries not yet sequenced)"
            )
        minutes = int(self.overdue_after.total_seconds() // 60)
        yield "Outbox:"
        yield f"  stuck in sending past their lease: {_counted(self.outbox.stuck)}"
        overdue = _counted(self.outbox.overdue)
        if self.outbox.oldest_overdue is not None:
            waited = self.checked_at - self.outbox.oldest_overdue
            overdue += f"; the oldest due {int(waited.total_seconds() // 60)} minutes ago"
        yield f"  pending, overdue by more than {minutes} minutes: {overdue}"
        yield f"  failed in the last day: {_counted(self.outbox.failed)}"
        if self.ok:
            yield "All is well." if not self.repaired else "All is well (after the repairs)."
        else:
            yield "Something is wrong: see above."


def _counted(by_kind: dict[str, int]) -> str:
    if not by_kind:
        return "0"
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(by_kind.items()))
    return f"{sum(by_kind.values())} ({kinds})"


# --- Tallies -----------------------------------------------------------------------------


def tally_differences(session: Session) -> tuple[int, list[TallyDifference]]:
    """(letters checked, the counters that differ), in one statement over signatures."""
    counted = (
        select(Signature.letter_id, func.count().label("actual"))
        .where(Signature.status == SignatureStatus.VERIFIED)
        .group_by(Signature.letter_id)
        .subquery("counted")
    )
    actual = func.coalesce(counted.c.actual, 0)
    rows = session.execute(
        select(
            Letter.id,
            Letter.slug,
            LetterTally.verified_count,
            actual,
            func.count().over(),
        )
        .outerjoin(LetterTally, LetterTally.letter_id == Letter.id)
        .outerjoin(counted, counted.c.letter_id == Letter.id)
        .order_by(Letter.id)
    ).all()
    differences = [
        TallyDifference(letter_id=letter_id, slug=slug, stored=stored, actual=int(count))
        for letter_id, slug, stored, count, _ in rows
        if stored != count
    ]
    return (int(rows[0][4]) if rows else 0), differences


def repair_tally(session: Session, *, letter_id: int, actor: Actor = SHELL) -> TallyDifference:
    """Sets the letter's counter to its verified signatures, in the caller's
    transaction: the counter row is locked first (a confirmation moves it in its own
    transaction, so it waits), then the signatures are counted. Recorded in the audit
    log as `tally.repair` when it changed anything. Returns what it found (`stored ==
    actual`: the counter was right by then, nothing changed)."""
    letter = session.get_one(Letter, letter_id)
    stored = session.scalar(
        select(LetterTally.verified_count)
        .where(LetterTally.letter_id == letter_id)
        .with_for_update()
    )
    actual = int(
        session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter_id, Signature.status == SignatureStatus.VERIFIED)
        )
        or 0
    )
    found = TallyDifference(letter_id=letter_id, slug=letter.slug, stored=stored, actual=actual)
    if stored == actual:
        return found
    if stored is None:
        last = session.scalar(
            select(func.max(Signature.position)).where(Signature.letter_id == letter_id)
        )
        session.add(
            LetterTally(letter_id=letter_id, verified_count=actual, last_position=last or 0)
        )
        session.flush()
    else:
        add_to_tally(session, letter_id=letter_id, delta=actual - stored)
    record(session, actor=actor, letter_id=letter_id, action="tally.repair",
           stored=stored, actual=actual)  # fmt: skip
    return found


# --- Signature logs ---------------------------------------------------------------------


def log_differences(session: Session) -> list[LogDifference]:
    """The counters that differ from their letters' signature logs, in one statement."""
    queued = (
        select(
            LogEntry.letter_id,
            func.sum(case((LogEntry.event == LogEvent.ADD.value, 1), else_=-1)).label("delta"),
            func.count().label("entries"),
        )
        .where(LogEntry.seq.is_(None))
        .group_by(LogEntry.letter_id)
        .subquery("queued")
    )
    rows = session.execute(
        select(
            Letter.id,
            Letter.slug,
            func.coalesce(LetterTally.verified_count, 0),
            func.coalesce(LogHead.adds - LogHead.removes, 0) + func.coalesce(queued.c.delta, 0),
            func.coalesce(queued.c.entries, 0),
        )
        .outerjoin(LetterTally, LetterTally.letter_id == Letter.id)
        .outerjoin(LogHead, LogHead.letter_id == Letter.id)
        .outerjoin(queued, queued.c.letter_id == Letter.id)
        .order_by(Letter.id)
    ).all()
    return [
        LogDifference(letter_id, slug, int(stored), int(logged), int(entries))
        for letter_id, slug, stored, logged, entries in rows
        if stored != logged
    ]


# --- The outbox --------------------------------------------------------------------------


def outbox_health(
    session: Session, *, now: datetime, overdue_after: timedelta = OVERDUE_AFTER
) -> OutboxHealth:
    """What in the outbox needs a look, by kind (each count read through the index on
    status)."""

    def by_kind(*where: ColumnElement[bool]) -> dict[str, int]:
        rows = session.execute(
            select(OutboxEmail.kind, func.count()).where(*where).group_by(OutboxEmail.kind)
        )
        return {kind: int(count) for kind, count in rows}

    overdue = (OutboxEmail.status == OutboxStatus.PENDING) & (
        OutboxEmail.next_attempt_at < now - overdue_after
    )
    return OutboxHealth(
        stuck=by_kind(
            OutboxEmail.status == OutboxStatus.SENDING, OutboxEmail.lease_expires_at < now
        ),
        overdue=by_kind(overdue),
        oldest_overdue=session.scalar(select(func.min(OutboxEmail.next_attempt_at)).where(overdue)),
        failed=by_kind(
            OutboxEmail.status == OutboxStatus.FAILED,
            OutboxEmail.finished_at >= now - FAILED_WITHIN,
        ),
    )


# --- The whole check ---------------------------------------------------------------------


def run_check(
    database: Database,
    *,
    repair: bool = False,
    now: datetime | None = None,
    overdue_after: timedelta = OVERDUE_AFTER,
) -> IntegrityReport:
    """Checks (each part a consistent read), then, with `repair`, fixes each counter
    that differs in its own transaction."""
    now = now or utcnow()
    with database.read() as session:
        letters, differences = tally_differences(session)
        logs = log_differences(session)
        outbox = outbox_health(session, now=now, overdue_after=overdue_after)
    repaired = []
    if repair:
        for difference in differences:
            with database.write() as session:
                repaired.append(repair_tally(session, letter_id=difference.letter_id))
        if repaired:  # a counter set to its count may agree with its log again
            with database.read() as session:
                logs = log_differences(session)
    return IntegrityReport(
        checked_at=now,
        letters=letters,
        tallies=differences,
        repaired=repaired,
        outbox=outbox,
        overdue_after=overdue_after,
        logs=logs,
    )
