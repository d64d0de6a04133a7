"""The letters' dashboard over HTTP: the list, a new letter (with preview and errors),
the overview, editing and versions, publish/close/reopen/archive, the audit log, and
the public "from" line, edit notice and changes page. Every route for every role
(owner, editor, viewer, none, signed out), CSRF, and 422s that store nothing."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.db import Database, utcnow
from app.letters.models import Letter, LetterStatus, LetterVersion
from app.letters.schemas import BODY_MAX, LetterCreate, LetterFields, parse
from app.letters.service import (
    Transition,
    add_to_tally,
    change_status,
    create_letter,
    current_fields,
    edit_letter,
    invite_to_team,
)
from app.organizers.models import AuditEvent, Organizer, Role
from app.organizers.service import SHELL, Actor, record, role_on, start_session
from app.signatures.models import Signature
from tests.support.browser import axe_violations, chromium
from tests.support.config import make_settings
from tests.support.factories import sign_and_confirm
from tests.support.live import serve
from tests.support.organizers import make_organizer, post_form, sign_in_as
from tests.support.ports import free_socket
from tests.web.flows import add_letter, add_verified_signers

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

FORM: dict[str, str] = {
    "title": "Fund the libraries",
    "slug": "fund-the-libraries",
    "summary": "Keep them open.",
    "body": "# Our ask\n\nKeep **every** branch open.",
    "addressed_to": "The city council",
    "goal": "500",
    "closes_at": "2040-06-30T18:00",
    "from_name": "Friends of the library",
    "from_url": "https://library.example/friends",
    "field_title": "off",
    "field_organization": "required",
    "field_city": "optional",
    "field_comment": "optional",
    "allow_anonymous": "yes",
    "action": "save",
}
LIFECYCLE = {
    # action: (the status it starts from, the status it ends in, archived after)
    "publish": (LetterStatus.DRAFT, LetterStatus.OPEN, False),
    "close": (LetterStatus.OPEN, LetterStatus.CLOSED, False),
    "reopen": (LetterStatus.CLOSED, LetterStatus.OPEN, False),
    "archive": (LetterStatus.OPEN, LetterStatus.CLOSED, True),
}
ROLES: list[tuple[Role | None, int]] = [
    (Role.OWNER, 303),
    (Role.EDITOR, 403),
    (Role.VIEWER, 403),
    (None, 404),
]


def fresh(app: FastAPI, slug: str) -> Letter | None:
    database: Database = app.state.database
    with database.read() as session:
        return session.scalar(select(Letter).where(Letter.slug == slug))


def letter_count(app: FastAPI) -> int:
    with app.state.database.read() as session:
        return int(session.scalar(select(func.count()).select_from(Letter)) or 0)


def actions(app: FastAPI, letter_id: int) -> list[str]:
    with app.state.database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.letter_id == letter_id)
                .order_by(AuditEvent.id)
            )
        )


def as_role(client: TestClient, app: FastAPI, letter: Letter, role: Role | None) -> int:
    email = f"{role.value if role else 'stranger'}@example.org"
    return sign_in_as(client, app, email, letter_slug=letter.slug if role else None, role=role)


def text(response: Any) -> str:
    """The page's text, entities decoded, whitespace collapsed."""
    words = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())
    return re.sub(r" ([.,:;])", r"\1", words)


# --- signed out, CSRF ----------------------------------------------------------------------


def test_signed_out_every_page_and_form_goes_to_login(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, status=LetterStatus.DRAFT)
    base = f"/dashboard/letters/{letter.slug}"
    for path in ("/dashboard", "/dashboard/letters/new", base, f"{base}/edit", f"{base}/audit"):
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    for path in (
        "/dashboard/letters/new",
        f"{base}/edit",
        f"{base}/publish",
        f"{base}/close",
        f"{base}/reopen",
        f"{base}/archive",
    ):
        response = post_form(client, path, {**FORM, "slug": "signed-out"})
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    stored = fresh(app, letter.slug)
    assert stored is not None
    assert (stored.status, stored.title) == (LetterStatus.DRAFT, letter.title)
    assert fresh(app, "signed-out") is None


