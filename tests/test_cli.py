"""The `undersigned` console script, configured only through UNDERSIGNED_* environment
variables, as an operator runs it.

Most tests call the script's entry point (`app.cli:main`, what the console script runs)
in this process, with the same isolation a separate process has: only the test's
UNDERSIGNED_* variables, its own working directory (so no .env or ./var of the checkout
is read), stdout and stderr captured apart, the exit status, and an uncaught exception
turned into a traceback on stderr and status 1. `run_process` runs the real console
script in a subprocess: the long-running commands (`serve`, `worker`) always go there,
and the tests of the schema and of the generated key file (its modes) use it, so the
installed script itself stays tested end to end.
"""

from __future__ import annotations

import csv
import re
import stat
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select

from app.cli import base_url_for, is_loopback
from app.db import Database, utcnow
from app.letters.models import FieldRule, Letter, LetterStatus
from app.organizers.models import AuditEvent, Organizer
from tests.support.config import make_settings
from tests.support.factories import sign_and_confirm
from tests.support.processes import clean_env, console_script, run_in_process

pytestmark = pytest.mark.slow  # runs `undersigned` (some of it in subprocesses)

TIMEOUT = 120
SECRET = "cli-test-secret-0123456789-abcdefghijklmnop"
OTHER_SECRET = "another-cli-secret-0123456789-abcdefghijk"
MISMATCH = "different SECRET_KEY than the one this database was used with"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def run_process(tmp_path: Path, database_url: str) -> Run:
    """Runs `undersigned ARGS` in tmp_path (so no .env or ./var of the checkout is read),
    as a separate process: the installed console script."""
    script = console_script()

    def run(
        *args: str,
        secret: bool | str = True,
        expect: int | None = 0,
        timeout: float = TIMEOUT,
        env_extra: dict[str, str] | None = None,
        **settings: str,
    ) -> subprocess.CompletedProcess[str]:
        if secret:
            settings["SECRET_KEY"] = SECRET if secret is True else str(secret)
        env = clean_env(database_url=database_url, data_dir=str(tmp_path / "data"))
        env.update({f"UNDERSIGNED_{name}": value for name, value in settings.items()})
        env.update(env_extra or {})
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


# Commands that keep running (a server, a worker): only ever in a subprocess, so that a
# broken check ends in the subprocess's timeout, not in a test that never returns.
LONG_RUNNING = {"serve", "worker"}


@pytest.fixture
def run(tmp_path: Path, database_url: str, run_process: Run) -> Run:
    """Runs `undersigned ARGS` as `run_process` does (same environment, working
    directory, separate stdout and stderr, exit status) but in this process, through the
    console script's entry point; `serve` and `worker` still go to `run_process`."""

    def run(
        *args: str,
        secret: bool | str = True,
        expect: int | None = 0,
        timeout: float = TIMEOUT,
        env_extra: dict[str, str] | None = None,
        **settings: str,
    ) -> subprocess.CompletedProcess[str]:
        if args and args[0] in LONG_RUNNING:
            return run_process(
                *args, secret=secret, expect=expect, timeout=timeout, env_extra=env_extra,
                **settings,
            )  # fmt: skip
        if secret:
            settings["SECRET_KEY"] = SECRET if secret is True else str(secret)
        env = clean_env(database_url=database_url, data_dir=str(tmp_path / "data"))
        env.update({f"UNDERSIGNED_{name}": value for name, value in settings.items()})
        env.update(env_extra or {})
        result = run_in_process(args, cwd=tmp_path, env=env)
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


def test_db_upgrade_creates_the_schema(run_process: Run, database_url: str) -> None:
    result = run_process("db", "upgrade")
    assert "up to date" in result.stdout
    database = Database(database_url)
    try:
        tables = set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()
    assert {"letters", "letter_tallies", "signatures", "outbox_emails", "alembic_version"} <= tables
    run_process("db", "upgrade")  # a second run is a no-op, not an error


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
    assert "--slug: Use lower-case letters, digits and single dashes" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert _letter(database_url, "Not A Slug!") is None

    run("letter", "create", "--slug", "twice", "--title", "T", "--body-file", str(body))
    again = run("letter", "create", "--slug", "twice", "--title", "T2", "--body-file", str(body),
                expect=None)  # fmt: skip
    assert again.returncode != 0
    assert "Traceback" not in again.stderr
    assert "--slug: A letter with this slug already exists" in again.stderr
    stored = _letter(database_url, "twice")
    assert stored is not None
    assert stored.title == "T"

    missing = run(
        "letter",
        "create",
        "--slug",
        "y",
        "--title",
        "T",
        "--body-file",
        str(tmp_path / "nope.md"),
        expect=None,
        env_extra={"COLUMNS": "400"},
    )  # fmt: skip  (a long path is not wrapped)
    assert missing.returncode != 0
    assert "nope.md" in missing.stderr


