"""The tally stays exact and signatures stay unique when many requests race.

Each operation runs as a request does: its own session and transaction, opened by
`Database.write()`, committed for real."""

from __future__ import annotations

import queue
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.errors import InvalidToken
from app.letters.models import LetterTally
from app.mail.models import OutboxEmail
from app.signatures.addresses import email_hash
from app.signatures.models import PendingSignature, PendingState, Signature, SignatureStatus
from app.signatures.service import (
    Confirmation,
    notify_pending,
    sign_letter,
    verify_signature,
)
from app.signlog.models import LogEntry
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import make_letter, signature_in, verify_token

THREADS = 16
PENDING_SIGNERS = 40
VERSIONS_PER_ADDRESS = 2  # two submissions each, both confirmed at once
VERIFIES_PER_TOKEN = 3
RESIGNS_PER_ADDRESS = 2
NEW_SIGNERS = 12
SIGNS_PER_NEW_ADDRESS = 4  # the variants below
WORKER_PASSES = 8


@dataclass
class Outcome:
    letter_id: int
    pending_addresses: list[str]
    new_addresses: list[str]
    errors: list[BaseException]


def _race(db: Database, settings: Settings) -> Outcome:
    """N addresses with two submissions each; then THREADS threads confirm every link
    several times (both versions of an address at once), sign the same addresses again,
    sign new addresses several times at once, and run the mail worker's step."""
    with db.write() as session:
        letter = make_letter(session)
        slug, letter_id = letter.slug, letter.id
    pending_addresses = [f"pending.{number}@example.org" for number in range(PENDING_SIGNERS)]
    with db.write() as session:
        for _ in range(VERSIONS_PER_ADDRESS):
            for address in pending_addresses:
                data = signature_in(email=address)
                sign_letter(session, slug=slug, data=data, settings=settings)
    with db.read() as session:
        rows = session.scalars(
            select(PendingSignature).where(PendingSignature.letter_id == letter_id)
        )
        tokens = [verify_token(settings, row) for row in rows]
    assert len(tokens) == PENDING_SIGNERS * VERSIONS_PER_ADDRESS
    new_addresses = [f"new.{number}@gmail.com" for number in range(NEW_SIGNERS)]

    def verify(token: str) -> None:
        with db.write() as session:
            verify_signature(session, token=token, settings=settings)

    def resign(address: str) -> None:
        with db.write() as session:
            sign_letter(session, slug=slug, data=signature_in(email=address), settings=settings)

    def notify() -> None:
        with db.write() as session:
            notify_pending(session, settings=settings)

    operations: list[Callable[[], None]] = []
    for token in tokens:
        operations += [partial(verify, token)] * VERIFIES_PER_TOKEN
    for address in pending_addresses:
        operations += [partial(resign, address)] * RESIGNS_PER_ADDRESS
    for number in range(NEW_SIGNERS):
        # Canonically one address, written SIGNS_PER_NEW_ADDRESS ways, signed at once.
        variants = [
            f"new.{number}@gmail.com",
            f"NEW.{number}@gmail.com",
            f"new.{number}+letters@gmail.com",
            f"ne.w{number}@googlemail.com",
        ]
        operations += [partial(resign, variant) for variant in variants]
    operations += [notify] * WORKER_PASSES
    random.Random(7).shuffle(operations)

    errors: list[BaseException] = []
    errors_lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(share: list[Callable[[], None]]) -> None:
        start.wait(timeout=60)
        for operation in share:
            try:
                operation()
            except BaseException as exc:  # every failure is reported
                with errors_lock:
                    errors.append(exc)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(worker, operations[index::THREADS]) for index in range(THREADS)]
        for future in futures:
            future.result(timeout=300)
    with db.write() as session:
        notify_pending(session, settings=settings)  # whatever the race left waiting
    return Outcome(letter_id, pending_addresses, new_addresses, errors)


def _tally_and_verified(session: Session, letter_id: int) -> tuple[int | None, int | None]:
    """The letter's counter, and its verified signatures counted row by row."""
    tally = session.scalar(
        select(LetterTally.verified_count).where(LetterTally.letter_id == letter_id)
    )
    verified = session.scalar(
        select(func.count())
        .select_from(Signature)
        .where(Signature.letter_id == letter_id, Signature.status == SignatureStatus.VERIFIED)
    )
    return tally, verified


def _check(db: Database, settings: Settings, outcome: Outcome) -> None:
    assert outcome.errors == [], [repr(error) for error in outcome.errors[:5]]
    letter_id = outcome.letter_id
    with db.read() as session:
        assert _tally_and_verified(session, letter_id) == (PENDING_SIGNERS, PENDING_SIGNERS)

        per_hash = dict(
            session.execute(
                select(Signature.email_hash, func.count())
                .where(Signature.letter_id == letter_id)
                .group_by(Signature.email_hash)
            ).all()
        )
        assert set(per_hash) == {
            email_hash(settings.secret, letter_id, address) for address in outcome.pending_addresses
        }
        assert set(per_hash.values()) == {1}
        positions = sorted(
            position or 0
            for position in session.scalars(
                select(Signature.position).where(Signature.letter_id == letter_id)
            )
        )
        assert positions == list(range(1, PENDING_SIGNERS + 1))

        # Every submission was stored on its own, each address's under one hash.
        submissions = Counter(
            session.scalars(
                select(PendingSignature.email_hash).where(PendingSignature.letter_id == letter_id)
            )
        )
        for address in outcome.new_addresses:
            assert submissions[email_hash(settings.secret, letter_id, address)] == (
                SIGNS_PER_NEW_ADDRESS
            )
        for address in outcome.pending_addresses:
            assert submissions[email_hash(settings.secret, letter_id, address)] == (
                VERSIONS_PER_ADDRESS + RESIGNS_PER_ADDRESS
            )
        assert set(
            session.scalars(
                select(PendingSignature.state).where(PendingSignature.letter_id == letter_id)
            )
        ) <= {PendingState.SENT, PendingState.CONFIRMED, PendingState.SKIPPED, PendingState.WAITING}
        # Nothing waits but what the cap holds back.
        waiting = session.scalar(
            select(func.count())
            .select_from(PendingSignature)
            .where(
                PendingSignature.letter_id == letter_id,
                PendingSignature.state == PendingState.WAITING,
            )
        )
        emails = Counter(
            email_hash(settings.secret, letter_id, address)
            for address in session.scalars(select(OutboxEmail.to_address))
            if address is not None
        )
        assert max(emails.values()) <= settings.email_cap[0]
        assert (waiting or 0) <= NEW_SIGNERS + PENDING_SIGNERS  # at most one per address