def test_forms_without_the_csrf_token_change_nothing(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    base = f"/dashboard/letters/{letter.slug}"
    for path in ("/dashboard/letters/new", f"{base}/edit", f"{base}/close", f"{base}/archive"):
        response = client.post(path, data={**FORM, "title": "Forged"}, follow_redirects=False)
        assert response.status_code == 403, path
        assert "This form has expired" in response.text
    stored = fresh(app, letter.slug)
    assert stored is not None
    assert (stored.status, stored.archived_at, stored.title) == (
        LetterStatus.OPEN,
        None,
        letter.title,
    )
    assert fresh(app, FORM["slug"]) is None
    assert actions(app, letter.id) == []


# --- the list ------------------------------------------------------------------------------


def test_the_dashboard_lists_my_letters_with_status_count_and_role(
    app: FastAPI, client: TestClient
) -> None:
    draft = add_letter(app, title="My draft", status=LetterStatus.DRAFT, goal=None)
    expired = add_letter(app, title="Past its time", closes_at=utcnow() - timedelta(hours=1))
    archived = add_letter(app, title="Old letter")
    theirs = add_letter(app, title="Someone else's")
    with app.state.database.write() as session:
        add_to_tally(session, letter_id=expired.id, delta=1234)
        session.execute(update(Letter).where(Letter.id == archived.id).values(archived_at=utcnow()))
    for letter, role in ((draft, Role.OWNER), (expired, Role.EDITOR), (archived, Role.VIEWER)):
        sign_in_as(client, app, "me@example.org", letter_slug=letter.slug, role=role)

    page = client.get("/dashboard")

    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    rows = {
        title: " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())
        for row in re.findall(r"<tr>(.*?)</tr>", page.text, re.DOTALL)
        for title in ("My draft", "Past its time", "Old letter")
        if f">{title}<" in row
    }
    assert rows["My draft"].endswith("Draft 0 — Owner")
    assert rows["Past its time"].endswith("Closed 1,234 100 Editor")
    assert rows["Old letter"].endswith("Archived 0 100 Viewer")
    assert "Someone else" not in page.text
    archive_section = page.text.index('id="archived-title"')
    assert page.text.index("Old letter") > archive_section > page.text.index("My draft")
    assert f'href="/dashboard/letters/{theirs.slug}"' not in page.text


def test_an_admin_sees_every_letter(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, title="Nobody's letter")
    sign_in_as(client, app, "admin@example.org", is_admin=True)
    page = client.get("/dashboard")
    assert f'href="/dashboard/letters/{letter.slug}"' in page.text
    assert "Admin" in text(page)


# --- a new letter --------------------------------------------------------------------------


def test_the_new_letter_form_labels_every_field_and_says_utc(
    app: FastAPI, client: TestClient
) -> None:
    sign_in_as(client, app, "writer@example.org")
    page = client.get("/dashboard/letters/new")
    assert page.status_code == 200
    ids = re.findall(r'<(?:input|textarea|select)[^>]* id="([^"]+)"', page.text)
    assert len(ids) >= 15
    for field_id in ids:
        wrapped = re.search(rf'<label[^>]*>\s*<input[^>]* id="{field_id}"', page.text)
        assert f'for="{field_id}"' in page.text or wrapped, field_id
    assert 'type="datetime-local"' in page.text
    assert "In UTC" in page.text
    assert 'name="action" value="preview"' in page.text
    assert "style=" not in page.text


def test_preview_renders_the_markdown_and_stores_nothing(app: FastAPI, client: TestClient) -> None:
    sign_in_as(client, app, "writer@example.org")
    body = "Keep **every** branch open.\n\n<script>alert(1)</script>\n\n[site](javascript:x)"
    response = post_form(client, "/dashboard/letters/new", {**FORM, "body": body,
                                                            "action": "preview"})  # fmt: skip
    assert response.status_code == 200
    assert "<strong>every</strong>" in response.text
    assert "<script>alert" not in response.text
    assert 'href="javascript' not in response.text
    # The form comes back as it was typed.
    assert f'value="{FORM["title"]}"' in response.text
    assert html.escape(body).replace("&#x27;", "'") in response.text.replace("&#39;", "'")
    assert letter_count(app) == 0


def test_a_new_letter_is_a_draft_owned_by_its_writer(app: FastAPI, client: TestClient) -> None:
    writer = sign_in_as(client, app, "writer@example.org")
    response = post_form(client, "/dashboard/letters/new", FORM)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/letters/fund-the-libraries?notice=created"
    letter = fresh(app, "fund-the-libraries")
    assert letter is not None
    assert (letter.status, letter.goal, letter.from_name) == (
        LetterStatus.DRAFT,
        500,
        "Friends of the library",
    )
    assert letter.closes_at == datetime(2040, 6, 30, 18, 0, tzinfo=UTC)
    assert (letter.field_title.value, letter.field_organization.value) == ("off", "required")
    assert (letter.allow_anonymous, letter.show_signers) == (True, False)
    with app.state.database.read() as session:
        versions = session.scalars(
            select(LetterVersion.number).where(LetterVersion.letter_id == letter.id)
        ).all()
        me = session.get_one(Organizer, writer)
        assert role_on(session, organizer=me, letter_id=letter.id) == Role.OWNER
    assert versions == [1]
    assert actions(app, letter.id) == ["letter.create"]
    overview = client.get(response.headers["location"])
    assert "The draft is saved" in overview.text
    # The draft is not public.
    assert client.get("/letters/fund-the-libraries").status_code == 404


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"slug": "taken-slug"}, "slug", "already exists"),
        ({"slug": "new"}, "slug", "reserved"),
        ({"slug": "Fund Libraries!"}, "slug", "lower-case letters"),
        ({"title": ""}, "title", "This field is required."),
        ({"closes_at": "31/12/2040"}, "closes_at", "2027-01-31T23:59"),
        ({"closes_at": "2001-01-01T00:00"}, "closes_at", "This time has passed"),
        ({"goal": "0"}, "goal", "at least 1"),
        ({"goal": "lots"}, "goal", "whole number"),
        ({"body": "x" * (BODY_MAX + 1)}, "body", f"at most {BODY_MAX} characters"),
        ({"from_url": "javascript:alert(1)"}, "from_url", "https://"),
        ({"field_city": "maybe"}, "field_city", "Choose one of the options."),
    ],
)
def test_bad_letters_get_field_errors_and_nothing_is_stored(
    app: FastAPI, client: TestClient, changes: dict[str, str], field: str, message: str
) -> None:
    add_letter(app, slug="taken-slug")
    sign_in_as(client, app, "writer@example.org")

    response = post_form(client, "/dashboard/letters/new", {**FORM, **changes})

    assert response.status_code == 422
    assert message in html.unescape(response.text)
    assert f'href="#f-{field}"' in response.text  # the summary links to the field
    assert f'id="f-{field}-error"' in response.text
    assert letter_count(app) == 1
    assert "<title>Error:" in response.text