def _audit(database_url: str, slug: str) -> list[tuple[str, str, dict[str, Any]]]:
    database = Database(database_url)
    try:
        with database.read() as session:
            rows = session.execute(
                select(AuditEvent.actor, AuditEvent.action, AuditEvent.detail)
                .join(Letter, Letter.id == AuditEvent.letter_id)
                .where(Letter.slug == slug)
                .order_by(AuditEvent.id)
            ).all()
    finally:
        database.dispose()
    return [(actor, action, detail) for actor, action, detail in rows]


def _sign(database_url: str, tmp_path: Path, slug: str, **people: dict[str, Any]) -> None:
    """Confirmed signatures, straight through the services."""
    database = Database(database_url)
    settings = make_settings(tmp_path, database_url)
    try:
        with database.write() as session:
            letter = session.scalars(select(Letter).where(Letter.slug == slug)).one()
            for person in people.values():
                sign_and_confirm(session, letter, settings, **person)
    finally:
        database.dispose()


def test_letter_create_takes_every_setting(run: Run, tmp_path: Path, database_url: str) -> None:
    run("db", "upgrade")
    body = tmp_path / "f.md"
    body.write_text("Text.\n", encoding="utf-8")
    run("letter", "create", "--slug", "full", "--title", "Full", "--body-file", str(body),
        "--from-name", "Our group", "--from-url", "https://group.example/",
        "--signer-title", "off", "--signer-organization", "required", "--signer-comment",
        "optional", "--no-allow-anonymous", "--no-show-signers",
        "--closes-at", "2040-01-31T23:59")  # fmt: skip
    letter = _letter(database_url, "full")
    assert letter is not None
    assert (letter.from_name, letter.from_url) == ("Our group", "https://group.example/")
    assert [letter.field_rule(name) for name in ("title", "organization", "city", "comment")] == [
        FieldRule.OFF, FieldRule.REQUIRED, FieldRule.OPTIONAL, FieldRule.OPTIONAL
    ]  # fmt: skip
    assert (letter.allow_anonymous, letter.show_signers) == (False, False)
    assert letter.closes_at == datetime(2040, 1, 31, 23, 59, tzinfo=UTC)
    assert letter.version == 1
    assert _audit(database_url, "full") == [
        ("command line", "letter.create", {"slug": "full", "status": "draft"})
    ]

    bad = run("letter", "create", "--slug", "new", "--title", "T", "--body-file", str(body),
              "--from-url", "javascript:alert(1)", "--closes-at", "someday",
              "--signer-city", "maybe", expect=2)  # fmt: skip
    assert "--signer-city" in bad.stderr  # typer's own check of the choices
    bad = run("letter", "create", "--slug", "new", "--title", "T", "--body-file", str(body),
              "--from-url", "javascript:alert(1)", "--closes-at", "someday", expect=2)  # fmt: skip
    assert "--slug: This slug is reserved" in bad.stderr
    assert "--from-url: Enter a web address" in bad.stderr
    assert "--closes-at: Enter a date and time like 2027-01-31T23:59" in bad.stderr
    past = run("letter", "create", "--slug", "late", "--title", "T", "--body-file", str(body),
               "--closes-at", "2001-01-01T00:00", expect=1)  # fmt: skip
    assert "--closes-at: This time has passed" in past.stderr
    assert "Traceback" not in bad.stderr + past.stderr
    assert _letter(database_url, "new") is None
    assert _letter(database_url, "late") is None


