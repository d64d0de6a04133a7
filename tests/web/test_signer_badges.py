"""The public side of verified domains over HTTP: badges in lists and in the API,
names waiting for their threshold kept out of every page, organization letters, the
breakdown (API and letter page), the organizers' "confirmed" mark, and axe-core on the
new page parts."""

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
from app.db import Database
from app.letters.models import Letter, SignerKind
from app.main import create_app
from app.organizers.models import AuditEvent, Role
from app.organizers.service import start_session
from app.organizers.web import session_cookie_name
from app.signatures.models import Signature, SignatureDisplay
from tests.signatures.test_badges import add, crowd
from tests.support.browser import axe_violations, chromium
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import make_letter
from tests.support.live import serve
from tests.support.organizers import make_organizer, post_form, sign_in_as
from tests.support.ports import free_socket

ANONYMOUS = SignatureDisplay.ANONYMOUS
WAITING = "Wendy Waiting"
"""A signer whose name waits for 50 colleagues: it must appear nowhere."""


def seed(session: Any, **letter_fields: Any) -> Letter:
    """A letter with badges of every kind, a waiting name, a confirmed signer, small
    groups and an organization group."""
    letter = make_letter(session, **letter_fields)
    letter.domain_names = {"google.com": "Google", "youtube.com": "Google"}
    crowd(session, letter, "acme.example", 2, organization="Acme")  # folded: 2
    crowd(session, letter, "google.com", 2, display=ANONYMOUS)
    add(session, letter, "youtube.com", organization="ACME")  # Google: 3; Acme: 3
    add(session, letter, "gmail.com", name="Free Mailer")
    add(session, letter, "waiting.example", name=WAITING, organization="Secret Team",
        threshold=50, comment="Please keep me out of this.")  # fmt: skip
    famous = add(session, letter, "", show=False, name="Famous Person")
    famous.organizer_confirmed = True
    session.flush()
    return letter


# --- The API -----------------------------------------------------------------------------


def test_the_breakdown_api_on_every_database(clean_database: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, clean_database.url)
    try:
        with clean_database.write() as session:
            seed(session, slug="counted")
            make_letter(session, slug="quiet", show_signers=False)
        with TestClient(create_app(settings)) as client:
            response = client.get("/api/v1/letters/counted/breakdown")
            assert response.status_code == 200
            assert response.json() == {
                "verified_domains": {
                    "groups": [{"name": "Google", "kind": "company", "count": 3}],
                    "other": 3,  # acme.example (2) and waiting.example (1)
                    "total": 6,
                },
                "organizations": {
                    "groups": [{"name": "Acme", "kind": "organization", "count": 3}],
                    "other": 0,
                    "total": 3,
                },
                "min_group_size": 3,
            }
            quiet = client.get("/api/v1/letters/quiet/breakdown")
            assert (quiet.status_code, quiet.json()["error"]) == (404, "signers_not_public")
            missing = client.get("/api/v1/letters/no-such-letter/breakdown")
            assert (missing.status_code, missing.json()["error"]) == (404, "letter_not_found")

            items = client.get("/api/v1/letters/counted/signatures").json()["items"]
            assert WAITING not in str(items) and "Secret Team" not in str(items)
            by_name = {item["name"]: item for item in items}
            assert by_name["Famous Person"]["organizer_confirmed"] is True
            assert by_name["Free Mailer"]["verified_domain"] is None
            assert [
                (item["verified_domain"], item["verified_company"])
                for item in items
                if item["name"] is None
            ] == [("waiting.example", None), ("google.com", "Google"), ("google.com", "Google")]
            searched = client.get("/api/v1/letters/counted/signatures", params={"q": "Wendy"})
            assert searched.json() == {"items": [], "next_cursor": None}
    finally:
        truncate(clean_database)  # the PostgreSQL database is shared by the whole run


# --- The pages ---------------------------------------------------------------------------