def test_a_body_over_the_request_limit_is_refused(app: FastAPI, client: TestClient) -> None:
    sign_in_as(client, app, "writer@example.org")
    limit = app.state.settings.max_dashboard_request_bytes
    response = post_form(client, "/dashboard/letters/new", {**FORM, "body": "x" * (limit + 1)})
    assert response.status_code == 413
    assert letter_count(app) == 0


# --- one letter: the overview and its lifecycle -------------------------------------------


@pytest.mark.parametrize(("role", "status"), [(Role.OWNER, 200), (Role.EDITOR, 200),
                                              (Role.VIEWER, 200), (None, 404)])  # fmt: skip
def test_the_overview_for_each_role(
    app: FastAPI, client: TestClient, role: Role | None, status: int
) -> None:
    letter = add_letter(app, status=LetterStatus.DRAFT)
    as_role(client, app, letter, role)
    page = client.get(f"/dashboard/letters/{letter.slug}")
    assert page.status_code == status
    if status == 404:
        assert letter.title not in page.text
        return
    owner = role == Role.OWNER
    assert (f'action="/dashboard/letters/{letter.slug}/publish"' in page.text) is owner
    assert ("Only the letter's owners" in html.unescape(page.text)) is not owner
    assert (f'href="/dashboard/letters/{letter.slug}/audit"' in page.text) is owner
    assert (f'href="/dashboard/letters/{letter.slug}/edit">Edit the' in page.text) is (
        role in (Role.OWNER, Role.EDITOR)
    )


