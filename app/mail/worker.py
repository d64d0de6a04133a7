"""Delivers the outbox. Safe to run in several processes at once.

A worker claims a batch in a short transaction (PostgreSQL: FOR UPDATE SKIP LOCKED,
so workers never wait on each other; SQLite: BEGIN IMMEDIATE), marks it `sending`
with a short lease, commits, then for each email: renews the lease (skipping the email
if another worker took it over), sends while a heartbeat keeps renewing the lease, and
records the outcome only if it still holds the claim (in the transaction that renews
the next email's lease: D92; on PostgreSQL one statement, D179). A crash (even SIGKILL) leaves its
emails under a lease that runs out within `LEASE`, and another worker sends them: at
least once, never lost, and never sent twice while the first worker is alive (D52).
With `senders` > 1 a pass deals its claims out to that many threads, each following
these rules for its own emails on its own SMTP connection (D98).

A finished email (sent, or failed for good) forgets its address and content in the
same UPDATE that records the outcome; error texts are redacted before they are stored
or logged (D50).
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, select, text, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, utcnow
from app.mail.backends import Backend, PermanentMailError, TransientMailError, build_message
from app.mail.models import OutboxEmail, OutboxStatus
from app.mail.service import FORGOTTEN, in_turn
from app.redaction import REDACT, redact

log = logging.getLogger("undersigned.mail")
log.addFilter(REDACT)  # tracebacks too: an exception may quote a recipient

LEASE = timedelta(seconds=30)
"""How long a claim holds without renewal: after a crash, its emails wait this long."""
HEARTBEAT_SECONDS = 10.0
"""While a send lasts, its lease is renewed this often (a third of the lease)."""
MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0

Clock = Callable[[], datetime]


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with 'equal jitter': half fixed, half random."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311


def claim_batch(session: Session, *, now: datetime, limit: int) -> list[tuple[int, str]]:
    """Claims up to `limit` due emails; returns (id, claim_token) pairs.

    First any email whose lease ran out (a crashed worker's: it has waited longest),
    then the due emails of the most urgent priority present (0: a person is waiting for
    a link; 1: bulk), served in turn across `fairness_key`: the oldest due email of each
    key, then the second of each, and so on. So a flood of emails to one key (a
    recipient domain, or the network that submitted them) delays only that key's own."""
    ids = list(
        session.scalars(
            select(OutboxEmail.id)
            .where(OutboxEmail.status == OutboxStatus.SENDING, OutboxEmail.lease_expires_at < now)
            .order_by(OutboxEmail.lease_expires_at, OutboxEmail.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if len(ids) < limit:
        ids += _fair_due(session, now=now, limit=limit - len(ids))
    claims = [(email_id, secrets.token_hex(16)) for email_id in ids]
    if claims:
        # One statement for the batch (executemany; psycopg pipelines it).
        table = cast(Table, OutboxEmail.__table__)
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("claimed_id"))
            .values(
                status=OutboxStatus.SENDING,
                lease_expires_at=now + LEASE,
                claim_token=bindparam("claimed_token"),
                attempts=table.c.attempts + 1,
            ),
            [{"claimed_id": email_id, "claimed_token": token} for email_id, token in claims],
        )
    return claims


CANDIDATES_PER_CLAIM = 4
"""Ranked candidates per email claimed: workers that rank at the same moment skip each
other's locked rows (SKIP LOCKED) and still fill their batches from the rest."""


def _fair_due(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Pending due emails of the lowest priority present, in turn across fairness keys
    (`in_turn`). Both queries read the index (status, priority, next_attempt_at): the
    first stops at the first due row in priority order; the second ranks that
    priority's oldest and newest due rows."""
    pending_due = (OutboxEmail.status == OutboxStatus.PENDING) & (
        OutboxEmail.next_attempt_at <= now
    )
    priority = session.scalar(
        select(OutboxEmail.priority).where(pending_due).order_by(OutboxEmail.priority).limit(1)
    )
    if priority is None:
        return []
    candidates = in_turn(
        id_=OutboxEmail.id,
        key=OutboxEmail.fairness_key,
        at=OutboxEmail.next_attempt_at,
        where=pending_due & (OutboxEmail.priority == priority),
        limit=limit * CANDIDATES_PER_CLAIM,
    )
    return list(
        session.scalars(
            select(OutboxEmail.id)
            .join(candidates, candidates.c.id == OutboxEmail.id)
            .where(pending_due)
            .order_by(candidates.c.turn, candidates.c.at, OutboxEmail.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OutboxEmail)
        )
    )


_OUTBOX = cast(Table, OutboxEmail.__table__)
_RENEW = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("email_of"),
        _OUTBOX.c.claim_token == bindparam("token_of"),
        _OUTBOX.c.status == OutboxStatus.SENDING,
    )
    .values(lease_expires_at=bindparam("lease_until", type_=_OUTBOX.c.lease_expires_at.type))
)
"""Built once, with bound parameters, on the table: the worker runs it for every email,
and building an ORM UPDATE per call cost more CPU than running it (D98)."""


def renew_lease(session: Session, *, email_id: int, token: str, now: datetime) -> bool:
    """Extends this worker's claim on one email to `now + LEASE`. False when the claim
    is gone (the lease ran out and another worker took the email over)."""
    result = session.connection().execute(
        _RENEW, {"email_of": email_id, "token_of": token, "lease_until": now + LEASE}
    )
    return int(result.rowcount or 0) == 1


BATCH_SIZE = 20
"""Emails claimed per pass. A link queued behind a pass waits for at most this many
sends, and the rest of the worker's pass (new submissions' emails, sign-in links,
updates) runs between batches (D92)."""


def deliver_due(
    database: Database,
    backend: Backend,
    *,
    settings: Settings,
    now: datetime | None = None,
    limit: int = BATCH_SIZE,
    senders: int = 1,
) -> int:
    """One pass: claim (reading the claimed emails in the same transaction), then for
    each email renew its lease, send, and record the outcome. The outcome of one email
    and the renewal of the next are one transaction. Returns how many were sent. `now`
    (for tests) shifts this pass's clock; time still runs from there.

    `senders` > 1: the pass claims `limit` emails per sender and sends them from that
    many threads at once, each through its own connection of the backend and with its
    own heartbeat, dealt out in turn so that the first claimed go first (D98). Each
    email keeps the one-sender rules above: the overlap is only between emails."""
    start = now or utcnow()
    offset = start - utcnow()

    def clock() -> datetime:
        return utcnow() + offset

    with database.write() as session:
        claims = claim_batch(session, now=start, limit=limit * max(1, senders))
        emails = _read(session, [email_id for email_id, _ in claims])
        if claims and ASYNC_RECORDS and database.dialect == "postgresql":
            # Losing a claim to a PostgreSQL crash loses no more than ASYNC_RECORDS does.
            session.connection().execute(_ASYNC_COMMIT)
    if not claims:
        close_if_idle = getattr(backend, "close_if_idle", None)
        if callable(close_if_idle):
            close_if_idle()  # a quiet worker keeps no SMTP connection open
        return 0
    shares = [claims[i :: max(1, senders)] for i in range(min(max(1, senders), len(claims)))]
    if len(shares) == 1:
        return _send_claimed(database, backend, settings, shares[0], emails, clock)
    with ThreadPoolExecutor(len(shares) - 1, thread_name_prefix="mail-sender") as pool:
        others = [
            pool.submit(_send_claimed, database, backend, settings, share, emails, clock)
            for share in shares[1:]
        ]
        sent = _send_claimed(database, backend, settings, shares[0], emails, clock)
        return sent + sum(future.result() for future in others)


def _send_claimed(
    database: Database,
    backend: Backend,
    settings: Settings,
    claims: list[tuple[int, str]],
    emails: dict[int, OutboxEmail],
    clock: Clock,
) -> int:
    """Sends claimed emails one after another (one sender); how many were sent."""
    sent = 0
    settle: _Outcome | None = None
    with _Ledger(database) as ledger, _heartbeat(ledger, clock) as heartbeat:
        for email_id, token in claims:
            held = ledger.settle_and_renew(settle, email_id, token, clock())
            settle = None
            if not held:
                # A slow send earlier in this batch outlived the lease and another worker
                # took this one over: sending it now would send it twice.
                log.warning("email %s: lease lost before sending; skipped", email_id)
                continue
            email = emails[email_id]
            outcome: dict[str, object]
            try:
                with heartbeat.keeping(email_id, token):
                    backend.send(build_message(email, mail_from=settings.mail_from))
            except TransientMailError as exc:
                error = _redacted(str(exc), email.to_address)
                outcome = _retry_or_give_up(email.attempts, error)
                log.warning("email %s: transient failure: %s", email_id, error)
            except PermanentMailError as exc:
                error = _redacted(str(exc), email.to_address)
                outcome = _failed(error)
                log.error("email %s: permanent failure: %s", email_id, error)
            except Exception as exc:
                # A bug or a surprise: retried (up to MAX_ATTEMPTS) like a transient
                # failure, so that one bad email never stalls the rest of the outbox.
                error = _redacted(f"{type(exc).__name__}: {exc}", email.to_address)
                outcome = _retry_or_give_up(email.attempts, error)
                log.error("email %s: unexpected failure: %s", email_id, error, exc_info=exc)
            else:
                outcome = {"status": OutboxStatus.SENT, "finished_at": utcnow(), "last_error": None}
                sent += 1
            if outcome["status"] != OutboxStatus.PENDING:
                outcome.update(FORGOTTEN)  # finished: the address and the link go now
            settle = (email_id, token, outcome)
        if settle is not None:
            # The batch's last outcome, at once too: before the heartbeat thread is
            # joined, so that nothing stands between a 250 and its record.
            ledger.settle_and_renew(settle, None, "", clock())
    return sent


_Outcome = tuple[int, str, dict[str, object]]
"""(email id, claim token, the values that record its outcome)."""


def _read(session: Session, ids: list[int]) -> dict[int, OutboxEmail]:
    """The claimed emails, detached. What is sent is fixed while they are claimed: only
    the claim's holder changes a claimed row's content (when it finishes)."""
    if not ids:
        return {}
    emails = {e.id: e for e in session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_(ids)))}
    session.expunge_all()
    return emails


