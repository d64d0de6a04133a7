"""Signing in with a link by email, signing out, and the admins' organizers page.

The whole loop runs as a person would: /login, the worker, the dev mailbox, the link's
page, its button, a dashboard page that needs a session."""

from __future__ import annotations

import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select

from app.config import Settings
from app.mail.backends import DevMailbox
from app.mail.models import OutboxEmail
from app.mail.worker import deliver_due
from app.main import create_app
from app.organizers.logins import EMAILS_PER_WINDOW, LINK_MAX_AGE_SECONDS, send_login_links
from app.organizers.models import AuditEvent, LoginLink, Organizer, OrganizerSession
from app.organizers.service import find_organizer
from app.organizers.web import session_cookie_name
from app.web.security import csrf_cookie_name
from tests.support.config import make_settings
from tests.support.factories import tampered
from tests.support.organizers import sign_in_as
from tests.web.conftest import csrf_from

LINK = re.compile(r"https?://[^/\s]+(/login/[A-Za-z0-9_.\-]+)")


# --- Helpers ---------------------------------------------------------------------------


def post_form(client: TestClient, path: str, data: dict[str, str] | None = None) -> Response:
    """A form POST with a valid CSRF pair. (tests/support's post_form adds a second
    `csrf` cookie when the server already set one, and then cannot read it back.)"""
    name = csrf_cookie_name(client.app.state.settings.secure_cookies)  # type: ignore[attr-defined]
    values = [cookie.value for cookie in client.cookies.jar if cookie.name == name]
    token = values[0] if values and values[0] else secrets.token_urlsafe(32)
    if not values:
        client.cookies.set(name, token)
    return client.post(path, data={**(data or {}), "csrf_token": token}, follow_redirects=False)


def add_organizer(app: FastAPI, email: str, *, is_admin: bool = False) -> int:
    with app.state.database.write() as session:
        organizer = Organizer(email=email, is_admin=is_admin)
        session.add(organizer)
        session.flush()
        return organizer.id


def ask_for_link(client: TestClient, email: str) -> Response:
    page = client.get("/login")
    assert page.status_code == 200
    data = {"email": email, "csrf_token": csrf_from(page.text)}
    return client.post("/login", data=data, follow_redirects=False)


def run_worker(app: FastAPI) -> int:
    """The worker's sign-in step, then delivery into the dev mailbox; emails delivered."""
    settings: Settings = app.state.settings
    with app.state.database.write() as session:
        send_login_links(session, settings=settings)
    return deliver_due(app.state.database, mailbox(app), settings=settings)


def mailbox(app: FastAPI) -> DevMailbox:
    return DevMailbox(app.state.settings.data_dir / "dev-mail")


def inbox(app: FastAPI, to: str) -> list[str]:
    """The plain-text bodies of the messages delivered to `to`, newest first."""
    bodies = []
    for message in mailbox(app).messages():
        if message["To"] == to:
            part = message.get_body(preferencelist=("plain",))
            assert part is not None
            bodies.append(str(part.get_content()))
    return bodies


def link_path(app: FastAPI, to: str) -> str:
    """The path of the newest sign-in link emailed to `to`."""
    for body in inbox(app, to):
        match = LINK.search(body)
        if match:
            return match.group(1)
    raise AssertionError(f"no sign-in link for {to}")