@pytest.mark.parametrize("action", list(LIFECYCLE))
@pytest.mark.parametrize(("role", "status"), ROLES)
def test_lifecycle_for_each_role(
    app: FastAPI, client: TestClient, action: str, role: Role | None, status: int
) -> None:
    start, end, archived = LIFECYCLE[action]
    letter = add_letter(app, status=start)
    as_role(client, app, letter, role)

    response = post_form(client, f"/dashboard/letters/{letter.slug}/{action}")

    assert response.status_code == status
    stored = fresh(app, letter.slug)
    assert stored is not None
    if status == 303:
        assert response.headers["location"] == f"/dashboard/letters/{letter.slug}?notice={action}"
        assert (stored.status, stored.archived_at is not None) == (end, archived)
        assert actions(app, letter.id) == [f"letter.{action}"]
    else:
        assert (stored.status, stored.archived_at) == (start, None)
        assert actions(app, letter.id) == []


def test_an_admin_acts_as_an_owner(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, status=LetterStatus.DRAFT)
    sign_in_as(client, app, "admin@example.org", is_admin=True)
    assert post_form(client, f"/dashboard/letters/{letter.slug}/publish").status_code == 303
    stored = fresh(app, letter.slug)
    assert stored is not None
    assert stored.status == LetterStatus.OPEN


@pytest.mark.parametrize(
    ("status", "closes_at", "action", "data", "message"),
    [
        (LetterStatus.OPEN, None, "publish", {}, "already published"),
        (LetterStatus.DRAFT, None, "close", {}, "draft: publish it first"),
        (LetterStatus.CLOSED, None, "close", {}, "already closed"),
        (LetterStatus.OPEN, None, "reopen", {}, "already open"),
        (LetterStatus.DRAFT, "past", "publish", {}, "closing time has passed"),
        (LetterStatus.CLOSED, "past", "reopen", {}, "give a new one"),
        (LetterStatus.CLOSED, "past", "reopen", {"closes_at": "2001-01-01T00:00"},
         "This time has passed"),
        (LetterStatus.CLOSED, None, "reopen", {"closes_at": "soon"}, "2027-01-31T23:59"),
    ],
)  # fmt: skip
def test_impossible_transitions_say_why(
    app: FastAPI,
    client: TestClient,
    status: LetterStatus,
    closes_at: str | None,
    action: str,
    data: dict[str, str],
    message: str,
) -> None:
    when = utcnow() - timedelta(days=1) if closes_at else None
    letter = add_letter(app, status=status, closes_at=when)
    as_role(client, app, letter, Role.OWNER)
    response = post_form(client, f"/dashboard/letters/{letter.slug}/{action}", data)
    assert response.status_code == 422
    assert message in html.unescape(response.text)
    assert 'role="alert"' in response.text
    stored = fresh(app, letter.slug)
    assert stored is not None
    assert stored.status == status
    assert actions(app, letter.id) == []


