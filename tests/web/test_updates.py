"""Updates in the browser: the dashboard page per role, the compose form (CSRF, errors,
preview, send), and unsubscribing, including RFC 8058's one-click POST with no cookies."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app import tokens
from app.letters.models import Letter
from app.mail.backends import DevMailbox
from app.mail.worker import deliver_due
from app.organizers.models import AuditEvent, Role
from app.signatures.models import Signature
from app.updates.models import LetterUpdate, UpdateState
from app.updates.service import fan_out_updates
from tests.support.factories import sign_and_confirm, tampered
from tests.support.organizers import post_form, sign_in_as
from tests.web.conftest import csrf_from
from tests.web.flows import add_letter, tally_on

GOOD = {"subject": "We delivered it", "body": "The letter is **delivered**.", "action": "send"}


def subscribers(app: FastAPI, letter: Letter, n: int) -> list[str]:
    """`n` confirmed signers who asked for updates (and one who did not); their addresses."""
    addresses = [f"reader{i}@example.org" for i in range(n)]
    with app.state.database.write() as session:
        for address in addresses:
            sign_and_confirm(session, letter, app.state.settings, email=address, contact_ok=True)
        sign_and_confirm(session, letter, app.state.settings, email="quiet@example.org")
    return addresses


def stored_updates(app: FastAPI) -> list[LetterUpdate]:
    with app.state.database.read() as session:
        return list(session.scalars(select(LetterUpdate).order_by(LetterUpdate.id)))


def path(letter: Letter) -> str:
    return f"/dashboard/letters/{letter.slug}/updates"


# --- The dashboard page ----------------------------------------------------------------


def test_signed_out_is_sent_to_login(client: TestClient, app: FastAPI) -> None:
    letter = add_letter(app)
    response = client.get(path(letter), follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    response = post_form(client, path(letter), GOOD)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert stored_updates(app) == []


def test_without_a_role_the_letter_is_not_found(client: TestClient, app: FastAPI) -> None:
    letter = add_letter(app)
    sign_in_as(client, app, "stranger@example.org")
    assert client.get(path(letter)).status_code == 404
    assert post_form(client, path(letter), GOOD).status_code == 404
    assert stored_updates(app) == []


def test_the_owner_sees_the_form_and_how_many_it_reaches(client: TestClient, app: FastAPI) -> None:
    letter = add_letter(app)
    subscribers(app, letter, 2)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    response = client.get(path(letter))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert 'name="subject"' in response.text and 'name="body"' in response.text
    assert "Send to 2 signers" in response.text and "Preview" in response.text
    assert "2 signers get updates now." in response.text
    assert "No update has been sent yet." in response.text


@pytest.mark.parametrize("role", [Role.EDITOR, Role.VIEWER])
def test_editors_and_viewers_see_past_updates_but_cannot_send(
    client: TestClient, app: FastAPI, role: Role
) -> None:
    letter = add_letter(app)
    subscribers(app, letter, 1)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    assert post_form(client, path(letter), GOOD).status_code == 303

    sign_in_as(client, app, f"{role}@example.org", letter_slug=letter.slug, role=role)
    page = client.get(path(letter))
    assert page.status_code == 200
    assert "We delivered it" in page.text and "Sending" in page.text
    assert 'name="body"' not in page.text
    assert "Only the letter's owners can send updates." in page.text

    response = post_form(client, path(letter), {**GOOD, "subject": "Mine"})
    assert response.status_code == 403
    assert [u.subject for u in stored_updates(app)] == ["We delivered it"]


def test_an_admin_acts_as_an_owner(client: TestClient, app: FastAPI) -> None:
    letter = add_letter(app)
    sign_in_as(client, app, "admin@example.org", is_admin=True)
    assert 'name="body"' in client.get(path(letter)).text
    assert post_form(client, path(letter), GOOD).status_code == 303
    assert len(stored_updates(app)) == 1


# --- Sending ---------------------------------------------------------------------------


def test_sending_queues_the_update_audits_it_and_says_how_many_it_reaches(
    client: TestClient, app: FastAPI
) -> None:
    letter = add_letter(app)
    addresses = subscribers(app, letter, 2)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)

    response = post_form(client, path(letter), GOOD)

    assert response.status_code == 303
    assert response.headers["location"] == f"{path(letter)}?queued=2"
    [stored] = stored_updates(app)
    assert (stored.subject, stored.body_markdown, stored.state) == (
        "We delivered it",
        "The letter is **delivered**.",
        UpdateState.QUEUED,
    )
    with app.state.database.read() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "update.send")).one()
    assert event.detail["update_id"] == stored.id and event.actor == "owner@example.org"
    assert not any(address in repr(event.detail) for address in addresses)

    page = client.get(response.headers["location"])
    assert "Your update is queued. It will go to 2 signers." in page.text
    assert "We delivered it" in page.text

    # Pressing Send twice (a double click) queues it once.
    again = post_form(client, path(letter), GOOD)
    assert again.headers["location"].endswith("&duplicate=true")
    assert len(stored_updates(app)) == 1
    assert "It was not queued twice." in client.get(again.headers["location"]).text


def test_the_compose_form_needs_its_csrf_token(client: TestClient, app: FastAPI) -> None:
    letter = add_letter(app)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    page = client.get(path(letter))
    token = csrf_from(page.text)

    missing = client.post(path(letter), data=GOOD, follow_redirects=False)
    wrong = client.post(path(letter), data={**GOOD, "csrf_token": "x" * 43})
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert stored_updates(app) == []
    good = client.post(path(letter), data={**GOOD, "csrf_token": token}, follow_redirects=False)
    assert good.status_code == 303


@pytest.mark.parametrize(
    ("fields", "wrong"),
    [
        ({"subject": "", "body": ""}, {"subject", "body"}),
        ({"subject": "   ", "body": "Text"}, {"subject"}),
        ({"subject": "Hello", "body": "\n \n"}, {"body"}),
        ({"subject": "x" * 201, "body": "Text"}, {"subject"}),
        ({"subject": "Hello", "body": "x" * 20_001}, {"body"}),
    ],
    ids=["both-empty", "blank-subject", "blank-body", "long-subject", "long-body"],
)
def test_bad_input_is_refused_with_field_errors_and_nothing_stored(
    client: TestClient, app: FastAPI, fields: dict[str, str], wrong: set[str]
) -> None:
    letter = add_letter(app)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    response = post_form(client, path(letter), {**fields, "action": "send"})
    assert response.status_code == 422
    shown = set(re.findall(r'id="f-(\w+)-error"', response.text))
    assert shown == wrong
    for name in wrong:
        assert re.search(rf'id="f-{name}"[^>]*aria-invalid="true"', response.text, re.S)
    assert stored_updates(app) == []


def test_preview_renders_the_body_and_stores_nothing(client: TestClient, app: FastAPI) -> None:
    letter = add_letter(app)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    body = "# News\n\nIt is **delivered**. <script>alert(1)</script>"
    response = post_form(client, path(letter), {"subject": "Hi", "body": body, "action": "preview"})
    assert response.status_code == 200
    assert "<strong>delivered</strong>" in response.text
    assert "<script>alert" not in response.text
    assert "Subject:</strong> Hi" in response.text
    assert "# News" in response.text  # the textarea keeps what was written
    assert stored_updates(app) == []


# --- Unsubscribing ---------------------------------------------------------------------


def send_and_deliver(client: TestClient, app: FastAPI, letter: Letter) -> DevMailbox:
    """The owner sends an update; the worker fans it out and delivers it to the dev
    mailbox (the confirmation emails first, so that only updates are left)."""
    settings = app.state.settings
    mailbox = DevMailbox(settings.data_dir / "dev-mail")
    deliver_due(app.state.database, mailbox, settings=settings)
    for path_ in (settings.data_dir / "dev-mail").glob("*.eml"):
        path_.unlink()
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    assert post_form(client, path(letter), GOOD).status_code == 303
    with app.state.database.write() as session:
        fan_out_updates(session, settings=settings)
    deliver_due(app.state.database, mailbox, settings=settings)
    return mailbox


def contacts(app: FastAPI) -> list[tuple[bool, str | None]]:
    """Every signature's (contact_ok, email), in list order."""
    with app.state.database.read() as session:
        rows = session.execute(
            select(Signature.contact_ok, Signature.email).order_by(Signature.position)
        ).all()
    return [(ok, email) for ok, email in rows]


