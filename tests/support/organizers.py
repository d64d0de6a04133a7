"""Organizers in tests: accounts with roles, and a TestClient signed in as one.

owner = sign_in_as(client, app, "owner@example.org", letter_slug="letter-1", role=Role.OWNER)
response = post_form(client, "/dashboard/letters/letter-1/close", {})
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.letters.models import Letter
from app.organizers.models import Organizer, Role
from app.organizers.service import create_organizer, grant_role, start_session
from app.organizers.web import session_cookie_name
from app.web.security import csrf_cookie_name


def make_organizer(
    session: Session,
    email: str = "organizer@example.org",
    *,
    is_admin: bool = False,
    letter: Letter | None = None,
    role: Role | None = None,
) -> Organizer:
    """An organizer, with `role` on `letter` when both are given."""
    organizer = create_organizer(session, email=email, is_admin=is_admin)
    if letter is not None and role is not None:
        grant_role(session, letter_id=letter.id, organizer=organizer, role=role)
    session.flush()
    return organizer


def sign_in_as(
    client: TestClient,
    app: FastAPI,
    email: str,
    *,
    is_admin: bool = False,
    letter_slug: str | None = None,
    role: Role | None = None,
) -> int:
    """Makes the organizer (with `role` on the letter `letter_slug`), signs `client` in
    as them, and returns their id. The client's earlier session cookie is replaced."""
    settings = app.state.settings
    with app.state.database.write() as session:
        letter = (
            session.scalar(select(Letter).where(Letter.slug == letter_slug))
            if letter_slug
            else None
        )
        organizer = make_organizer(session, email, is_admin=is_admin, letter=letter, role=role)
        cookie = start_session(session, organizer=organizer, settings=settings)
        organizer_id = organizer.id
    client.cookies.set(session_cookie_name(settings), cookie)
    return organizer_id


def post_form(
    client: TestClient, path: str, data: dict[str, Any] | None = None, **kwargs: Any
) -> Response:
    """A form POST with a valid CSRF pair (cookie and field), redirects not followed."""
    settings = client.app.state.settings  # type: ignore[attr-defined]
    name = csrf_cookie_name(settings.secure_cookies)
    # Reuse the cookie the server set (after any GET of a page with a form); setting a
    # second one beside it would leave two `csrf` cookies in the jar.
    token = next((cookie.value for cookie in client.cookies.jar if cookie.name == name), None)
    if token is None:
        token = secrets.token_urlsafe(32)
        client.cookies.set(name, token)
    return client.post(
        path, data={**(data or {}), "csrf_token": token}, follow_redirects=False, **kwargs
    )
