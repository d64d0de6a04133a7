"""`undersigned backup PATH` (D90): a consistent copy of a live SQLite database, taken
while a signing wave runs, restores with every letter's tally equal to its verified
rows; an existing file is never overwritten without --force; on PostgreSQL the command
says how to use pg_dump and runs nothing."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from app.backup import backup_sqlite
from app.db import Database
from app.integrity import run_check
from app.letters.models import LetterTally
from app.signatures.models import Signature, SignatureStatus
from app.signatures.service import notify_pending, verify_signature
from tests.conftest import sqlite_copy
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign, verify_token
from tests.support.processes import clean_env, run_in_process

THREADS = 6
LETTERS = 3


def _wave(
    database: Database,
    settings: object,
    slugs: list[str],
    stop: threading.Event,
    confirmed: list[int],
    errors: list[BaseException],
) -> None:
    """Signs and confirms, one signature after another, through the services, each step
    its own transaction (as requests and the worker do), until `stop`."""
    from app.config import Settings
    from app.letters.models import Letter

    assert isinstance(settings, Settings)
    round_ = 0
    try:
        while not stop.is_set():
            slug = slugs[round_ % len(slugs)]
            round_ += 1
            with database.write() as session:
                letter = session.scalars(select(Letter).where(Letter.slug == slug)).one()
                pending = sign(session, letter, settings)
                token = verify_token(settings, pending)
            with database.write() as session:
                notify_pending(session, settings=settings)
            with database.write() as session:
                verify_signature(session, token=token, settings=settings)
            confirmed.append(1)
    except BaseException as exc:
        errors.append(exc)


def _verified_and_tallies(database: Database) -> tuple[int, int]:
    with database.read() as session:
        verified = session.scalar(
            select(func.count()).where(Signature.status == SignatureStatus.VERIFIED)
        )
        tallies = session.scalar(select(func.sum(LetterTally.verified_count)))
    return int(verified or 0), int(tallies or 0)


def test_a_backup_taken_during_a_signing_wave_restores_with_exact_tallies(
    tmp_path: Path, sqlite_template: Path
) -> None:
    url = sqlite_copy(sqlite_template, tmp_path)
    source = Path(url.removeprefix("sqlite:///"))
    settings = make_settings(tmp_path, url)
    database = Database(url, pool_size=THREADS + 4)
    with database.write() as session:
        slugs = [make_letter(session).slug for _ in range(LETTERS)]
    stop = threading.Event()
    confirmed: list[int] = []
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_wave, args=(database, settings, slugs, stop, confirmed, errors))
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    backups: list[Path] = []
    try:
        deadline = time.monotonic() + 60
        while len(confirmed) < 20:
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.02)
        for number in range(3):  # the API directly, then the command
            target = tmp_path / f"backup-{number}.db"
            backup_sqlite(source, target)
            backups.append(target)
            time.sleep(0.05)
        target = tmp_path / "backup-cli.db"
        result = run_in_process(
            ["backup", str(target)], cwd=tmp_path, env=clean_env(database_url=url)
        )
        assert result.returncode == 0, result.stderr
        assert "Backup written to" in result.stdout
        backups.append(target)
        still_running = all(thread.is_alive() for thread in threads)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    assert still_running, "the wave ended before the backups: they proved nothing"
    final_verified, _ = _verified_and_tallies(database)
    database.dispose()

    counts = []
    for path in backups:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0  # it holds addresses
        assert not Path(f"{path}-wal").exists()  # one self-contained file
        restored = Database(f"sqlite:///{path}")
        try:
            report = run_check(restored)
            verified, tallies = _verified_and_tallies(restored)
        finally:
            restored.dispose()
        assert report.letters == LETTERS
        assert report.tallies == [], report.lines()
        assert verified == tallies > 0
        counts.append(verified)
    # Taken mid-wave: each copy is a moment of it, and the wave went on after them.
    assert counts == sorted(counts)
    assert counts[-1] < final_verified


def test_an_existing_file_is_kept_without_force(tmp_path: Path, sqlite_template: Path) -> None:
    url = sqlite_copy(sqlite_template, tmp_path)
    target = tmp_path / "backup.db"
    target.write_text("an older backup")
    env = clean_env(database_url=url)

    refused = run_in_process(["backup", str(target)], cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert target.read_text() == "an older backup"
    assert not list(tmp_path.glob(".backup.db.*"))  # no temporary file left behind

    forced = run_in_process(["backup", str(target), "--force"], cwd=tmp_path, env=env)
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes().startswith(b"SQLite format 3\x00")
    assert not list(tmp_path.glob(".backup.db.*"))


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    result = run_in_process(
        ["backup", str(tmp_path / "backup.db")],
        cwd=tmp_path,
        env=clean_env(database_url=f"sqlite:///{missing}"),
    )
    assert result.returncode == 1
    assert "There is no database" in result.stderr
    assert not missing.exists() and not (tmp_path / "backup.db").exists()


def test_postgresql_gets_pg_dump_advice_and_nothing_is_run(tmp_path: Path) -> None:
    url = "postgresql+psycopg://undersigned:hunter2-secret@db.example:5432/letters"
    target = tmp_path / "letters.dump"
    result = run_in_process(["backup", str(target)], cwd=tmp_path, env=clean_env(database_url=url))
    assert result.returncode == 2
    assert "pg_dump --format=custom" in result.stderr
    assert "postgresql://undersigned@db.example:5432/letters" in result.stderr
    assert "pg_restore" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout  # never the password
    assert not target.exists()