def test_one_click_unsubscribe_from_the_email_header_works_without_cookies(
    client: TestClient, app: FastAPI
) -> None:
    letter = add_letter(app)
    [leaving, staying] = subscribers(app, letter, 2)
    # The public page from another browser: its form's CSRF cookie would be a second one
    # in `client`'s jar beside the one `post_form` sets.
    public = TestClient(app, base_url="http://testserver")
    before = tally_on(public.get(f"/letters/{letter.slug}").text)
    assert before == 3
    mailbox = send_and_deliver(client, app, letter)
    messages = {str(m["To"]): m for m in mailbox.messages()}
    assert set(messages) == {leaving, staying}
    header = str(messages[leaving]["List-Unsubscribe"])
    assert messages[leaving]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = header.removeprefix("<").removesuffix(">")
    assert link.startswith("http://testserver/unsubscribe/")
    url = link.removeprefix("http://testserver")

    # A mail provider's POST: no cookies, no CSRF token, the RFC 8058 body.
    with TestClient(app, base_url="http://testserver") as provider:
        response = provider.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert contacts(app) == [(False, None), (True, staying), (False, None)]
    assert tally_on(public.get(f"/letters/{letter.slug}").text) == before

    # Later updates reach only the one who stayed.
    assert post_form(client, path(letter), {**GOOD, "subject": "Again"}).status_code == 303
    with app.state.database.write() as session:
        assert fan_out_updates(session, settings=app.state.settings) == 1


