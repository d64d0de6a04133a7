"""`undersigned letter create/edit` and a letter's signer-safety settings (issue 9):
`--signers`, `--domain-name`, `--contact-retention-days`, `--anonymize-after-months`
and their `--no-…` forms. Invoked in this process through typer's runner, configured by
UNDERSIGNED_* variables only, on a copy of the migrated SQLite template."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from app.cli import cli
from app.db import Database
from app.letters.models import Letter, SignerKind

SECRET = "cli-signers-secret-0123456789-abcdefghijkl"
Run = Callable[..., Result]


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout is read
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("UNDERSIGNED_")}
    env.update({"UNDERSIGNED_SECRET_KEY": SECRET, "UNDERSIGNED_DATABASE_URL": database_url,
                "UNDERSIGNED_DATA_DIR": str(tmp_path / "data")})  # fmt: skip

    def run(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(cli, list(args), env=env)
        assert result.exit_code == expect, (result.exit_code, result.output, result.exception)
        return result

    return run


@pytest.fixture
def body(tmp_path: Path) -> Path:
    path = tmp_path / "letter.md"
    path.write_text("We ask for one thing.\n", encoding="utf-8")
    return path


def stored(database_url: str, slug: str) -> Letter:
    database = Database(database_url)
    try:
        with database.read() as session:
            return session.scalars(select(Letter).where(Letter.slug == slug)).one()
    finally:
        database.dispose()


def test_create_with_the_settings(run: Run, body: Path, database_url: str) -> None:
    run("letter", "create", "--slug", "sign-on", "--title", "T", "--body-file", str(body),
        "--signers", "organizations", "--domain-name", "acme.example = ACME",
        "--domain-name", "acme.org=ACME", "--contact-retention-days", "30",
        "--anonymize-after-months", "6")  # fmt: skip
    letter = stored(database_url, "sign-on")
    assert letter.signers == SignerKind.ORGANIZATIONS
    assert letter.domain_names == {"acme.example": "ACME", "acme.org": "ACME"}
    assert (letter.contact_retention_days, letter.anonymize_after_months) == (30, 6)


def test_create_defaults(run: Run, body: Path, database_url: str) -> None:
    run("letter", "create", "--slug", "plain", "--title", "T", "--body-file", str(body))
    letter = stored(database_url, "plain")
    assert letter.signers == SignerKind.PEOPLE
    assert letter.domain_names == {}
    assert (letter.contact_retention_days, letter.anonymize_after_months) == (90, None)


def test_edit_changes_only_what_is_given(run: Run, body: Path, database_url: str) -> None:
    run("letter", "create", "--slug", "e", "--title", "T", "--body-file", str(body),
        "--domain-name", "acme.example = ACME", "--anonymize-after-months", "6")  # fmt: skip

    changed = run("letter", "edit", "e", "--signers", "ORGANIZATIONS",
                  "--contact-retention-days", "0")  # fmt: skip
    assert "changed: signers, contact-retention-days" in changed.output
    letter = stored(database_url, "e")
    assert letter.signers == SignerKind.ORGANIZATIONS
    assert letter.domain_names == {"acme.example": "ACME"}  # kept
    assert (letter.contact_retention_days, letter.anonymize_after_months) == (0, 6)

    replaced = run("letter", "edit", "e", "--domain-name", "acme.net = Acme")
    assert "changed: domain-name" in replaced.output
    assert stored(database_url, "e").domain_names == {"acme.net": "Acme"}

    cleared = run("letter", "edit", "e", "--no-domain-names", "--no-anonymize")
    assert "changed: domain-name, anonymize-after-months" in cleared.output
    letter = stored(database_url, "e")
    assert (letter.domain_names, letter.anonymize_after_months) == ({}, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--domain-name", "acme.example ACME"], "--domain-name: Write each line as domain = "),
        (["--domain-name", "gmail.com = Google"], "gmail.com is a free email service"),
        (["--contact-retention-days", "731"], "--contact-retention-days: Enter a whole number "
         "of at most 730."),
        (["--contact-retention-days", "-1"], "--contact-retention-days: Enter a whole number "
         "of at least 0."),
        (["--anonymize-after-months", "61"], "--anonymize-after-months: Enter a whole number "
         "of at most 60."),
    ],
)  # fmt: skip
def test_bad_settings_exit_2_and_change_nothing(
    run: Run, body: Path, database_url: str, options: list[str], message: str
) -> None:
    run("letter", "create", "--slug", "bad", "--title", "T", "--body-file", str(body))
    refused = run("letter", "edit", "bad", *options, expect=2)
    assert message in refused.output
    letter = stored(database_url, "bad")
    assert (letter.domain_names, letter.contact_retention_days) == ({}, 90)
    assert letter.anonymize_after_months is None
    run("letter", "create", "--slug", "bad-new", "--title", "T", "--body-file", str(body),
        *options, expect=2)  # fmt: skip


def test_bad_signers_and_contradictions_exit_2(run: Run, body: Path) -> None:
    run("letter", "create", "--slug", "x", "--title", "T", "--body-file", str(body))
    assert "robots" in run("letter", "edit", "x", "--signers", "robots", expect=2).output
    both = run("letter", "edit", "x", "--anonymize-after-months", "6", "--no-anonymize", expect=2)
    assert "not both" in both.output
