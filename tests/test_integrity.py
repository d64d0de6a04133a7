"""The integrity report (`undersigned check`): each letter's tally against its
signatures, found in one statement and repaired under the counter's lock, and the
outbox's stuck, overdue and failed emails; the worker runs it daily and logs it."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.orm import Session

from app import jobs
from app.config import Settings
from app.db import Database, utcnow
from app.integrity import (
    TallyDifference,
    outbox_health,
    repair_tally,
    run_check,
    tally_differences,
)
from app.letters.models import Letter, LetterTally
from app.mail.backends import dev_mailbox
from app.mail.models import OutboxEmail, OutboxStatus
from app.organizers.models import AuditEvent
from app.organizers.service import SHELL
from app.signatures.models import RemovalReason, SignatureStatus
from app.signatures.moderation import remove_signature, set_hidden
from app.signatures.service import notify_pending, verify_signature
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign, sign_and_confirm, verify_token
from tests.support.processes import clean_env, run_in_process

ADDRESS = "private.person@example.org"


@contextmanager
def _statements(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _set_tally(session: Session, letter_id: int, count: int) -> None:
    """Breaks a counter on purpose (as a bug or a hand edit would)."""
    session.execute(
        update(LetterTally).where(LetterTally.letter_id == letter_id).values(verified_count=count)
    )


def _mine(
    differences: list[TallyDifference], *letters: Letter
) -> dict[str, tuple[int | None, int]]:
    """The differences of these letters (other tests may commit letters of their own)."""
    ids = {letter.id for letter in letters}
    return {d.slug: (d.stored, d.actual) for d in differences if d.letter_id in ids}


# --- Tallies --------------------------------------------------------------------------


def test_tallies_kept_by_the_services_agree_with_their_signatures(
    session: Session, settings: Settings
) -> None:
    """Hidden signatures count, removed and withdrawn ones do not: exactly what the
    services do to the counter, so a letter moderated in every way shows no difference."""
    letter = make_letter(session)
    signatures = [sign_and_confirm(session, letter, settings) for _ in range(5)]
    empty = make_letter(session)
    positions = [signature.position for signature in signatures]
    assert None not in positions
    set_hidden(session, actor=SHELL, letter_id=letter.id, position=positions[0] or 0, hidden=True)
    remove_signature(session, actor=SHELL, letter_id=letter.id, position=positions[1] or 0,
                     reason=RemovalReason.BOT)  # fmt: skip
    session.flush()

    letters, differences = tally_differences(session)

    assert letters >= 2
    assert _mine(differences, letter, empty) == {}
    assert session.get_one(LetterTally, letter.id).verified_count == 4


def test_every_difference_is_found_in_one_statement(session: Session, settings: Settings) -> None:
    too_many, too_few, right = (make_letter(session) for _ in range(3))
    for letter, signers in ((too_many, 2), (too_few, 3), (right, 1)):
        for _ in range(signers):
            sign_and_confirm(session, letter, settings)
    hidden = sign_and_confirm(session, too_few, settings)
    hidden.hidden = True  # still counted
    withdrawn = sign_and_confirm(session, right, settings)
    withdrawn.status = SignatureStatus.WITHDRAWN  # as if the counter had missed it
    _set_tally(session, too_many.id, 7)
    _set_tally(session, too_few.id, 1)
    _set_tally(session, right.id, 1)
    session.flush()

    with _statements(session.get_bind()) as seen:
        _, differences = tally_differences(session)

    assert _mine(differences, too_many, too_few, right) == {
        too_many.slug: (7, 2),
        too_few.slug: (1, 4),
    }
    # One statement, whatever the number of letters (never one query per letter).
    assert len(seen) == 1
    assert "GROUP BY signatures.letter_id" in seen[0][0]


def test_the_count_is_one_pass_over_signatures_in_letter_order(
    session: Session, settings: Settings
) -> None:
    """SQLite groups by reading an index that starts with letter_id (no sort of every
    signature); PostgreSQL aggregates in one scan (no subplan, no loop per letter)."""
    letter = make_letter(session)
    for _ in range(3):
        sign_and_confirm(session, letter, settings)
    with _statements(session.get_bind()) as seen:
        tally_differences(session)
    [(statement, parameters)] = seen
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        rows = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        plan = json.dumps(rows.scalar_one())
        assert plan.count('"Relation Name": "signatures"') == 1, plan
        assert "SubPlan" not in plan, plan
        assert '"Node Type": "Aggregate"' in plan, plan
    else:
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        plan = "\n".join(str(row[-1]) for row in rows)
        # Any index that starts with letter_id serves the GROUP BY.
        assert re.search(r"SCAN signatures USING (COVERING )?INDEX \w+_letter_id_", plan), plan
        assert "TEMP B-TREE FOR GROUP BY" not in plan, plan


def test_a_repair_sets_the_count_and_is_audited(session: Session, settings: Settings) -> None:
    letter = make_letter(session, goal=3)
    for _ in range(3):
        sign_and_confirm(session, letter, settings)
    _set_tally(session, letter.id, 1)
    letter.goal_reached_at = None
    session.flush()

    found = repair_tally(session, letter_id=letter.id)

    assert found == TallyDifference(letter.id, letter.slug, stored=1, actual=3)
    assert session.get_one(LetterTally, letter.id).verified_count == 3
    session.refresh(letter)
    assert letter.goal_reached_at is not None, "a count repaired up to the goal reaches it"
    event_ = session.scalars(
        select(AuditEvent).where(
            AuditEvent.letter_id == letter.id, AuditEvent.action == "tally.repair"
        )
    ).one()
    assert event_.actor == SHELL.label
    assert event_.organizer_id is None
    assert event_.detail == {"stored": 1, "actual": 3}
    # Right again: a second repair changes nothing and records nothing.
    assert repair_tally(session, letter_id=letter.id).stored == 3
    assert (
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.letter_id == letter.id, AuditEvent.action == "tally.repair")
        )
        == 1
    )


def test_a_letter_without_a_counter_row_gets_one(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    for _ in range(2):
        sign_and_confirm(session, letter, settings)
    session.execute(delete(LetterTally).where(LetterTally.letter_id == letter.id))
    session.expire_all()

    assert _mine(tally_differences(session)[1], letter) == {letter.slug: (None, 2)}
    repair_tally(session, letter_id=letter.id)

    tally = session.get_one(LetterTally, letter.id)
    assert (tally.verified_count, tally.last_position) == (2, 2)


def test_repair_counts_under_the_counter_lock_while_people_confirm(
    clean_database: Database, tmp_path: Path
) -> None:
    """A confirmation in flight (its signature written, the counter moved, not yet
    committed) while the repair runs: the repair waits for the counter row, then counts,
    so the confirmation is neither lost nor counted twice."""
    db = clean_database
    settings = make_settings(tmp_path, db.url)
    with db.write() as session:
        letter = make_letter(session)
        letter_id = letter.id
        for _ in range(3):
            sign_and_confirm(session, letter, settings)
        pending = sign(session, letter, settings)
        notify_pending(session, settings=settings)
        token = verify_token(settings, pending)
        _set_tally(session, letter_id, 10)  # wrong: 3 signatures
    confirming = threading.Event()
    errors: list[BaseException] = []

    def confirm() -> None:
        try:
            with db.write() as session:
                verify_signature(session, token=token, settings=settings)
                confirming.set()
                time.sleep(0.5)  # the repair starts meanwhile
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            confirming.set()

    thread = threading.Thread(target=confirm)
    thread.start()
    assert confirming.wait(30)
    with db.write() as session:
        found = repair_tally(session, letter_id=letter_id)
    thread.join(30)
    assert not errors, errors

    # It saw the counter after the confirmation (11) and the 4 signatures it made.
    assert (found.stored, found.actual) == (11, 4)
    with db.read() as session:
        assert session.get_one(LetterTally, letter_id).verified_count == 4
        assert run_check(db).tallies == []


# --- The outbox -----------------------------------------------------------------------


def _email(
    session: Session,
    *,
    kind: str,
    status: OutboxStatus,
    due: datetime,
    lease: datetime | None = None,
    finished: datetime | None = None,
) -> None:
    session.add(
        OutboxEmail(
            kind=kind,
            to_address=ADDRESS,
            subject="s",
            text_body="t",
            html_body="h",
            headers={},
            message_id=make_msgid(domain="test"),
            status=status,
            next_attempt_at=due,
            lease_expires_at=lease,
            finished_at=finished,
        )
    )


def _troubled_outbox(db: Database, now: datetime) -> None:
    """One email of each kind of trouble, and one of each harmless kind beside it."""

    def minutes(n: int) -> timedelta:
        return timedelta(minutes=n)

    with db.write() as session:
        # Stuck: claimed, its lease ran out and nobody took it over.
        _email(session, kind="verify", status=OutboxStatus.SENDING, due=now - minutes(40),
               lease=now - minutes(5))  # fmt: skip
        # Being sent right now: fine.
        _email(session, kind="verify", status=OutboxStatus.SENDING, due=now, lease=now + minutes(1))
        # Overdue: due 40 and 20 minutes ago, still pending.
        _email(session, kind="update", status=OutboxStatus.PENDING, due=now - minutes(40))
        _email(session, kind="login", status=OutboxStatus.PENDING, due=now - minutes(20))
        # Due a moment ago, or a retry due later: fine.
        _email(session, kind="verify", status=OutboxStatus.PENDING, due=now - minutes(1))
        _email(session, kind="verify", status=OutboxStatus.PENDING, due=now + minutes(30))
        # Failed for good two hours ago: reported; three days ago: not any more.
        _email(session, kind="verify", status=OutboxStatus.FAILED, due=now - minutes(200),
               finished=now - minutes(120))  # fmt: skip
        _email(session, kind="verify", status=OutboxStatus.FAILED, due=now - timedelta(days=3),
               finished=now - timedelta(days=3))  # fmt: skip
        _email(session, kind="verify", status=OutboxStatus.SENT, due=now - minutes(60),
               finished=now - minutes(59))  # fmt: skip


def test_the_outbox_report_finds_stuck_overdue_and_failed_emails(clean_database: Database) -> None:
    now = utcnow()
    _troubled_outbox(clean_database, now)

    with clean_database.read() as session:
        health = outbox_health(session, now=now)
        longer = outbox_health(session, now=now, overdue_after=timedelta(minutes=30))

    assert health.stuck == {"verify": 1}
    assert health.overdue == {"update": 1, "login": 1}
    assert health.oldest_overdue is not None
    assert abs(health.oldest_overdue - (now - timedelta(minutes=40))) < timedelta(seconds=1)
    assert health.failed == {"verify": 1}
    assert not health.ok
    assert longer.overdue == {"update": 1}


def test_an_empty_outbox_and_right_tallies_are_well(
    clean_database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, clean_database.url)
    with clean_database.write() as session:
        letter = make_letter(session)
        sign_and_confirm(session, letter, settings)
        session.execute(delete_outbox())

    report = run_check(clean_database)

    assert report.ok
    assert report.letters == 1
    lines = list(report.lines())
    assert lines[0] == "Tallies: 1 letters checked, 0 differ from their signatures."
    assert lines[-1] == "All is well."


def delete_outbox() -> Any:
    return delete(OutboxEmail)


def test_run_check_repairs_each_letter_and_says_so(
    clean_database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, clean_database.url)
    with clean_database.write() as session:
        broken = make_letter(session)
        fine = make_letter(session)
        for letter in (broken, fine):
            sign_and_confirm(session, letter, settings)
        _set_tally(session, broken.id, 5)
        session.execute(delete_outbox())

    checked = run_check(clean_database)
    assert not checked.ok
    assert [(d.slug, d.stored, d.actual) for d in checked.tallies] == [(broken.slug, 5, 1)]
    assert f"  {broken.slug}: stored 5, actual 1" in list(checked.lines())

    repaired = run_check(clean_database, repair=True)
    assert repaired.ok
    assert f"  {broken.slug}: stored 5, actual 1 (repaired: set to 1)" in list(repaired.lines())
    assert list(repaired.lines())[-1] == "All is well (after the repairs)."
    after = run_check(clean_database)
    assert after.ok and after.tallies == []


def test_outbox_trouble_is_not_repaired_and_keeps_the_report_failing(
    clean_database: Database,
) -> None:
    now = utcnow()
    _troubled_outbox(clean_database, now)
    report = run_check(clean_database, repair=True, now=now)
    assert not report.ok
    text_ = "\n".join(report.lines())
    assert "stuck in sending past their lease: 1 (verify 1)" in text_
    assert "overdue by more than 15 minutes: 2 (login 1, update 1); the oldest due 40" in text_
    assert "failed in the last day: 1 (verify 1)" in text_
    assert "example.org" not in text_
    assert text_.endswith("Something is wrong: see above.")


# --- The worker's daily check ---------------------------------------------------------


def test_the_worker_logs_the_check_without_addresses(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    path = tmp_path / "check.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    settings = make_settings(tmp_path, database.url)
    try:
        with database.write() as session:
            letter = make_letter(session)
            sign_and_confirm(session, letter, settings, email=ADDRESS)
            _set_tally(session, letter.id, 9)
            slug = letter.slug
        _troubled_outbox(database, utcnow())
        monkeypatch.setattr(jobs, "CHECK_FIRST_AFTER", timedelta(0))
        stop = threading.Event()
        caplog.set_level(logging.INFO, logger="undersigned.jobs")
        thread = threading.Thread(
            target=jobs.run_worker,
            args=(database, dev_mailbox(settings)),
            kwargs={"settings": settings, "stop": stop, "poll_seconds": 0.05},
        )
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                "integrity check" in record.getMessage() for record in caplog.records
            ):
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(timeout=20)
        [record] = [r for r in caplog.records if "integrity check" in r.getMessage()]
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert f"{slug}: stored 9, actual 1" in message
        assert "stuck in sending past their lease: 1" in message
        assert ADDRESS not in caplog.text and "example.org" not in caplog.text
        with database.read() as session:  # the worker only reports
            assert session.get_one(LetterTally, letter.id).verified_count == 9
    finally:
        database.dispose()


def test_the_check_runs_daily_after_a_first_delay() -> None:
    assert timedelta(days=1) == jobs.CHECK_EVERY
    assert timedelta(0) < jobs.CHECK_FIRST_AFTER <= timedelta(hours=1)


# --- The command ----------------------------------------------------------------------


@pytest.mark.slow
def test_undersigned_check_exits_1_until_repaired(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = clean_env(database_url=url, data_dir=str(tmp_path / "data"),
                    secret_key="check-test-secret-0123456789-abcdefghijklmn")  # fmt: skip

    def undersigned(*args: str) -> subprocess.CompletedProcess[str]:
        """`undersigned ARGS` through its entry point (as tests/test_cli.py runs it)."""
        return run_in_process(args, cwd=tmp_path, env=env)

    assert undersigned("db", "upgrade").returncode == 0
    database = Database(url)
    settings = make_settings(tmp_path, url, secret_key=env["UNDERSIGNED_SECRET_KEY"])
    try:
        with database.write() as session:
            letter = make_letter(session, slug="counted")
            for _ in range(2):
                sign_and_confirm(session, letter, settings)
            _set_tally(session, letter.id, 5)
            session.execute(delete_outbox())

        found = undersigned("check")
        assert found.returncode == 1, found.stdout + found.stderr
        assert "  counted: stored 5, actual 2\n" in found.stdout
        repaired = undersigned("check", "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert "(repaired: set to 2)" in repaired.stdout
        well = undersigned("check")
        assert well.returncode == 0 and well.stdout.endswith("All is well.\n"), well.stdout

        with database.write() as session:
            _email(session, kind="verify", status=OutboxStatus.PENDING,
                   due=utcnow() - timedelta(minutes=30))  # fmt: skip
        late = undersigned("check")
        assert late.returncode == 1
        assert "overdue by more than 15 minutes: 1 (verify 1)" in late.stdout
        assert ADDRESS not in late.stdout + late.stderr
        assert undersigned("check", "--overdue-minutes", "60").returncode == 0
        with database.read() as session:
            actions = session.scalars(
                select(AuditEvent.action).where(AuditEvent.letter_id == letter.id)
            ).all()
        assert actions.count("tally.repair") == 1
    finally:
        database.dispose()


# --- Signature logs -------------------------------------------------------------------------


def _log_of(session: Session, *letters: Letter) -> dict[str, tuple[int, int, int]]:
    from app.integrity import log_differences

    ids = {letter.id for letter in letters}
    return {d.slug: (d.stored, d.logged, d.queued)
            for d in log_differences(session) if d.letter_id in ids}  # fmt: skip


def test_each_tally_is_checked_against_its_log_queued_or_sequenced(
    session: Session, settings: Settings
) -> None:
    from sqlalchemy import text

    from app.signlog.sequencer import sequence

    right, lost, forged = (make_letter(session) for _ in range(3))
    for letter in (right, lost, forged):
        for _ in range(3):
            sign_and_confirm(session, letter, settings)
    # Queued only: head (none yet) + queued adds.
    assert _log_of(session, right, lost, forged) == {}
    for letter in (right, lost, forged):
        sequence(session, settings, letter_id=letter.id)
    removed = sign_and_confirm(session, right, settings)
    assert removed.position is not None
    remove_signature(session, actor=SHELL, letter_id=right.id, position=removed.position,
                     reason=RemovalReason.BOT)  # fmt: skip
    # Sequenced and queued together (an add and a removal queued): still right.
    assert _log_of(session, right, lost, forged) == {}

    sign_and_confirm(session, lost, settings)
    session.execute(
        text("DELETE FROM log_entries WHERE letter_id = :l AND seq IS NULL"), {"l": lost.id}
    )
    session.execute(text("UPDATE log_heads SET adds = 9 WHERE letter_id = :l"), {"l": forged.id})

    with _statements(session.get_bind()) as seen:
        differences = _log_of(session, right, lost, forged)
    assert differences == {lost.slug: (4, 3, 0), forged.slug: (3, 9, 0)}
    assert len(seen) == 1  # one statement, whatever the number of letters


def test_a_log_difference_fails_the_report_and_is_not_repaired(
    clean_database: Database, tmp_path: Path
) -> None:
    from sqlalchemy import text

    settings = make_settings(tmp_path, clean_database.url)
    with clean_database.write() as session:
        letter = make_letter(session)
        fine = make_letter(session)
        for made in (letter, fine, fine):
            sign_and_confirm(session, made, settings)
        session.execute(delete_outbox())
    assert run_check(clean_database).ok
    with clean_database.write() as session:
        session.execute(text("DELETE FROM log_entries WHERE letter_id = :l"), {"l": letter.id})

    report = run_check(clean_database, repair=True)

    assert not report.ok
    assert report.tallies == []  # the tally is right: the log lost an entry
    lines = list(report.lines())
    assert "Signature logs: 1 differ from their tallies." in lines
    assert f"  {letter.slug}: tally 1, log 0 (0 entries not yet sequenced)" in lines
    assert lines[-1] == "Something is wrong: see above."