def test_a_letter_past_its_closing_time_shows_closed_and_reopens_with_a_new_time(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, closes_at=utcnow() - timedelta(minutes=5))
    as_role(client, app, letter, Role.OWNER)
    page = client.get(f"/dashboard/letters/{letter.slug}")
    assert "Closed (its closing time has passed)" in text(page)
    assert f'action="/dashboard/letters/{letter.slug}/reopen"' in page.text
    assert f'action="/dashboard/letters/{letter.slug}/close"' not in page.text

    later = (utcnow() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    response = post_form(client, f"/dashboard/letters/{letter.slug}/reopen", {"closes_at": later})
    assert response.status_code == 303
    assert client.get(f"/letters/{letter.slug}").text.count('action="/letters/') == 1

    no_time = add_letter(app, status=LetterStatus.CLOSED, closes_at=utcnow() - timedelta(days=1))
    as_role(client, app, no_time, Role.OWNER)
    response = post_form(client, f"/dashboard/letters/{no_time.slug}/reopen",
                         {"no_closing_time": "yes"})  # fmt: skip
    assert response.status_code == 303
    stored = fresh(app, no_time.slug)
    assert stored is not None
    assert (stored.status, stored.closes_at) == (LetterStatus.OPEN, None)


# --- editing and versions ------------------------------------------------------------------


def edit_form(letter: Letter, **changes: str) -> dict[str, str]:
    values = {
        **FORM,
        "title": letter.title,
        "body": "We ask for **one thing**.",
        "goal": "100",
        "closes_at": "",
        "show_signers": "yes",
    }
    values.pop("slug")
    return {**values, **changes}


@pytest.mark.parametrize(("role", "status"), [(Role.OWNER, 303), (Role.EDITOR, 303),
                                              (Role.VIEWER, 403), (None, 404)])  # fmt: skip
def test_editing_for_each_role(
    app: FastAPI, client: TestClient, role: Role | None, status: int
) -> None:
    letter = add_letter(app)
    as_role(client, app, letter, role)
    page = client.get(f"/dashboard/letters/{letter.slug}/edit")
    assert page.status_code == (200 if status == 303 else status)
    if status == 303:
        assert f'value="{letter.title}"' in page.text
        assert "We ask for **one thing**." in page.text
        assert f"/letters/{letter.slug}</code>" in page.text  # the slug is shown, not editable
        assert 'name="slug"' not in page.text

    response = post_form(client, f"/dashboard/letters/{letter.slug}/edit",
                         edit_form(letter, title="A better title", slug="hijack"))  # fmt: skip

    assert response.status_code == status
    stored = fresh(app, letter.slug)
    assert stored is not None
    if status == 303:
        assert response.headers["location"] == f"/dashboard/letters/{letter.slug}?notice=saved"
        assert stored.title == "A better title"
        assert stored.from_name == "Friends of the library"
        assert actions(app, letter.id) == ["letter.edit"]
    else:
        assert stored.title == letter.title
    assert fresh(app, "hijack") is None


def test_editing_a_signed_letter_makes_a_version_the_public_can_see(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, body_markdown="We ask for **one thing**.\n\nThank you.")
    add_verified_signers(app, letter, {}, {})
    as_role(client, app, letter, Role.EDITOR)
    before = client.get(f"/letters/{letter.slug}")
    assert "was edited" not in before.text

    response = post_form(
        client,
        f"/dashboard/letters/{letter.slug}/edit",
        edit_form(letter, body="We ask for **two things**.\n\nThank you."),
    )

    assert response.headers["location"].endswith("?notice=new_version")
    assert "version 2 of the text" in client.get(response.headers["location"]).text
    page = client.get(f"/letters/{letter.slug}")
    today = utcnow().strftime("%-d %B %Y")
    assert f"This letter was edited on {today}. 2 people signed an earlier version." in text(page)
    assert f'href="/letters/{letter.slug}/changes"' in page.text
    assert "<strong>two things</strong>" in page.text

    changes = client.get(f"/letters/{letter.slug}/changes")
    assert changes.status_code == 200
    assert re.search(r"<del[^>]*>.*Removed:.*We ask for \*\*one thing\*\*\.</del>", changes.text)
    assert re.search(r"<ins[^>]*>.*Added:.*We ask for \*\*two things\*\*\.</ins>", changes.text)
    assert "Version 2" in changes.text
    assert "Version 1" in changes.text
    assert "style=" not in changes.text
    with app.state.database.read() as session:
        numbers = session.scalars(
            select(LetterVersion.number).where(LetterVersion.letter_id == letter.id)
        ).all()
        versions = session.scalars(
            select(Signature.version).where(Signature.letter_id == letter.id)
        )
        assert sorted(numbers) == [1, 2]
        assert set(versions) == {1}


def test_a_goal_below_the_count_is_refused(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, goal=100)
    with app.state.database.write() as session:
        add_to_tally(session, letter_id=letter.id, delta=40)
    as_role(client, app, letter, Role.OWNER)
    response = post_form(client, f"/dashboard/letters/{letter.slug}/edit",
                         edit_form(letter, goal="39", title="Changed"))  # fmt: skip
    assert response.status_code == 422
    assert "The goal cannot be below the current count (40)." in response.text
    assert 'aria-invalid="true"' in response.text
    stored = fresh(app, letter.slug)
    assert stored is not None
    assert (stored.goal, stored.title) == (100, letter.title)


def test_preview_while_editing_stores_nothing(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    as_role(client, app, letter, Role.EDITOR)
    response = post_form(client, f"/dashboard/letters/{letter.slug}/edit",
                         edit_form(letter, body="*New*", action="preview"))  # fmt: skip
    assert response.status_code == 200
    assert "<em>New</em>" in response.text
    stored = fresh(app, letter.slug)
    assert stored is not None
    assert stored.body_markdown == "We ask for **one thing**."


# --- the audit log -------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [(Role.OWNER, 200), (Role.EDITOR, 403),
                                              (Role.VIEWER, 403), (None, 404)])  # fmt: skip
