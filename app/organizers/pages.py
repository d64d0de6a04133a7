"""Signing in and out, and the admins' list of organizers.

/login takes an address and always answers the same way (a "check your email" page);
the worker sends the link. /login/{token} shows a button (GET changes nothing: mail
scanners open links) and signs in on POST, once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.responses import Response

from app.errors import InvalidInput, InvalidToken
from app.organizers import logins
from app.organizers import service as organizers
from app.organizers.schemas import InviteIn, LoginIn
from app.organizers.web import (
    clear_session_cookie,
    private,
    render_dashboard,
    session_cookie,
    set_session_cookie,
    signed_in,
)
from app.web import ratelimit
from app.web.deps import AppSettings, ReadSession, WriteSession
from app.web.rendering import render
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)

ADMIN_PAGE = "/dashboard/organizers"
NOTICES = {"invited": "invited", "admin": "admin", "unadmin": "unadmin"}


def _form_errors(exc: ValidationError) -> dict[str, dict[str, Any]]:
    errors: dict[str, dict[str, Any]] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "form"
        errors.setdefault(field, {"type": error["type"], **error.get("ctx", {})})
    return errors


# --- Signing in ----------------------------------------------------------------------


def _login_form(
    request: Request,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, dict[str, Any]] | None = None,
    status_code: int = 200,
) -> Response:
    context = {"form": form or {}, "errors": errors or {}}
    return render(request, "organizers/login.html", context, status_code=status_code)


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_form(request)


def _login_limits(request: Request, email: Annotated[str, Form()] = "") -> None:
    """Per client, then per address (any address alike, whether it is an organizer's
    or not: the limit tells nothing). Before the request takes its session."""
    ratelimit.check(request, ratelimit.LOGIN_CLIENT)
    if email.strip():
        ratelimit.check(request, ratelimit.LOGIN_ADDRESS, address=email)


@router.post("/login", dependencies=[Depends(_login_limits)])
def ask_for_link(
    request: Request,
    session: WriteSession,
    email: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    try:
        data = LoginIn.model_validate({"email": email})
    except ValidationError as exc:
        return _login_form(
            request, form={"email": email}, errors=_form_errors(exc), status_code=422
        )
    logins.request_login_link(session, email=data.email)
    return RedirectResponse("/login/sent", status_code=303)


@router.get("/login/sent")
def link_sent(request: Request) -> Response:
    context = {"minutes": logins.LINK_MAX_AGE_SECONDS // 60, "per_hour": logins.EMAILS_PER_WINDOW}
    return private(render(request, "organizers/login_sent.html", context))


def _bad_link(request: Request, exc: InvalidToken) -> Response:
    context = {"reason": exc.reason, "minutes": logins.LINK_MAX_AGE_SECONDS // 60}
    return private(
        render(request, "organizers/login_invalid.html", context, status_code=exc.status_code)
    )


@router.get("/login/{token}")
def link_page(
    request: Request, session: ReadSession, settings: AppSettings, token: str
) -> Response:
    try:
        found = logins.check_login_link(session, token=token, settings=settings)
    except InvalidToken as exc:
        return _bad_link(request, exc)
    context = {"token": token, "email": found.organizer.email}
    return private(render(request, "organizers/login_confirm.html", context))


@router.post("/login/{token}")
def sign_in(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    token: str,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    try:
        organizer = logins.use_login_link(session, token=token, settings=settings)
    except InvalidToken as exc:
        return _bad_link(request, exc)
    # A browser signed in as someone else is signed out of that session first.
    organizers.end_session(session, cookie=session_cookie(request), settings=settings)
    cookie = organizers.start_session(session, organizer=organizer, settings=settings)
    response = RedirectResponse("/dashboard", status_code=303)
    set_session_cookie(response, request, cookie)
    return private(response)


# --- Signing out ---------------------------------------------------------------------


@router.get("/logout")
def logout_form(request: Request) -> Response:
    return private(render(request, "organizers/logout.html"))


@router.post("/logout")
def logout(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    organizers.end_session(session, cookie=session_cookie(request), settings=settings)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return private(response)


# --- Admins: organizers --------------------------------------------------------------


def _admin_page(
    request: Request,
    session: ReadSession,
    *,
    notice: str = "",
    problem: str = "",
    form: dict[str, Any] | None = None,
    errors: dict[str, dict[str, Any]] | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "organizers": organizers.list_organizers(session),
        "notice": notice,
        "problem": problem,
        "form": form or {},
        "errors": errors or {},
    }
    return render_dashboard(request, "organizers/admin.html", context, status_code=status_code)


@router.get(ADMIN_PAGE)
def admin_page(request: Request, session: ReadSession, done: str = "") -> Response:
    organizers.require_admin(signed_in(request, session))
    return _admin_page(request, session, notice=NOTICES.get(done, ""))


@router.post(f"{ADMIN_PAGE}/invite")
def invite(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    email: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    admin = signed_in(request, session)
    organizers.require_admin(admin)
    # Counted with the admin's team invitations (RATE_LIMIT_INVITE per organizer).
    ratelimit.check(request, ratelimit.INVITE, subject=f"organizer:{admin.id}")
    try:
        data = InviteIn.model_validate({"email": email})
        organizers.invite_organizer(
            session, email=data.email, actor=organizers.Actor(admin), settings=settings
        )
    except ValidationError as exc:
        errors = _form_errors(exc)
    except InvalidInput as exc:
        errors = {name: {"type": "exists", "message": m} for name, m in exc.fields.items()}
    else:
        return RedirectResponse(f"{ADMIN_PAGE}?done=invited", status_code=303)
    return _admin_page(request, session, form={"email": email}, errors=errors, status_code=422)


@router.post(f"{ADMIN_PAGE}/{{organizer_id}}/admin")
def make_admin(
    request: Request,
    session: WriteSession,
    organizer_id: int,
    is_admin: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    admin = signed_in(request, session)
    organizers.require_admin(admin)
    wanted = is_admin == "true"
    try:
        organizers.set_admin(
            session, organizer_id=organizer_id, is_admin=wanted, actor=organizers.Actor(admin)
        )
    except InvalidInput as exc:
        return _admin_page(request, session, problem=exc.detail, status_code=422)
    done = "admin" if wanted else "unadmin"
    return RedirectResponse(f"{ADMIN_PAGE}?done={done}", status_code=303)