def test_a_letter_runs_from_the_shell(run: Run, tmp_path: Path, database_url: str) -> None:
    run("db", "upgrade")
    assert "No letters yet" in run("letter", "list").stdout
    body = tmp_path / "f.md"
    body.write_text("Text.\n", encoding="utf-8")
    run("letter", "create", "--slug", "shell-letter", "--title", "From the shell",
        "--body-file", str(body), "--closes-at", "2040-01-01T00:00")  # fmt: skip
    run("letter", "create", "--slug", "other", "--title", "Other", "--body-file", str(body),
        "--publish")  # fmt: skip

    listed = run("letter", "list").stdout.splitlines()
    assert listed[0].split() == ["SLUG", "STATUS", "COUNT", "TITLE"]
    assert [line.split(None, 3) for line in listed[1:]] == [
        ["other", "open", "0", "Other"],
        ["shell-letter", "draft", "0", "From the shell"],
    ]

    assert "is open" in run("letter", "publish", "shell-letter").stdout
    again = run("letter", "publish", "shell-letter", expect=1)
    assert "already published" in again.stderr
    assert "is closed" in run("letter", "close", "shell-letter").stdout
    assert "is open" in run("letter", "reopen", "shell-letter").stdout
    assert "is archived" in run("letter", "archive", "shell-letter").stdout
    assert run("letter", "list").stdout.splitlines()[-1].split(None, 3)[:2] == [
        "shell-letter", "archived"
    ]  # fmt: skip
    both = run("letter", "reopen", "shell-letter", "--closes-at", "2041-01-01T00:00",
               "--no-closes-at", expect=2)  # fmt: skip
    assert "not both" in both.stderr
    run("letter", "reopen", "shell-letter", "--no-closes-at")
    letter = _letter(database_url, "shell-letter")
    assert letter is not None
    assert (letter.status, letter.archived_at, letter.closes_at) == (LetterStatus.OPEN, None, None)
    assert [action for _, action, _ in _audit(database_url, "shell-letter")] == [
        "letter.create", "letter.publish", "letter.close", "letter.reopen", "letter.archive",
        "letter.reopen",
    ]  # fmt: skip
    assert {actor for actor, _, _ in _audit(database_url, "shell-letter")} == {"command line"}

    for command in ("publish", "close", "reopen", "archive", "edit", "export"):
        unknown = run("letter", command, "no-such-letter", *(
            ["--title", "x"] if command == "edit" else []), expect=1)  # fmt: skip
        assert "There is no letter with the slug 'no-such-letter'" in unknown.stderr, command
        assert "Traceback" not in unknown.stderr


def test_letter_edit_follows_the_dashboard_s_rules(
    run: Run, tmp_path: Path, database_url: str
) -> None:
    run("db", "upgrade")
    body = tmp_path / "f.md"
    body.write_text("First text.\n", encoding="utf-8")
    run("letter", "create", "--slug", "edited", "--title", "T", "--body-file", str(body),
        "--goal", "10", "--publish")  # fmt: skip

    fixed = run("letter", "edit", "edited", "--title", "Better title", "--no-show-signers")
    assert "changed: title, show-signers; text version 1" in fixed.stdout
    assert "nothing changed" in run("letter", "edit", "edited", "--title", "Better title").stdout

    _sign(database_url, tmp_path, "edited", ada={}, bob={"contact_ok": True})
    body.write_text("Second text.\n", encoding="utf-8")
    versioned = run("letter", "edit", "edited", "--body-file", str(body), "--no-goal")
    assert "changed: body-file, goal; new version 2 of the text" in versioned.stdout
    letter = _letter(database_url, "edited")
    assert letter is not None
    assert (letter.version, letter.body_markdown, letter.goal) == (2, "Second text.", None)
    assert letter.edited_at is not None
    assert letter.show_signers is False

    low = run("letter", "edit", "edited", "--goal", "1", expect=1)
    assert "--goal: The goal cannot be below the current count (2)." in low.stderr
    assert (
        "--goal: Enter a whole number"
        in run("letter", "edit", "edited", "--goal", "0", expect=2).stderr
    )
    assert "Nothing to change" in run("letter", "edit", "edited", expect=2).stderr
    assert "not both" in run("letter", "edit", "edited", "--goal", "5", "--no-goal",
                             expect=2).stderr  # fmt: skip
    past = run("letter", "edit", "edited", "--closes-at", "2001-01-01T00:00", expect=1)
    assert "--closes-at: This time has passed" in past.stderr
    edits = [
        detail for _, action, detail in _audit(database_url, "edited") if action == "letter.edit"
    ]
    assert edits == [
        {"fields": ["title", "show_signers"], "version": 1, "new_version": False},
        {"fields": ["body_markdown", "goal"], "version": 2, "new_version": True},
    ]  # fmt: skip


def test_letter_export_writes_the_csv(run: Run, tmp_path: Path, database_url: str) -> None:
    run("db", "upgrade")
    body = tmp_path / "f.md"
    body.write_text("Text.\n", encoding="utf-8")
    run("letter", "create", "--slug", "exported", "--title", "T", "--body-file", str(body),
        "--publish")  # fmt: skip
    _sign(database_url, tmp_path, "exported",
          ada={"name": "Ada", "email": "ada@example.org", "contact_ok": True},
          bob={"name": "Bob", "email": "bob@example.org"})  # fmt: skip

    out = tmp_path / "signers.csv"
    written = run("letter", "export", "exported", "--output", str(out))
    assert "2 signatures written" in written.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert [(row["name"], row["email"]) for row in rows] == [
        ("Ada", "ada@example.org"), ("Bob", "")
    ]  # fmt: skip

    printed = run("letter", "export", "exported").stdout
    assert printed.replace("\r\n", "\n") == out.read_text(encoding="utf-8").replace("\r\n", "\n")
    assert [action for _, action, _ in _audit(database_url, "exported")] == [
        "letter.create", "signatures.export", "signatures.export"
    ]  # fmt: skip


