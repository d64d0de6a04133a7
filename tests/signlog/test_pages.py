"""The public log on the pages: the letter page's checkpoint line and the "check this
count" page (app/signlog/pages.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.db import Database, utcnow
from app.letters.models import Letter, LetterStatus
from app.main import create_app
from app.organizers.service import SHELL
from app.signatures.models import RemovalReason, Signature
from app.signatures.moderation import remove_signature
from app.signlog import entries, keys
from app.signlog.models import LogCheckpoint, LogEntry, LogReason
from app.signlog.sequencer import sequence_all
from app.transparency.note import open_checkpoint
from tests.conftest import sqlite_copy
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.tools import vnu_command, vnu_errors

BASE_URL = "https://letters.example.org"
SLUG = "ice-out"


@pytest.fixture
def app(tmp_path: Path, clean_database: Database) -> FastAPI:
    # BASE_URL is not the host the client asks for: links must come from the setting.
    return create_app(make_settings(tmp_path, clean_database.url, base_url=BASE_URL))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    with app.state.database.write() as session:
        made: Letter = make_letter(session, slug=SLUG, title="Cancel the contracts", goal=100)
    return made


def _sign(app: FastAPI, letter: Letter, n: int) -> None:
    with app.state.database.write() as session:
        for _ in range(n):
            sign_and_confirm(session, letter, app.state.settings)


def _text(page: Any) -> str:
    """The page's words, tags dropped and spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def _log_line(page: Any) -> str:
    match = re.search(r'<p class="meta log-line">(.*?)</p>', page.text, re.S)
    assert match, "no log line on the letter page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


# --- the letter page ---