def press_button(client: TestClient, path: str) -> Response:
    """Opens the link's page and presses its button (a POST with the page's CSRF token)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf_token": csrf_from(page.text)}, follow_redirects=False)


def sign_in_by_email(client: TestClient, app: FastAPI, email: str) -> Response:
    """The whole loop; returns the answer to the button."""
    assert ask_for_link(client, email).status_code == 303
    assert run_worker(app) >= 1
    return press_button(client, link_path(app, email))


def count(app: FastAPI, model: type[LoginLink] | type[Organizer] | type[OrganizerSession]) -> int:
    with app.state.database.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def expired_token(settings: Settings, link_id: str) -> str:
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - LINK_MAX_AGE_SECONDS - 60

    serializer = URLSafeTimedSerializer(settings.secret, salt="organizer-login", signer=Past)
    return str(serializer.dumps(link_id))


def _app_with(tmp_path: Path, sqlite_template: Path, **overrides: object) -> FastAPI:
    path = tmp_path / "other.db"
    shutil.copy(sqlite_template, path)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return create_app(make_settings(data_dir, f"sqlite:///{path}", **overrides))


@pytest.fixture
def open_app(tmp_path: Path, sqlite_template: Path) -> FastAPI:
    return _app_with(tmp_path, sqlite_template, open_registration=True)


@pytest.fixture
def open_client(open_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(open_app, base_url="http://testserver", client=("127.0.0.1", 50000)) as c:
        yield c


# --- The loop --------------------------------------------------------------------------


def test_an_organizer_signs_in_with_the_link_in_their_email(
    app: FastAPI, client: TestClient
) -> None:
    add_organizer(app, "admin@example.org", is_admin=True)
    assert client.get("/dashboard/organizers", follow_redirects=False).headers["location"] == (
        "/login"
    )

    asked = ask_for_link(client, "Admin@Example.org")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/login/sent"
    sent = client.get("/login/sent")
    assert sent.status_code == 200 and "Check your email" in sent.text
    assert run_worker(app) == 1

    path = link_path(app, "admin@example.org")
    page = client.get(path)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "admin@example.org" in page.text
    assert f'action="{path}"' in page.text
    assert count(app, OrganizerSession) == 0  # opening the link changes nothing

    signed_in = client.post(path, data={"csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/dashboard"
    assert signed_in.headers["cache-control"] == "no-store"
    assert count(app, OrganizerSession) == 1

    dashboard = client.get("/dashboard/organizers")
    assert dashboard.status_code == 200
    assert "admin@example.org" in dashboard.text
    assert dashboard.headers["cache-control"] == "no-store"


def test_the_sign_in_email_is_in_the_language_of_the_request_that_asked(
    app: FastAPI, client: TestClient
) -> None:
    """The worker writes the email later, with no request: the link's row keeps the
    language the login page was asked in (D114)."""
    add_organizer(app, "ana@example.org")
    add_organizer(app, "bob@example.org")
    client.headers["accept-language"] = "es-MX,es;q=0.9,en;q=0.5"
    assert ask_for_link(client, "ana@example.org").status_code == 303
    client.headers["accept-language"] = "en-GB"
    assert ask_for_link(client, "bob@example.org").status_code == 303
    assert run_worker(app) == 2
    subjects = {message["To"]: message["Subject"] for message in mailbox(app).messages()}
    assert subjects["ana@example.org"].startswith("Su enlace de inicio de sesión para ")
    assert subjects["bob@example.org"].startswith("Your sign-in link for ")
    assert inbox(app, "ana@example.org")[0].startswith("Hola:")
    assert press_button(client, link_path(app, "ana@example.org")).status_code == 303


def test_the_link_works_once(app: FastAPI, client: TestClient) -> None:
    add_organizer(app, "known@example.org")
    assert sign_in_by_email(client, app, "known@example.org").status_code == 303
    path = link_path(app, "known@example.org")

    again = post_form(client, path)
    assert again.status_code == 400
    assert "already been used" in again.text
    assert 'href="/login"' in again.text
    assert again.headers["cache-control"] == "no-store"
    looked = client.get(path)
    assert looked.status_code == 400 and "already been used" in looked.text
    assert count(app, OrganizerSession) == 1


def test_an_expired_link_says_so(app: FastAPI, client: TestClient) -> None:
    add_organizer(app, "known@example.org")
    ask_for_link(client, "known@example.org")
    run_worker(app)
    with app.state.database.read() as session:
        link_id = session.scalars(select(LoginLink.id)).one()
    path = f"/login/{expired_token(app.state.settings, link_id)}"

    for response in (client.get(path), post_form(client, path)):
        assert response.status_code == 400
        assert "has expired" in response.text
        assert "Send me a new sign-in link" in response.text
        assert response.headers["cache-control"] == "no-store"
    assert count(app, OrganizerSession) == 0


def test_a_link_past_its_row_expiry_says_so(app: FastAPI, client: TestClient) -> None:
    add_organizer(app, "known@example.org")
    ask_for_link(client, "known@example.org")
    run_worker(app)
    with app.state.database.write() as session:
        link = session.scalars(select(LoginLink)).one()
        link.expires_at = link.created_at
    response = post_form(client, link_path(app, "known@example.org"))
    assert response.status_code == 400 and "has expired" in response.text


def test_a_tampered_link_says_so(app: FastAPI, client: TestClient) -> None:
    add_organizer(app, "known@example.org")
    ask_for_link(client, "known@example.org")
    run_worker(app)
    path = link_path(app, "known@example.org")
    bad = "/login/" + tampered(path.removeprefix("/login/"))
    for response in (client.get(bad), post_form(client, bad)):
        assert response.status_code == 400
        assert "does not work" in response.text
    assert count(app, OrganizerSession) == 0
    assert post_form(client, path).status_code == 303  # the real one still works


# --- No enumeration --------------------------------------------------------------------


def _answer(response: Response) -> tuple[int, str, list[str]]:
    cookies = sorted(header.split("=", 1)[0] for header in response.headers.get_list("set-cookie"))
    return response.status_code, response.headers.get("location", ""), cookies


def test_the_answer_is_the_same_for_an_organizer_and_a_stranger(
    app: FastAPI, client: TestClient
) -> None:
    add_organizer(app, "known@example.org")
    add_organizer(app, "admin@example.org", is_admin=True)
    answers = {
        email: _answer(ask_for_link(client, email))
        for email in ("known@example.org", "admin@example.org", "stranger@example.org")
    }
    assert answers["known@example.org"] == (303, "/login/sent", [])
    assert answers["admin@example.org"] == answers["known@example.org"]
    assert answers["stranger@example.org"] == answers["known@example.org"]
    assert count(app, LoginLink) == 3  # each one only stored a request

    run_worker(app)
    assert inbox(app, "stranger@example.org") == []
    assert len(inbox(app, "known@example.org")) == 1
    assert count(app, LoginLink) == 2
    assert find_organizer_in(app, "stranger@example.org") is None


def find_organizer_in(app: FastAPI, email: str) -> Organizer | None:
    with app.state.database.read() as session:
        return find_organizer(session, email=email)


def test_open_registration_answers_the_same_and_makes_the_account(
    open_app: FastAPI, open_client: TestClient
) -> None:
    add_organizer(open_app, "known@example.org")
    known = _answer(ask_for_link(open_client, "known@example.org"))
    new = _answer(ask_for_link(open_client, "new@example.org"))
    assert new == known == (303, "/login/sent", [])
    assert "If it has no organizer account yet" in open_client.get("/login/sent").text

    assert run_worker(open_app) == 2
    assert find_organizer_in(open_app, "new@example.org") is not None
    assert press_button(open_client, link_path(open_app, "new@example.org")).status_code == 303
    # Not an admin: the admins' page is closed to them.
    assert open_client.get("/dashboard/organizers").status_code == 403


def test_an_invalid_address_gets_the_form_again(app: FastAPI, client: TestClient) -> None:
    for email in ("", "not-an-address", "a@b@example.org", "x" * 300 + "@example.org"):
        response = ask_for_link(client, email)
        assert response.status_code == 422, email
        assert 'aria-invalid="true"' in response.text
        assert 'id="f-email-error"' in response.text
    assert count(app, LoginLink) == 0


def test_too_many_requests_are_dropped_without_a_word(app: FastAPI, client: TestClient) -> None:
    add_organizer(app, "known@example.org")
    for _ in range(EMAILS_PER_WINDOW + 3):
        assert _answer(ask_for_link(client, "known@example.org")) == (303, "/login/sent", [])
    run_worker(app)
    assert len(inbox(app, "known@example.org")) == EMAILS_PER_WINDOW


# --- Cookies ---------------------------------------------------------------------------


def _session_set_cookie(response: Response, name: str) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return header


def test_the_session_cookie_is_httponly_and_samesite_lax(app: FastAPI, client: TestClient) -> None:
    add_organizer(app, "known@example.org")
    response = sign_in_by_email(client, app, "known@example.org")
    header = _session_set_cookie(response, "session").lower()
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "path=/" in header
    assert "secure" not in header  # http BASE_URL: a Secure cookie would never come back


def test_under_https_the_session_cookie_is_secure(tmp_path: Path, sqlite_template: Path) -> None:
    app = _app_with(tmp_path, sqlite_template, base_url="https://letters.example.org")
    add_organizer(app, "known@example.org")
    with TestClient(app, base_url="https://testserver", client=("127.0.0.1", 5)) as client:
        response = sign_in_by_email(client, app, "known@example.org")
        assert response.status_code == 303
        assert session_cookie_name(app.state.settings) == "__Host-session"
        header = _session_set_cookie(response, "__Host-session").lower()
        assert "secure" in header and "httponly" in header and "samesite=lax" in header
        assert "https://letters.example.org/login/" in inbox(app, "known@example.org")[0]
        assert client.get("/dashboard/organizers").status_code == 403  # signed in, not admin


# --- Signing out -----------------------------------------------------------------------


def test_signing_out_ends_the_session(app: FastAPI, client: TestClient) -> None:
    add_organizer(app, "admin@example.org", is_admin=True)
    sign_in_by_email(client, app, "admin@example.org")
    cookie = client.cookies.get("session")
    assert cookie and client.get("/dashboard/organizers").status_code == 200

    form = client.get("/logout")
    assert form.status_code == 200 and 'action="/logout"' in form.text
    out = post_form(client, "/logout")
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    cleared = _session_set_cookie(out, "session").lower()
    assert "max-age=0" in cleared or "expires=thu, 01 jan 1970" in cleared
    assert count(app, OrganizerSession) == 0

    # The old cookie, replayed, signs nobody in.
    client.cookies.set("session", cookie)
    again = client.get("/dashboard/organizers", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/login"


def test_signing_in_again_ends_the_browsers_earlier_session(
    app: FastAPI, client: TestClient
) -> None:
    add_organizer(app, "known@example.org")
    sign_in_by_email(client, app, "known@example.org")
    first = client.cookies.get("session")
    sign_in_by_email(client, app, "known@example.org")
    assert client.cookies.get("session") != first
    assert count(app, OrganizerSession) == 1


# --- CSRF ------------------------------------------------------------------------------


def test_every_form_here_checks_csrf(app: FastAPI, client: TestClient) -> None:
    admin = sign_in_as(client, app, "admin@example.org", is_admin=True)
    other = add_organizer(app, "other@example.org")
    add_organizer(app, "known@example.org")
    ask_for_link(client, "known@example.org")
    run_worker(app)
    login_path = link_path(app, "known@example.org")
    links_before = count(app, LoginLink)

    for path, data in (
        ("/login", {"email": "known@example.org"}),
        (login_path, {}),
        ("/logout", {}),
        ("/dashboard/organizers/invite", {"email": "new@example.org"}),
        (f"/dashboard/organizers/{other}/admin", {"is_admin": "true"}),
    ):
        for token in (None, "x" * 43):
            form = dict(data) if token is None else {**data, "csrf_token": token}
            response = client.post(path, data=form, follow_redirects=False)
            assert response.status_code == 403, path
            assert "This form has expired" in response.text

    assert count(app, LoginLink) == links_before
    assert count(app, OrganizerSession) == 1  # the admin's: not signed out
    assert find_organizer_in(app, "new@example.org") is None
    other_now = find_organizer_in(app, "other@example.org")
    assert other_now is not None and not other_now.is_admin
    assert client.get("/dashboard/organizers").status_code == 200
    assert admin
    assert post_form(client, login_path).status_code == 303  # the link was not used


# --- Admins ----------------------------------------------------------------------------


def test_only_admins_see_the_organizers(app: FastAPI, client: TestClient) -> None:
    assert client.get("/dashboard/organizers", follow_redirects=False).status_code == 303
    sign_in_as(client, app, "plain@example.org")
    assert client.get("/dashboard/organizers").status_code == 403
    invite = post_form(client, "/dashboard/organizers/invite", {"email": "new@example.org"})
    assert invite.status_code == 403
    assert find_organizer_in(app, "new@example.org") is None
    other = add_organizer(app, "other@example.org")
    assert (
        post_form(client, f"/dashboard/organizers/{other}/admin", {"is_admin": "true"}).status_code
        == 403
    )
    other_now = find_organizer_in(app, "other@example.org")
    assert other_now is not None and not other_now.is_admin

    sign_in_as(client, app, "admin@example.org", is_admin=True)
    page = client.get("/dashboard/organizers")
    assert page.status_code == 200
    for text in ("plain@example.org", "other@example.org", "admin@example.org", "Never"):
        assert text in page.text
    assert 'action="/dashboard/organizers/invite"' in page.text


def test_an_admin_invites_an_organizer(app: FastAPI, client: TestClient) -> None:
    admin = sign_in_as(client, app, "admin@example.org", is_admin=True)
    response = post_form(client, "/dashboard/organizers/invite", {"email": "New@Example.org"})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/organizers?done=invited"
    assert "invitation is on its way" in client.get(response.headers["location"]).text

    assert find_organizer_in(app, "new@example.org") is not None
    with app.state.database.read() as session:
        [email] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "organizer_invite"))
        assert email.to_address == "new@example.org"
        [event] = session.scalars(select(AuditEvent))
        assert (event.action, event.organizer_id, event.letter_id) == (
            "organizer.invite",
            admin,
            None,
        )
    # The invited organizer signs in like anyone else.
    deliver_due(app.state.database, mailbox(app), settings=app.state.settings)
    assert "http://testserver/login" in inbox(app, "new@example.org")[0]
    client.cookies.clear()
    assert sign_in_by_email(client, app, "new@example.org").status_code == 303


def test_a_bad_or_known_invitation_address_is_refused(app: FastAPI, client: TestClient) -> None:
    sign_in_as(client, app, "admin@example.org", is_admin=True)
    bad = post_form(client, "/dashboard/organizers/invite", {"email": "nope"})
    assert bad.status_code == 422
    assert "name@example.org" in bad.text and 'aria-invalid="true"' in bad.text
    known = post_form(client, "/dashboard/organizers/invite", {"email": "admin@example.org"})
    assert known.status_code == 422
    assert "already has an organizer account" in known.text
    assert count(app, Organizer) == 1


def test_an_admin_makes_and_unmakes_admins_but_not_themselves(
    app: FastAPI, client: TestClient
) -> None:
    me = sign_in_as(client, app, "admin@example.org", is_admin=True)
    other = add_organizer(app, "other@example.org")

    made = post_form(client, f"/dashboard/organizers/{other}/admin", {"is_admin": "true"})
    assert made.status_code == 303 and made.headers["location"].endswith("done=admin")
    assert (find_organizer_in(app, "other@example.org") or Organizer()).is_admin
    unmade = post_form(client, f"/dashboard/organizers/{other}/admin", {"is_admin": "false"})
    assert unmade.status_code == 303
    assert not (find_organizer_in(app, "other@example.org") or Organizer()).is_admin

    mine = post_form(client, f"/dashboard/organizers/{me}/admin", {"is_admin": "false"})
    assert mine.status_code == 422
    assert "cannot remove your own admin role" in mine.text
    assert (find_organizer_in(app, "admin@example.org") or Organizer()).is_admin
    assert (
        post_form(client, "/dashboard/organizers/99999/admin", {"is_admin": "true"}).status_code
        == 404
    )

    with app.state.database.read() as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["organizer.admin", "organizer.unadmin"]