def test_admin_create_is_idempotent(run: Run, database_url: str) -> None:
    run("db", "upgrade")
    first = run("admin", "create", "Boss@Example.org")
    assert "Admin boss@example.org created" in first.stdout
    assert "already an admin" in run("admin", "create", "boss@example.org").stdout
    bad = run("admin", "create", "not-an-address", expect=2)
    assert "Enter an email address" in bad.stderr
    assert "Traceback" not in bad.stderr

    database = Database(database_url)
    try:
        with database.write() as session:
            session.add(Organizer(email="plain@example.org"))
        assert "now an admin" in run("admin", "create", "plain@example.org").stdout
        with database.read() as session:
            admins = session.execute(select(Organizer.email, Organizer.is_admin)).all()
            actions = session.scalars(select(AuditEvent.action)).all()
    finally:
        database.dispose()
    assert sorted(admins) == [("boss@example.org", True), ("plain@example.org", True)]
    assert actions == ["organizer.admin", "organizer.admin"]


def test_every_command_and_option_is_explained(run: Run) -> None:
    commands = [("letter", name) for name in ("create", "list", "publish", "close", "reopen",
                                               "archive", "edit", "export")]  # fmt: skip
    for command in [*commands, ("admin", "create"), ("log", "verify"), ("log", "sequence")]:
        shown = run(*command, "--help", env_extra={"COLUMNS": "200"}).stdout
        options = re.findall(
            r"│ +(?:\* +)?(--[a-z-]+)(?: +-{1,2}[a-z-]+)? +<[^>]+> +([^│]*)│", shown
        )
        assert options, (command, shown)
        for option, explained in options:
            assert explained.strip(), (command, option)
        rows = re.findall(r"^│ +(?:\* +)?--", shown, re.MULTILINE)
        assert len(options) == len(rows), (command, shown)


def test_purge_runs(run: Run) -> None:
    run("db", "upgrade")
    result = run("purge")
    lines = result.stdout.strip().splitlines()
    assert lines, "purge reports what it deleted"
    assert all(line.endswith("deleted") for line in lines), result.stdout


def test_secret_key_is_generated_once_and_kept(run_process: Run, tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret_key"
    assert not key_file.exists()

    run_process("db", "upgrade", secret=False)
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    key = key_file.read_text()
    assert len(key.strip()) >= 32

    run_process("purge", secret=False)
    assert key_file.read_text() == key, "a restart must keep the key (and so every link)"

    # With the key given in the environment, no file is needed or touched.
    key_file.unlink()
    run_process("purge", secret=key)
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


def test_serve_refuses_the_dev_mailbox_on_the_network(run_process: Run) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "letters.example.org"):  # noqa: S104
        refused = run_process("serve", "--host", host, "--port", "1", expect=2, timeout=60)
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


def test_letter_translate_adds_changes_and_removes_a_translation(
    run: Run, tmp_path: Path, database_url: str
) -> None:
    run("db", "upgrade")
    body = tmp_path / "es.md"
    body.write_text("Pedimos **una** cosa.\n", encoding="utf-8")
    run("letter", "create", "--slug", "x", "--title", "T", "--body-file", str(body), "--publish")
    spanish = ("letter", "translate", "x", "--locale", "es", "--body-file", str(body))

    assert "translation added" in run(*spanish, "--title", "Una carta").stdout
    assert "translation unchanged" in run(*spanish, "--title", "Una carta").stdout
    assert "translation changed" in run(*spanish, "--title", "Otra carta").stdout
    english = run("letter", "translate", "x", "--locale", "en", "--title", "E",
                  "--body-file", str(body), expect=2)  # fmt: skip
    assert "--locale: Choose one of the languages offered." in english.stderr
    assert run(*spanish, "--title", " ", expect=2).stderr.startswith("Invalid letter:")
    assert run("letter", "translate", "x", "--locale", "es", expect=2).returncode == 2
    missing = run("letter", "translate", "nope", "--locale", "es", "--remove", expect=1)
    assert "nope" in missing.stderr and "Traceback" not in missing.stderr
    assert "removed" in run("letter", "translate", "x", "--locale", "es", "--remove").stdout
    database = Database(database_url)
    try:
        with database.read() as session:
            actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    finally:
        database.dispose()
    assert actions[-3:] == [
        "letter.translation.add", "letter.translation.edit", "letter.translation.remove",
    ]  # fmt: skip
