"""The `undersigned` console script, run as an operator runs it: a separate process
configured only through UNDERSIGNED_* environment variables."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from app.cli import base_url_for, is_loopback
from app.db import Database, utcnow
from app.letters.models import Letter, LetterStatus
from tests.support.processes import clean_env, console_script

pytestmark = pytest.mark.slow  # runs `undersigned` in subprocesses

TIMEOUT = 120
SECRET = "cli-test-secret-0123456789-abcdefghijklmnop"
OTHER_SECRET = "another-cli-secret-0123456789-abcdefghijk"
MISMATCH = "different SECRET_KEY than the one this database was used with"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def run(tmp_path: Path, database_url: str) -> Run:
    """Runs `undersigned ARGS` in tmp_path (so no .env or ./var of the checkout is read)."""
    script = console_script()

    def run(
        *args: str,
        secret: bool | str = True,
        expect: int | None = 0,
        timeout: float = TIMEOUT,
        **settings: str,
    ) -> subprocess.CompletedProcess[str]:
        if secret:
            settings["SECRET_KEY"] = SECRET if secret is True else str(secret)
        env = clean_env(database_url=database_url, data_dir=str(tmp_path / "data"))
        env.update({f"UNDERSIGNED_{name}": value for name, value in settings.items()})
        result = subprocess.run(  # noqa: S603
            [script, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
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
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    key = key_file.read_text()
    assert len(key.strip()) >= 32

    run("purge", secret=False)
    assert key_file.read_text() == key, "a restart must keep the key (and so every link)"

    # With the key given in the environment, no file is needed or touched.
    key_file.unlink()
    run("purge", secret=key)
    assert not key_file.exists()


def test_a_short_or_empty_secret_key_is_refused_with_a_way_out(run: Run, tmp_path: Path) -> None:
    make_one = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
    short = run("db", "upgrade", secret="only-sixteen-byt", expect=2)
    assert "UNDERSIGNED_SECRET_KEY" in short.stderr
    assert "at least 32 random bytes" in short.stderr
    assert make_one in short.stderr
    assert "only-sixteen-byt" not in short.stderr
    assert "Traceback" not in short.stderr

    key_file = tmp_path / "data" / "secret_key"
    key_file.parent.mkdir()
    key_file.write_text("")  # what a crash half-way through writing it used to leave
    empty = run("db", "upgrade", secret=False, expect=2)
    assert f"{key_file} is empty" in empty.stderr
    assert make_one in empty.stderr
    assert "Traceback" not in empty.stderr


def test_processes_with_another_secret_key_refuse_to_start(run: Run) -> None:
    """The database remembers the first key (a fingerprint); `serve`, `worker` and
    `db upgrade` with another one stop at once, with the reason, and change nothing."""
    run("db", "upgrade")
    for command in (("worker",), ("serve", "--port", "1"), ("db", "upgrade")):
        refused = run(*command, secret=OTHER_SECRET, expect=1, timeout=60)
        assert MISMATCH in refused.stderr, command
        assert "Traceback" not in refused.stderr, command
        assert OTHER_SECRET not in refused.stderr + refused.stdout, command
    run("purge")  # the right key still works


def test_serve_refuses_the_dev_mailbox_on_the_network(run: Run) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "letters.example.org"):  # noqa: S104
        refused = run("serve", "--host", host, "--port", "1", expect=2, timeout=60)
        assert f"Refusing to serve on {host}" in refused.stderr
        assert "UNDERSIGNED_ALLOW_DEV_MAIL_ON_NETWORK=true" in refused.stderr
        assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("host", "loopback", "base_url"),
    [
        ("127.0.0.1", True, "http://127.0.0.1:8080"),
        ("localhost", True, "http://127.0.0.1:8080"),
        ("::1", True, "http://[::1]:8080"),
        ("127.0.0.2", True, "http://127.0.0.2:8080"),
        ("0.0.0.0", False, "http://127.0.0.1:8080"),  # noqa: S104
        ("::", False, "http://127.0.0.1:8080"),
        ("192.0.2.10", False, "http://192.0.2.10:8080"),
        ("2001:db8::1", False, "http://[2001:db8::1]:8080"),
        ("letters.example.org", False, "http://letters.example.org:8080"),
    ],
)
def test_where_serve_listens_and_the_links_it_builds(
    host: str, loopback: bool, base_url: str
) -> None:
    assert is_loopback(host) is loopback
    assert base_url_for(host, 8080) == base_url