def test_the_unsubscribe_page_changes_nothing_until_the_button_is_pressed(
    client: TestClient, app: FastAPI
) -> None:
    letter = add_letter(app, title="Quiet streets")
    [address] = subscribers(app, letter, 1)
    mailbox = send_and_deliver(client, app, letter)
    [message] = mailbox.messages()
    text = str(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    match = re.search(r"http://testserver(/unsubscribe/\S+)", text)
    assert match
    url = match.group(1)

    reader = TestClient(app, base_url="http://testserver")
    page = reader.get(url)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Quiet streets" in page.text
    assert f'<form method="post" action="{url}">' in page.text
    assert ">Unsubscribe</button>" in page.text
    assert contacts(app) == [(True, address), (False, None)]

    done = reader.post(url)
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert contacts(app) == [(False, None), (False, None)]

    again = reader.post(url)
    assert again.status_code == 200 and "You are already unsubscribed" in again.text
    assert "already unsubscribed" in reader.get(url).text


def test_a_tampered_unsubscribe_link_gets_a_clear_400_page(
    client: TestClient, app: FastAPI
) -> None:
    letter = add_letter(app)
    [address] = subscribers(app, letter, 1)
    settings = app.state.settings
    token = tokens.issue(settings.secret, tokens.Purpose.UNSUBSCRIBE, "d" * 32)
    for method in ("get", "post"):
        bad = getattr(client, method)(f"/unsubscribe/{tampered(token)}")
        assert bad.status_code == 400
        assert "This link does not work" in bad.text and "unsubscribe link" in bad.text
        gone = getattr(client, method)(f"/unsubscribe/{token}")
        assert gone.status_code == 400 and "This link no longer works" in gone.text
    assert contacts(app) == [(True, address), (False, None)]