_RECORDS: dict[tuple[str, ...], Any] = {}


def _record_statement(columns: tuple[str, ...]) -> Any:
    """The UPDATE that records an outcome setting `columns`, built once per set of
    columns (an outcome is one of a few shapes: sent, retry, failed)."""
    statement = _RECORDS.get(columns)
    if statement is None:
        statement = _RECORDS[columns] = (
            update(_OUTBOX)
            .where(
                _OUTBOX.c.id == bindparam("email_of"),
                _OUTBOX.c.claim_token == bindparam("token_of"),
            )
            .values(
                lease_expires_at=None,
                claim_token=None,
                **{name: bindparam(name, type_=_OUTBOX.c[name].type) for name in columns},
            )
        )
    return statement


def _record(session: Session, email_id: int, token: str, outcome: dict[str, object]) -> None:
    """Only if this worker still holds the claim: a stale worker never overwrites the
    outcome of the one that took the email over."""
    session.connection().execute(
        _record_statement(tuple(sorted(outcome))),
        {"email_of": email_id, "token_of": token, **outcome},
    )


ASYNC_RECORDS = True
"""PostgreSQL: the statement that records an outcome and renews the next lease commits
without waiting for the WAL to reach the disk (`synchronous_commit = off`, for that
statement's transaction only). The commit is visible to every other worker at once, so
the rules above hold as before; what changes is a crash of PostgreSQL itself (not of a
worker): the outcomes recorded in its last moments (at most 3 x `wal_writer_delay`,
0.6 s by default) are lost, and those emails are sent again once their leases run out
(at least once, as after any crash). Waiting for the disk was most of a worker's wait
per email (D179)."""


