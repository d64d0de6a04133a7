"""The signer's private manage page, `/signature/{token}`: see the signature, change how
it is shown, stop updates, withdraw. Each route parses, calls one service, renders.

The link is a credential in the URL: every answer is `no-store`, tells search engines
not to index it (`X-Robots-Tag` and a robots meta tag) and sends no referrer. GET
changes nothing; each change is a POST with the CSRF token, then a redirect back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from app.errors import InvalidInput, InvalidToken
from app.letters.models import NAME_THRESHOLDS
from app.signatures import manage
from app.web.deps import AppSettings, ReadSession, WriteSession
from app.web.errors import error_response
from app.web.rendering import render
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)

DONE = ("display", "updates", "withdrawn", "unchanged")
"""What the page thanks the signer for after a change (`?done=`)."""


def _private(response: Response) -> Response:
    """(`Referrer-Policy: no-referrer` is on every response: SecurityMiddleware.)"""
    response.headers["cache-control"] = "no-store"
    response.headers["x-robots-tag"] = "noindex, nofollow"
    return response


def _link_problem(request: Request, exc: InvalidToken) -> Response:
    """A tampered link gets the app's invalid-link page; one that points at nothing, or
    at a submission never confirmed, gets the manage page's own words."""
    if exc.reason == "invalid":
        return _private(error_response(request, exc))
    return _private(
        render(
            request,
            "signatures/manage_gone.html",
            {"reason": exc.reason},
            status_code=exc.status_code,
        )
    )


def _page(
    request: Request,
    session: ReadSession,
    settings: AppSettings,
    token: str,
    *,
    done: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    try:
        found = manage.read_signature(session, token=token, settings=settings)
    except InvalidToken as exc:
        return _link_problem(request, exc)
    context = {
        "found": found,
        "token": token,
        "done": done if done in DONE else "",
        "error": error,
        "thresholds": NAME_THRESHOLDS,
    }
    return _private(render(request, "signatures/manage.html", context, status_code=status_code))


def _back(token: str, done: str) -> Response:
    return _private(RedirectResponse(f"/signature/{token}?done={done}", status_code=303))


@router.get("/signature/{token}")
def manage_page(
    request: Request,
    session: ReadSession,
    settings: AppSettings,
    token: str,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """Shows the signature and its choices; changes nothing (mail scanners open links)."""
    return _page(request, session, settings, token, done=done)


@router.post("/signature/{token}/display")
def change_display(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    token: str,
    display: Annotated[str, Form(max_length=20)] = "",
    show_domain: Annotated[str | None, Form(max_length=10)] = None,
    name_threshold: Annotated[str, Form(max_length=10)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    threshold = int(name_threshold) if name_threshold.isdigit() else None
    try:
        changed = manage.change_display(
            session,
            token=token,
            settings=settings,
            anonymous=display == "anonymous",
            show_domain=show_domain is not None,
            name_threshold=threshold,
        )
    except InvalidToken as exc:
        return _link_problem(request, exc)
    except InvalidInput as exc:
        return _page(request, session, settings, token, error=exc.detail, status_code=422)
    return _back(token, "display" if changed else "unchanged")


@router.post("/signature/{token}/stop-updates")
def stop_updates(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    token: str,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    try:
        changed = manage.stop_updates(session, token=token, settings=settings)
    except InvalidToken as exc:
        return _link_problem(request, exc)
    return _back(token, "updates" if changed else "unchanged")


@router.post("/signature/{token}/withdraw")
def withdraw(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    token: str,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    try:
        manage.withdraw(session, token=token, settings=settings)
    except InvalidToken as exc:
        return _link_problem(request, exc)
    return _back(token, "withdrawn")