def test_pages_show_badges_and_the_breakdown_never_a_waiting_name(
    app: FastAPI, client: TestClient
) -> None:
    with app.state.database.write() as session:
        letter = seed(session, slug="badges")
    page = client.get(f"/letters/{letter.slug}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "verified at Google" in text
    assert "confirmed by the organizers" in text
    assert "verified @gmail.com" not in text
    section = text[text.index('id="breakdown-title"') :]
    assert re.search(r"<th scope=\"row\">Google</th><td>3</td>", section)
    assert re.search(r"<th scope=\"row\">Acme</th><td>3</td>", section)
    assert re.search(r"<em>Other</em></th><td>3</td>", section)
    assert "acme.example" not in section  # a group of two is never named
    for path in (f"/letters/{letter.slug}", f"/letters/{letter.slug}/signers",
                 f"/letters/{letter.slug}/signers?q=Wendy",
                 f"/letters/{letter.slug}/signers?q=Secret"):  # fmt: skip
        body = html.unescape(client.get(path).text)
        assert WAITING not in body and "Secret Team" not in body, path
    signers = html.unescape(client.get(f"/letters/{letter.slug}/signers").text)
    assert "verified @waiting.example" in signers  # listed as anonymous, with its badge
    assert "verified @acme.example" in signers


def test_the_breakdown_is_not_shown_when_the_list_is_not_public(
    app: FastAPI, client: TestClient
) -> None:
    with app.state.database.write() as session:
        letter = seed(session, slug="quiet-badges", show_signers=False)
    text = client.get(f"/letters/{letter.slug}").text
    assert "breakdown-title" not in text and "Google" not in text


def test_an_organization_letter_lists_organizations(app: FastAPI, client: TestClient) -> None:
    with app.state.database.write() as session:
        letter = make_letter(session, slug="chamber")
        letter.signers = SignerKind.ORGANIZATIONS
        signature = add(session, letter, "lee.example", name="Ana Lee", organization="Lee & Co")
        signature.title = "Owner"
    for path in ("/letters/chamber", "/letters/chamber/signers"):
        text = html.unescape(re.sub(r"<[^>]+>", "", client.get(path).text))
        assert "Lee & Co" in text
        assert re.search(r"signed by:?\s*Ana Lee, Owner", text, re.IGNORECASE), path


# --- Confirmed by the organizers ----------------------------------------------------------


def test_an_owner_marks_a_signature_confirmed_and_it_shows(
    app: FastAPI, client: TestClient
) -> None:
    with app.state.database.write() as session:
        letter = make_letter(session, slug="notable")
        notable = add(session, letter, "", show=False, name="Notable Person")
        anonymous = add(session, letter, "", show=False, display=ANONYMOUS)
        positions = (notable.position, anonymous.position)
    base = f"/dashboard/letters/{letter.slug}/signatures"
    sign_in_as(client, app, "editor@example.org", letter_slug=letter.slug, role=Role.EDITOR)
    editor = post_form(client, f"{base}/{positions[0]}/confirmed", {"confirmed": "true"})
    assert editor.status_code == 403  # owners only
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    listing = client.get(base).text
    assert f'action="{base}/{positions[0]}/confirmed"' in listing
    assert f'action="{base}/{positions[1]}/confirmed"' not in listing  # anonymous: no button
    done = post_form(client, f"{base}/{positions[0]}/confirmed", {"confirmed": "true"})
    assert done.status_code == 303
    assert "done=confirmed" in done.headers["location"]
    assert "confirmed by the organizers" in client.get(f"/letters/{letter.slug}/signers").text
    refused = post_form(client, f"{base}/{positions[1]}/confirmed", {"confirmed": "true"})
    assert refused.status_code == 422
    undone = post_form(client, f"{base}/{positions[0]}/confirmed", {"confirmed": "false"})
    assert "done=unconfirmed" in undone.headers["location"]
    assert "confirmed by the organizers" not in client.get(f"/letters/{letter.slug}").text
    with app.state.database.read() as session:
        actions = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.letter_id == letter.id)
            .order_by(AuditEvent.id)
        ).all()
        assert session.scalar(
            select(Signature.organizer_confirmed).where(Signature.position == positions[0],
                                                        Signature.letter_id == letter.id)
        ) is False  # fmt: skip
    assert actions == ["signature.confirm", "signature.unconfirm"]


# --- Accessibility of the new parts --------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Any]:
    """The app in uvicorn with a seeded letter, an organization letter and an owner."""
    import shutil

    directory = tmp_path_factory.mktemp("badges-site")
    shutil.copy(sqlite_template, directory / "site.db")
    settings: Settings = make_settings(directory, f"sqlite:///{directory / 'site.db'}")
    database = Database(settings.database_url)
    with database.write() as session:
        letter = seed(session, slug="badges")
        chamber = make_letter(session, slug="chamber")
        chamber.signers = SignerKind.ORGANIZATIONS
        add(session, chamber, "lee.example", name="Ana Lee", organization="Lee & Co")
        owner = make_organizer(session, "owner@example.org", letter=letter, role=Role.OWNER)
        cookie = start_session(session, organizer=owner, settings=settings)
    database.dispose()
    sock, base_url = free_socket()
    with serve(sock, settings):
        yield base_url, session_cookie_name(settings), cookie


@pytest.mark.browser
@pytest.mark.parametrize(
    "path", ["/letters/badges", "/letters/badges/signers", "/letters/chamber/signers",
             "/dashboard/letters/badges/signatures"],
)  # fmt: skip
def test_new_sections_pass_axe(site: Any, path: str) -> None:
    base_url, cookie_name, cookie = site
    with chromium() as browser:
        context = browser.new_context()
        context.add_cookies([{"name": cookie_name, "value": cookie, "url": base_url}])
        page = context.new_page()
        response = page.goto(base_url + path)
        assert response is not None and response.status == 200
        if path == "/letters/badges":
            assert page.locator("#breakdown-title").is_visible()
        assert page.locator(".badge").count() > 0
        assert axe_violations(page) == []
        context.close()
