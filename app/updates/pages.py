"""Updates: the owners' page to write one (and see past ones), and the signer's
unsubscribe page, which is also the RFC 8058 one-click endpoint."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.responses import Response

from app.errors import InvalidToken
from app.letters import service as letters
from app.letters.models import Letter
from app.organizers.models import Role
from app.organizers.service import Actor
from app.organizers.web import private, render_dashboard, signed_in
from app.updates import service as updates
from app.updates.schemas import BODY_MAX_LENGTH, SUBJECT_MAX_LENGTH, UpdateIn
from app.web.deps import AppSettings, ReadSession, WriteSession
from app.web.rendering import render
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)


def _updates_page(
    request: Request,
    session: ReadSession,
    letter: Letter,
    role: Role,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, dict[str, Any]] | None = None,
    preview: Any = None,
    queued: int | None = None,
    duplicate: bool = False,
    status_code: int = 200,
) -> Response:
    return render_dashboard(
        request,
        "dashboard/updates/index.html",
        {
            "letter": letter,
            "role": role,
            "updates": updates.list_updates(session, letter_id=letter.id),
            "recipients": updates.count_recipients(session, letter_id=letter.id),
            "form": form or {},
            "errors": errors or {},
            "preview": preview,
            "queued": queued,
            "duplicate": duplicate,
            "subject_max": SUBJECT_MAX_LENGTH,
            "body_max": BODY_MAX_LENGTH,
        },
        status_code=status_code,
    )


@router.get("/dashboard/letters/{slug}/updates")
def updates_page(
    request: Request,
    session: ReadSession,
    slug: str,
    queued: Annotated[int | None, Query(ge=0)] = None,
    duplicate: Annotated[bool, Query()] = False,
) -> Response:
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.VIEWER
    )
    return _updates_page(request, session, letter, role, queued=queued, duplicate=duplicate)


@router.post("/dashboard/letters/{slug}/updates")
def send_update(
    request: Request,
    session: WriteSession,
    slug: str,
    subject: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "send",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """`action=preview` renders the body and stores nothing; `send` queues the update.
    (The form's first button is Preview, so pressing Enter in the subject previews.)"""
    check_csrf(request, csrf_token)
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    form = {"subject": subject, "body": body}
    try:
        data = UpdateIn.model_validate(form)
    except ValidationError as exc:
        errors = {
            str(error["loc"][0]): {"type": error["type"], **error.get("ctx", {})}
            for error in reversed(exc.errors())  # the first error of each field wins
        }
        return _updates_page(
            request, session, letter, role, form=form, errors=errors, status_code=422
        )
    if action == "preview":
        preview = updates.preview_html(data)
        return _updates_page(request, session, letter, role, form=form, preview=preview)
    queued = updates.queue_update(session, letter=letter, actor=Actor(organizer), data=data)
    where = f"/dashboard/letters/{letter.slug}/updates?queued={queued.recipients}"
    if queued.duplicate:
        where += "&duplicate=true"
    return RedirectResponse(where, status_code=303)


# --- Unsubscribing ---------------------------------------------------------------------


def _invalid_link(request: Request, exc: InvalidToken) -> Response:
    """The update pages' own 400 page: the shared one talks about confirmation links."""
    response = render(request, "updates/invalid_link.html", {"reason": exc.reason}, status_code=400)
    return private(response)


@router.get("/unsubscribe/{token}")
def unsubscribe_page(
    request: Request, session: ReadSession, settings: AppSettings, token: str
) -> Response:
    """Shows a button and changes nothing: mail scanners open every link in an email."""
    try:
        found = updates.read_unsubscribe(session, token=token, settings=settings)
    except InvalidToken as exc:
        return _invalid_link(request, exc)
    response = render(request, "updates/unsubscribe.html", {"found": found, "token": token})
    return private(response)


@router.post("/unsubscribe/{token}")
def unsubscribe(
    request: Request, session: WriteSession, settings: AppSettings, token: str
) -> Response:
    """The page's button, and RFC 8058's one-click unsubscribe: a mail provider POSTs
    `List-Unsubscribe=One-Click` here on the reader's behalf, with no cookies. So, unlike
    every other form, this one has no CSRF check: there is no CSRF cookie to compare, and
    none is needed. The credential is the signed token in the path, which only the email
    holds; a forged request without it does nothing, and one with it can only do what
    the token's holder may do anyway: stop their own updates. The body is not read."""
    try:
        found = updates.unsubscribe(session, token=token, settings=settings)
    except InvalidToken as exc:
        return _invalid_link(request, exc)
    return private(render(request, "updates/unsubscribed.html", {"found": found}))