@pytest.mark.postgres
def test_concurrent_verify_and_sign_on_postgresql(postgres: Database, tmp_path: Path) -> None:
    truncate(postgres)
    settings = make_settings(tmp_path, postgres.url)
    try:
        outcome = _race(postgres, settings)
        _check(postgres, settings, outcome)
    finally:
        truncate(postgres)  # the database is shared with the rolled-back tests


@pytest.fixture
def sqlite_file(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    """A committed, migrated SQLite file of this test's own."""
    path = tmp_path / "race.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    database = Database(url, pool_size=THREADS, max_overflow=0)
    yield database
    database.dispose()


@pytest.mark.slow  # hundreds of committed transactions from 16 threads
def test_concurrent_verify_and_sign_on_sqlite(sqlite_file: Database, tmp_path: Path) -> None:
    """Writers take the lock with BEGIN IMMEDIATE, so no thread sees 'database is locked'."""
    settings = make_settings(tmp_path, sqlite_file.url)
    outcome = _race(sqlite_file, settings)
    _check(sqlite_file, settings, outcome)


def _wait_until_blocked(db: Database, pid: int) -> None:
    """Until the server process `pid` waits for a row lock."""
    for _ in range(500):
        with db.read() as session:
            waiting = session.scalar(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            )
        if waiting == "Lock":
            return
        time.sleep(0.01)
    raise AssertionError("the second confirmation never waited for the first one's lock")


@pytest.mark.postgres
@pytest.mark.parametrize("then_removed", [False, True], ids=["verified", "removed"])
def test_second_link_waiting_on_the_first_is_not_counted(
    postgres: Database, tmp_path: Path, then_removed: bool
) -> None:
    """Two links of one address: the second one's confirmation waits for the address's
    lock while the first one commits. It must then count nothing, log nothing and leave
    no gap in the list; if the signature was removed meanwhile, its link is gone.
    (PostgreSQL only: SQLite's writers take turns. A confirmation that decides from what
    it read before waiting counts this address twice; see D195.)"""
    truncate(postgres)
    settings = make_settings(tmp_path, postgres.url)
    try:
        with postgres.write() as session:
            letter = make_letter(session)
            slug, letter_id = letter.slug, letter.id
            for data in (signature_in(), signature_in()):
                sign_letter(session, slug=slug, data=data, settings=settings)
            for _ in range(2):
                data = signature_in(email="twice@example.org")
                sign_letter(session, slug=slug, data=data, settings=settings)
        twice = email_hash(settings.secret, letter_id, "twice@example.org")
        with postgres.read() as session:
            rows = session.scalars(select(PendingSignature).order_by(PendingSignature.id)).all()
            first, second = (verify_token(settings, row) for row in rows if row.email_hash == twice)
            one, other = (verify_token(settings, row) for row in rows if row.email_hash != twice)
        with postgres.write() as session:
            verify_signature(session, token=one, settings=settings)  # position 1

        waiting: queue.Queue[int] = queue.Queue()

        def second_link() -> Confirmation | InvalidToken:
            with postgres.write() as session:
                waiting.put(session.scalar(text("SELECT pg_backend_pid()")))
                try:
                    return verify_signature(session, token=second, settings=settings)
                except InvalidToken as exc:
                    return exc

        with ThreadPoolExecutor(max_workers=1) as pool:
            with postgres.write() as session:
                verify_signature(session, token=first, settings=settings)  # position 2
                future = pool.submit(second_link)
                _wait_until_blocked(postgres, waiting.get(timeout=10))
                if then_removed:  # moderation.remove_signature's two changes (not its log
                    # entry or audit), before the first one commits
                    session.execute(
                        update(Signature)
                        .where(Signature.email_hash == twice)
                        .values(status=SignatureStatus.REMOVED)
                    )
                    session.execute(
                        update(LetterTally)
                        .where(LetterTally.letter_id == letter_id)
                        .values(verified_count=LetterTally.verified_count - 1)
                    )
            outcome = future.result(timeout=30)
        if then_removed:
            assert isinstance(outcome, InvalidToken)
        else:
            assert isinstance(outcome, Confirmation) and outcome.already
        with postgres.write() as session:
            verify_signature(session, token=other, settings=settings)  # position 3
        with postgres.read() as session:
            tally, verified = _tally_and_verified(session, letter_id)
            positions = sorted(
                position or 0 for position in session.scalars(select(Signature.position))
            )
            entries = session.scalar(select(func.count()).select_from(LogEntry))
        assert tally == verified == (2 if then_removed else 3)
        assert positions == [1, 2, 3]  # the second link took no place
        assert entries == 3  # one log entry per signature confirmed, none for the second link
    finally:
        truncate(postgres)