_NO_DISK_WAIT = (
    select(func.set_config("synchronous_commit", "off", True)).scalar_subquery().is_not(None)
)
"""A condition that is always true and turns off `synchronous_commit` for the
transaction of the statement it is in (an uncorrelated subquery: run once)."""


_ASYNC_COMMIT = text("SET LOCAL synchronous_commit TO off")


@cache
def _pg_settle_and_renew(columns: tuple[str, ...] | None) -> Any:
    """PostgreSQL, one statement (one round trip, in autocommit): record an outcome
    setting `columns` (None: no outcome) only while its claim holds, and renew the
    next email's lease only while its claim holds (`email_of` NULL: no email). Built
    once per set of outcome columns."""
    renew = _OUTBOX.update().where(
        _OUTBOX.c.id == bindparam("email_of"),
        _OUTBOX.c.claim_token == bindparam("token_of"),
        _OUTBOX.c.status == OutboxStatus.SENDING,
    )
    if ASYNC_RECORDS:
        renew = renew.where(_NO_DISK_WAIT)
    renew = renew.values(
        lease_expires_at=bindparam("lease_until", type_=_OUTBOX.c.lease_expires_at.type)
    )
    if columns is not None:
        settled = (
            _OUTBOX.update()
            .where(
                _OUTBOX.c.id == bindparam("settled_of"),
                _OUTBOX.c.claim_token == bindparam("settled_token"),
            )
            .values(
                lease_expires_at=None,
                claim_token=None,
                **{c: bindparam(f"settled_{c}", type_=_OUTBOX.c[c].type) for c in columns},
            )
            .cte("settled")
        )
        renew = renew.add_cte(settled)
    return renew