def test_letter_page_shows_queued_changes_then_the_checkpoint(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    fresh = client.get(f"/letters/{SLUG}")
    assert _log_line(fresh) == "Public log: no entries yet · Check this count"
    assert f'<a href="/letters/{SLUG}/log">Check this count</a>' in fresh.text

    _sign(app, letter, 3)
    queued = client.get(f"/letters/{SLUG}")
    assert _log_line(queued) == (
        "Public log: no entries yet (3 changes not yet in the log; they join within "
        "seconds) · Check this count"
    )

    sequence_all(app.state.database, app.state.settings)
    page = client.get(f"/letters/{SLUG}")
    line = _log_line(page)
    assert line.startswith("Public log: checkpoint of 3 entries, 3 counted · ")
    assert line.endswith(" UTC · Check this count")
    assert "not yet in the log" not in line
    with app.state.database.read() as session:
        created = session.scalars(select(LogCheckpoint.created_at)).one()
    assert f'<time datetime="{created.strftime("%Y-%m-%dT%H:%M:%SZ")}">' in page.text

    # A removal: one more entry, one fewer counted; queued until the next pass.
    with app.state.database.write() as session:
        position = session.scalars(
            select(Signature.position).where(Signature.letter_id == letter.id).limit(1)
        ).one()
        assert remove_signature(session, actor=SHELL, letter_id=letter.id,
                                position=position or 0, reason=RemovalReason.DUPLICATE)  # fmt: skip
    line = _log_line(client.get(f"/letters/{SLUG}"))
    assert line.startswith("Public log: checkpoint of 3 entries, 3 counted · ")
    assert "(1 change not yet in the log; it joins within seconds)" in line
    sequence_all(app.state.database, app.state.settings)
    line = _log_line(client.get(f"/letters/{SLUG}"))
    assert line.startswith("Public log: checkpoint of 4 entries, 2 counted · ")
    assert "not yet in the log" not in line


def test_letter_page_stays_cacheable_with_the_log_line(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    _sign(app, letter, 1)
    sequence_all(app.state.database, app.state.settings)
    first = client.get(f"/letters/{SLUG}")
    assert first.headers["cache-control"].startswith("public")
    etag = first.headers["etag"]
    again = client.get(f"/letters/{SLUG}", headers={"if-none-match": etag})
    assert again.status_code == 304, "an unchanged log keeps the page's ETag"

    _sign(app, letter, 1)  # queued: the line (so the page) changes
    changed = client.get(f"/letters/{SLUG}", headers={"if-none-match": etag})
    assert changed.status_code == 200
    assert "1 change not yet in the log" in changed.text


# --- the check page ---


def test_check_page_shows_the_checkpoint_key_and_commands(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    settings: Settings = app.state.settings
    _sign(app, letter, 4)
    sequence_all(app.state.database, settings)

    # Any Host header: every link comes from BASE_URL.
    page = client.get(f"/letters/{SLUG}/log", headers={"host": "attacker.example"})

    assert page.status_code == 200
    assert page.headers["cache-control"].startswith("public")
    text = _text(page)
    assert "Check this count" in text
    assert "Entries 4 Counted 4 (4 added, 0 removed)" in text
    with app.state.database.read() as session:
        row = session.scalars(select(LogCheckpoint)).one()
    assert html.escape(row.note, quote=False) in page.text, "the signed note, as stored"
    shown = re.search(r'<pre class="log-note">(.*?)</pre>', page.text, re.S)
    assert shown
    checkpoint = open_checkpoint(
        html.unescape(shown[1]),
        keys.verifier(settings),
        origin=f"letters.example.org/letters/{SLUG}",
    )
    assert (checkpoint.size, checkpoint.root_hash) == (4, row.root)
    assert f"<code>{row.note.splitlines()[2]}</code>" in page.text, "the root hash, base64"
    vkey = keys.verifier(settings).vkey()
    assert vkey.startswith("letters.example.org+")
    assert f"undersigned log verify {BASE_URL}/letters/{SLUG} --key '{vkey}'" in page.text
    assert f'<pre class="log-key"><code>{vkey}</code></pre>' in page.text
    assert '<a href="/.well-known/undersigned-log-key">' in page.text
    assert f"{BASE_URL}/api/v1/letters/{SLUG}/log/checkpoint" in page.text
    api = f"{BASE_URL}/api/v1/letters/{SLUG}/log"
    assert f"{api}/proof/consistency?first=M&amp;second=N" in page.text
    assert '<a href="/receipt">' in page.text
    assert "attacker.example" not in page.text
    assert f'<link rel="canonical" href="{BASE_URL}/letters/{SLUG}/log">' in page.text
    assert '<meta name="description" content="How to check the count of' in page.text
    assert "The count on the letter page, 4, is exactly the log's count." in text


def test_check_page_compares_the_letter_count_with_the_log(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    empty = _text(client.get(f"/letters/{SLUG}/log"))
    assert "The log has no entries yet." in empty
    assert "The count on the letter page, 0, is exactly the log's count." in empty

    _sign(app, letter, 2)
    queued = _text(client.get(f"/letters/{SLUG}/log"))
    assert "2 changes to the count are not in the log yet" in queued
    assert "The count on the letter page, 2, is 2 more than the log's" in queued

    sequence_all(app.state.database, app.state.settings)
    with app.state.database.write() as session:
        position = session.scalars(
            select(Signature.position).where(Signature.letter_id == letter.id).limit(1)
        ).one()
        remove_signature(session, actor=SHELL, letter_id=letter.id, position=position or 0,
                         reason=RemovalReason.BOT)  # fmt: skip
    removing = _text(client.get(f"/letters/{SLUG}/log"))
    assert "1 change to the count is not in the log yet" in removing
    assert "The count on the letter page, 1, is 1 fewer than the log's" in removing

    sequence_all(app.state.database, app.state.settings)
    agreed = _text(client.get(f"/letters/{SLUG}/log"))
    assert "Entries 3 Counted 1 (2 added, 1 removed)" in agreed
    assert "The count on the letter page, 1, is exactly the log's count." in agreed
    assert "not in the log yet" not in agreed

    # A log that does not account for the count (an entry nobody's change explains):
    # said plainly.
    with app.state.database.write() as session:
        commitment = session.scalars(
            select(LogEntry.commitment).where(LogEntry.event == "add").limit(1)
        ).first()
        entries.record(session, letter_id=letter.id, reason=LogReason.WITHDRAWN,
                       commitments=[commitment], now=utcnow())  # fmt: skip
    sequence_all(app.state.database, app.state.settings)
    wrong = client.get(f"/letters/{SLUG}/log")
    assert "is not the log's count, 0, and no change is waiting" in wrong.text
    assert '<p class="log-disagrees">' in wrong.text


def test_check_page_404s_like_the_letter_page(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    with app.state.database.write() as session:
        make_letter(session, slug="a-draft", status=LetterStatus.DRAFT)
    for slug in ("a-draft", "no-such-letter", "Not_A_Slug!"):
        page = client.get(f"/letters/{slug}/log")
        letter_page = client.get(f"/letters/{slug}")
        assert page.status_code == letter_page.status_code == 404, slug
        assert "Cancel the contracts" not in page.text


def test_check_page_in_spanish(app: FastAPI, client: TestClient, letter: Letter) -> None:
    _sign(app, letter, 1)
    sequence_all(app.state.database, app.state.settings)
    letter_page = client.get(f"/letters/{SLUG}?lang=es")
    assert letter_page.status_code == 200
    assert '<html lang="es">' in letter_page.text
    assert f'<a href="/letters/{SLUG}/log">' in letter_page.text
    page = client.get(f"/letters/{SLUG}/log?lang=es")
    assert page.status_code == 200
    assert '<html lang="es">' in page.text
    assert f'<link rel="canonical" href="{BASE_URL}/letters/{SLUG}/log?lang=es">' in page.text
    assert keys.verifier(app.state.settings).vkey() in page.text


@pytest.mark.slow
def test_log_pages_are_valid_html_in_every_state(tmp_path: Path, sqlite_template: Path) -> None:
    """The seeded site of test_html_validity.py has no checkpoint (no sequencer runs):
    the states it does not reach, checked here with the same Nu HTML Checker."""
    vnu_command()
    url = sqlite_copy(sqlite_template, tmp_path)
    app = create_app(make_settings(tmp_path, url, base_url=BASE_URL))
    files = []
    with TestClient(app, base_url="http://testserver") as client:
        with app.state.database.write() as session:
            letter = make_letter(session, slug=SLUG, title="Cancel the contracts", goal=100)

        def save(state: str) -> None:
            for name, path in (("letter", f"/letters/{SLUG}"), ("log", f"/letters/{SLUG}/log")):
                page = client.get(path)
                assert page.status_code == 200
                files.append(tmp_path / f"{state}-{name}.html")
                files[-1].write_text(page.text, encoding="utf-8")

        save("empty")
        _sign(app, letter, 2)
        sequence_all(app.state.database, app.state.settings)
        _sign(app, letter, 1)
        save("checkpoint-and-queued")
        with app.state.database.write() as session:
            entries.record(session, letter_id=letter.id, reason=LogReason.INVALID,
                           commitments=["0" * 64], now=utcnow())  # fmt: skip
        sequence_all(app.state.database, app.state.settings)
        save("disagrees")
    errors = vnu_errors(files)
    assert not errors, "\n".join(map(str, errors))
