"""The `undersigned` console script, run as an operator runs it: a separate process
configured only through UNDERSIGNED_* environment variables."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from app.db import Database, utcnow
from app.letters.models import Letter, LetterStatus

pytestmark = pytest.mark.slow  # runs `undersigned` in subprocesses

TIMEOUT = 120
Run = Callable[..., subprocess.CompletedProcess[str]]


def _console_script() -> str:
    beside_python = Path(sys.executable).with_name("undersigned")
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("undersigned")
    assert found, "the `undersigned` console script is not installed (pip install -e .)"
    return found


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def run(tmp_path: Path, database_url: str) -> Run:
    """Runs `undersigned ARGS` in tmp_path (so no .env or ./var of the checkout is read)."""
    script = _console_script()

    def run(
        *args: str, secret: bool = True, expect: int | None = 0
    ) -> subprocess.CompletedProcess[str]:
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("UNDERSIGNED_")
        }
        env["UNDERSIGNED_DATABASE_URL"] = database_url
        env["UNDERSIGNED_DATA_DIR"] = str(tmp_path / "data")
        if secret:
            env["UNDERSIGNED_SECRET_KEY"] = "cli-test-secret"
        result = subprocess.run(  # noqa: S603
            [script, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if expect is not None:
            assert result.returncode == expect, (
                f"`undersigned {' '.join(args)}` exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    return run


def _letter(database_url: str, slug: str) -> Letter | None:
    database = Database(database_url)
    try:
        with database.read() as session:
            return session.scalar(select(Letter).where(Letter.slug == slug))
    finally:
        database.dispose()


def test_db_upgrade_creates_the_schema(run: Run, database_url: str) -> None:
    result = run("db", "upgrade")
    assert "up to date" in result.stdout
    database = Database(database_url)
    try:
        tables = set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()
    assert {"letters", "letter_tallies", "signatures", "outbox_emails", "alembic_version"} <= tables
    run("db", "upgrade")  # a second run is a no-op, not an error


def test_demo_is_idempotent(run: Run, database_url: str) -> None:
    run("db", "upgrade")
    first = run("demo")
    assert "Demo letters created" in first.stdout
    assert "ice-out" in first.stdout
    second = run("demo")
    assert second.stdout.strip() == "Demo letters exist."
    letter = _letter(database_url, "ice-out")
    assert letter is not None
    assert letter.status == LetterStatus.OPEN


def test_letter_create_publishes_a_letter(run: Run, tmp_path: Path, database_url: str) -> None:
    run("db", "upgrade")
    body = tmp_path / "f.md"
    body.write_text("# Hello\n\nWe ask for **one** thing.\n", encoding="utf-8")

    result = run("letter", "create", "--slug", "x", "--title", "T", "--body-file", str(body),
                 "--goal", "50", "--publish")  # fmt: skip
    assert "'x' created (open)" in result.stdout
    assert "/letters/x" in result.stdout
    letter = _letter(database_url, "x")
    assert letter is not None
    assert letter.title == "T"
    assert letter.goal == 50
    assert letter.is_open(utcnow())
    assert "<strong>one</strong>" in letter.body_html

    draft = run("letter", "create", "--slug", "draft-one", "--title", "D", "--body-file", str(body))
    assert "(draft)" in draft.stdout
    stored = _letter(database_url, "draft-one")
    assert stored is not None
    assert not stored.is_open(utcnow())


def test_letter_create_rejects_bad_input(run: Run, tmp_path: Path, database_url: str) -> None:
    run("db", "upgrade")
    body = tmp_path / "f.md"
    body.write_text("Text.\n", encoding="utf-8")

    bad = run("letter", "create", "--slug", "Not A Slug!", "--title", "T",
              "--body-file", str(body), expect=None)  # fmt: skip
    assert bad.returncode != 0
    assert "slug: use lower-case letters, digits and single dashes" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert _letter(database_url, "Not A Slug!") is None

    run("letter", "create", "--slug", "twice", "--title", "T", "--body-file", str(body))
    again = run("letter", "create", "--slug", "twice", "--title", "T2", "--body-file", str(body),
                expect=None)  # fmt: skip
    assert again.returncode != 0
    assert "Traceback" not in again.stderr
    assert again.stderr.strip(), "a duplicate slug should be explained"
    stored = _letter(database_url, "twice")
    assert stored is not None
    assert stored.title == "T"

    missing = run("letter", "create", "--slug", "y", "--title", "T",
                  "--body-file", str(tmp_path / "nope.md"), expect=None)  # fmt: skip
    assert missing.returncode != 0
    assert "nope.md" in missing.stderr


def test_purge_runs(run: Run) -> None:
    run("db", "upgrade")
    result = run("purge")
    lines = result.stdout.strip().splitlines()
    assert lines, "purge reports what it deleted"
    assert all(line.endswith("deleted") for line in lines), result.stdout


def test_secret_key_is_generated_once_and_kept(run: Run, tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret_key"
    assert not key_file.exists()

    run("db", "upgrade", secret=False)
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert len(key.strip()) >= 32

    run("purge", secret=False)
    assert key_file.read_text() == key, "a restart must keep the key (and so every link)"

    # With the key given in the environment, no file is needed or touched.
    key_file.unlink()
    run("purge")
    assert not key_file.exists()