def test_the_audit_log_is_for_owners(
    app: FastAPI, client: TestClient, role: Role | None, status: int
) -> None:
    letter = add_letter(app)
    as_role(client, app, letter, Role.OWNER)
    post_form(client, f"/dashboard/letters/{letter.slug}/close")
    as_role(client, app, letter, role)
    page = client.get(f"/dashboard/letters/{letter.slug}/audit")
    assert page.status_code == status
    if status == 200:
        assert "owner@example.org" in page.text
        assert "letter.close" in page.text
        assert page.headers["cache-control"] == "no-store"


def test_the_audit_log_pages(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    with app.state.database.write() as session:
        for number in range(105):
            record(session, actor=SHELL, letter_id=letter.id, action="test.step", n=number)
    as_role(client, app, letter, Role.OWNER)
    first = client.get(f"/dashboard/letters/{letter.slug}/audit")
    older = re.search(r'href="(/dashboard/letters/[^"]+/audit\?before=\d+)"', first.text)
    assert older
    assert first.text.count("test.step</code>") == 100
    assert "<dd>104</dd>" in first.text
    second = client.get(older.group(1))
    assert second.text.count("test.step</code>") == 5
    assert "<dd>0</dd>" in second.text
    assert "audit?before=" not in second.text
    assert client.get(f"/dashboard/letters/{letter.slug}/audit?before=x").status_code == 422


# --- the public pages ----------------------------------------------------------------------


def test_the_from_line_links_to_the_group(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, from_name="Friends & co", from_url="https://friends.example/")
    page = client.get(f"/letters/{letter.slug}")
    assert (
        'From <a href="https://friends.example/" rel="noopener noreferrer nofollow">'
        "Friends &amp; co</a>" in page.text
    )
    plain = add_letter(app, from_name="Just a name")
    assert "From Just a name" in text(client.get(f"/letters/{plain.slug}"))
    nobody = add_letter(app)
    assert "from-line" not in client.get(f"/letters/{nobody.slug}").text


def test_the_changes_page_of_an_unedited_letter_and_of_a_draft(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app)
    page = client.get(f"/letters/{letter.slug}/changes")
    assert page.status_code == 200
    assert "has not been changed" in page.text
    draft = add_letter(app, status=LetterStatus.DRAFT)
    assert client.get(f"/letters/{draft.slug}/changes").status_code == 404
    assert client.get("/letters/no-such-letter/changes").status_code == 404


# --- accessibility (axe-core in Chromium) ---------------------------------------------------


@pytest.fixture(scope="module")
def live_site(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[str, str]]:
    """The app in uvicorn with an owner's letter (edited after signatures, archived
    sibling, audit events); yields (base URL, the owner's session cookie)."""
    tmp_path = tmp_path_factory.mktemp("letters-a11y")
    path = tmp_path / "a11y.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database.url, base_url=base_url, run_mail_worker=False)
    with database.write() as session:
        owner = make_organizer(session, "owner@example.org")
        actor = Actor(owner)
        data = parse(LetterCreate, {**FORM, "body_markdown": FORM["body"], "status": "open"})
        letter = create_letter(session, data=data, actor=actor)
        sign_and_confirm(session, letter, settings)
        changed = parse(LetterFields, {**current_fields(letter), "body_markdown": "New text.\n"})
        edit_letter(session, letter=letter, data=changed, actor=actor)
        invite_to_team(session, letter=letter, email="helper@example.org", role=Role.EDITOR,
                       actor=actor, settings=settings)  # fmt: skip
        old = create_letter(
            session, data=parse(LetterCreate, {**FORM, "slug": "old", "body_markdown": "x"}),
            actor=actor,
        )  # fmt: skip
        change_status(session, letter=old, transition=Transition.PUBLISH, actor=actor)
        change_status(session, letter=old, transition=Transition.ARCHIVE, actor=actor)
        cookie = start_session(session, organizer=owner, settings=settings)
    try:
        with serve(sock, settings):
            yield base_url, cookie
    finally:
        database.dispose()


def _submit_new_letter(page: Page, action: str, **fields: str) -> int:
    for name, value in fields.items():
        page.locator(f"#f-{name}").fill(value)
    with page.expect_response(lambda r: r.url.endswith("/dashboard/letters/new")) as answer:
        page.locator(f"button[value={action}]").first.click()
    page.wait_for_load_state()
    return answer.value.status


A11Y_PAGES: dict[str, tuple[str, dict[str, str] | None]] = {
    "list": ("/dashboard", None),
    "new": ("/dashboard/letters/new", None),
    "new-errors": ("/dashboard/letters/new", {"action": "save", "slug": "new", "goal": "0"}),
    "new-preview": ("/dashboard/letters/new", {"action": "preview", "body": "# Hi\n\n*there*"}),
    "overview": (f"/dashboard/letters/{FORM['slug']}?notice=saved", None),
    "overview-archived": ("/dashboard/letters/old", None),
    "edit": (f"/dashboard/letters/{FORM['slug']}/edit", None),
    "team": (f"/dashboard/letters/{FORM['slug']}/team", None),
    "audit": (f"/dashboard/letters/{FORM['slug']}/audit", None),
    "public-letter": (f"/letters/{FORM['slug']}", None),
    "public-changes": (f"/letters/{FORM['slug']}/changes", None),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.mark.browser
@pytest.mark.parametrize("viewport", ["desktop", "phone"])
@pytest.mark.parametrize("name", list(A11Y_PAGES))
def test_the_pages_pass_axe(
    browser: Browser, live_site: tuple[str, str], name: str, viewport: str
) -> None:
    base_url, cookie = live_site
    sizes: dict[str, dict[str, Any]] = {
        "desktop": {"viewport": {"width": 1280, "height": 900}},
        "phone": {"viewport": {"width": 360, "height": 740}, "is_mobile": True},
    }
    path, submit = A11Y_PAGES[name]
    context = browser.new_context(**sizes[viewport])
    try:
        context.add_cookies([{"name": "session", "value": cookie, "url": base_url}])
        page = context.new_page()
        response = page.goto(base_url + path)
        assert response is not None
        assert response.status == 200
        if submit:
            submit = dict(submit)
            action = submit.pop("action")
            status = _submit_new_letter(page, action, **submit)
            assert status == (200 if action == "preview" else 422)
            shown = ".preview" if action == "preview" else ".error-summary"
            assert page.locator(shown).is_visible()
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        report = [(v["id"], [node["html"][:120] for node in v["nodes"]]) for v in violations]
        assert violations == [], report
        scroll_width, inner_width = page.evaluate(
            "[document.scrollingElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, f"{name} scrolls sideways on {viewport}"
    finally:
        context.close()
