"""The organizers' side of HTTP: the session cookie, and who is signed in.

Dashboard routes call `signed_in(request, session)` with the request's one session
(a route takes ReadSession or WriteSession, never both) and render with `render_dashboard`,
which marks the page private and uncacheable."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from app.config import Settings
from app.organizers.models import Organizer
from app.organizers.service import signed_in_organizer
from app.web.rendering import render


def session_cookie_name(settings: Settings) -> str:
    return "__Host-session" if settings.secure_cookies else "session"


def session_cookie(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return request.cookies.get(session_cookie_name(settings), "")


def signed_in(request: Request, session: Session) -> Organizer:
    """The signed-in organizer, or NotSignedIn (pages answer it with /login)."""
    settings: Settings = request.app.state.settings
    organizer = signed_in_organizer(session, cookie=session_cookie(request), settings=settings)
    request.state.organizer = organizer
    return organizer


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    settings: Settings = request.app.state.settings
    response.set_cookie(
        session_cookie_name(settings),
        value,
        max_age=settings.organizer_session_days * 86400,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    settings: Settings = request.app.state.settings
    response.delete_cookie(
        session_cookie_name(settings),
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )


def private(response: Response) -> Response:
    response.headers["cache-control"] = "no-store"
    return response


def render_dashboard(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """A dashboard page: the signed-in organizer is in the context as `organizer`; never
    cached."""
    base = {"organizer": getattr(request.state, "organizer", None)}
    return private(render(request, name, {**base, **(context or {})}, status_code=status_code))