class _Ledger:
    """Where one sender records outcomes and renews leases, each outcome with the next
    email's renewal, atomically (D92). On PostgreSQL: one connection kept for the batch
    (in autocommit; the heartbeat renews through it too, so a sender holds one
    connection as before) and one statement per email (`_pg_settle_and_renew`); on
    SQLite a write transaction per email, as before."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._postgres = database.dialect == "postgresql"
        self._connection: Connection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> _Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def settle_and_renew(
        self, settle: _Outcome | None, email_id: int | None, token: str, now: datetime
    ) -> bool:
        """Records `settle` (if any) and renews `email_id`'s claim (if any); False if
        that claim is gone."""
        if not self._postgres:
            with self._database.write() as session:
                if settle is not None:
                    _record(session, *settle)
                if email_id is None:
                    return False
                return renew_lease(session, email_id=email_id, token=token, now=now)
        params: dict[str, object] = {
            "email_of": email_id,
            "token_of": token,
            "lease_until": now + LEASE,
        }
        columns = None
        if settle is not None:
            settled_of, settled_token, outcome = settle
            columns = tuple(sorted(outcome))
            params.update(settled_of=settled_of, settled_token=settled_token)
            params.update({f"settled_{c}": value for c, value in outcome.items()})
        with self._lock:
            if self._connection is None:
                connection = self._database.engine.connect()
                self._connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            try:
                result = self._connection.execute(_pg_settle_and_renew(columns), params)
            except BaseException:
                self._connection.invalidate()  # its state is unknown: a new one next time
                self._connection.close()
                self._connection = None
                raise
        return int(result.rowcount or 0) == 1

    def renew(self, email_id: int, token: str, now: datetime) -> bool:
        return self.settle_and_renew(None, email_id, token, now)


def _redacted(error: str, address: str | None) -> str:
    """`redact`, and the recipient's mailbox name wherever it appears on its own (a
    server may say `mailbox jsmith unknown`)."""
    error = redact(error)
    mailbox = (address or "").rpartition("@")[0]
    if len(mailbox) >= 3:
        alone = rf"(?<![A-Za-z0-9]){re.escape(mailbox)}(?![A-Za-z0-9])"
        error = re.sub(alone, "[address]", error, flags=re.IGNORECASE)
    return error


class _Heartbeat:
    """Renews the lease of the email being sent every HEARTBEAT_SECONDS while its send
    lasts, so that a slow SMTP server (a reply may take `smtp_timeout_seconds` per
    command) never lets another worker send the same email while this one is still
    sending it. One thread for the whole batch, started at its first send; once a claim
    is found lost it is never renewed again, and a renewal under way finishes before
    the send's outcome is recorded."""

    def __init__(self, ledger: _Ledger, clock: Clock) -> None:
        self._ledger, self._clock = ledger, clock
        self._cond = threading.Condition()
        self._current: tuple[int, str] | None = None
        self._due = 0.0
        self._renewing = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @contextmanager
    def keeping(self, email_id: int, token: str) -> Iterator[None]:
        with self._cond:
            self._current = (email_id, token)
            self._due = time.monotonic() + HEARTBEAT_SECONDS
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mail-lease", daemon=True)
                self._thread.start()
            # No wake-up: the thread's timed wait ends before this email's renewal is
            # due (it waits at most HEARTBEAT_SECONDS, from before this moment), so a
            # send costs no switch to the heartbeat thread and back (D179).
        try:
            yield
        finally:
            with self._cond:
                self._current = None
                while self._renewing:
                    self._cond.wait()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                current = self._current
                if current is None:
                    self._cond.wait(HEARTBEAT_SECONDS)
                    continue
                remaining = self._due - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._due = time.monotonic() + HEARTBEAT_SECONDS
                self._renewing = True
                self._cond.release()
                try:
                    held = self._renew(*current)
                finally:
                    self._cond.acquire()
                    self._renewing = False
                    self._cond.notify_all()
                if not held and self._current == current:
                    self._current = None  # lost: not renewed again

    def _renew(self, email_id: int, token: str) -> bool:
        """False only when the claim is known lost (a failed renewal is tried again)."""
        try:
            held = self._ledger.renew(email_id, token, self._clock())
        except Exception as exc:
            log.warning("email %s: could not renew the lease: %s", email_id, exc)
            return True
        if not held:
            log.warning("email %s: lease lost while sending", email_id)
        return held


@contextmanager
def _heartbeat(ledger: _Ledger, clock: Clock) -> Iterator[_Heartbeat]:
    heartbeat = _Heartbeat(ledger, clock)
    try:
        yield heartbeat
    finally:
        heartbeat.close()


def _retry_or_give_up(attempts: int, error: str) -> dict[str, object]:
    if attempts >= MAX_ATTEMPTS:
        return _failed(f"gave up after {attempts} attempts: {error}")
    return {
        "status": OutboxStatus.PENDING,
        "next_attempt_at": utcnow() + backoff(attempts),
        "last_error": error[:1000],
    }


def _failed(reason: str) -> dict[str, object]:
    return {"status": OutboxStatus.FAILED, "finished_at": utcnow(), "last_error": reason[:1000]}
