"""A letter's team: everyone with a role sees it; owners invite people by email (their
account is made if they have none, even when registration is closed; RATE_LIMIT_INVITE
per inviting organizer), change roles and remove people. A letter keeps at least one
owner."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from app.errors import InvalidInput
from app.i18n import N_
from app.letters import service as letters
from app.letters.models import Letter
from app.organizers.models import Organizer, Role
from app.organizers.service import Actor
from app.organizers.web import render_dashboard, signed_in
from app.web import ratelimit
from app.web.deps import AppSettings, ReadSession, WriteSession
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)

NOTICES = ("invited", "changed", "removed")


def _page(
    request: Request,
    session: ReadSession,
    letter: Letter,
    role: Role,
    organizer: Organizer,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    error: str = "",
    notice: str = "",
    status_code: int = 200,
) -> Response:
    return render_dashboard(
        request,
        "dashboard/letters/team.html",
        {
            "letter": letter,
            "role": role,
            "members": letters.team_of(session, letter_id=letter.id),
            "me": organizer.id,
            "roles": [item.value for item in (Role.OWNER, Role.EDITOR, Role.VIEWER)],
            "form": form or {"email": "", "role": Role.EDITOR.value},
            "errors": errors or {},
            "error": error,
            "notice": notice if notice in NOTICES else "",
        },
        status_code=status_code,
    )


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        message = N_("Choose owner, editor or viewer.")
        raise InvalidInput(message, fields={"role": message}) from None


@router.get("/dashboard/letters/{slug}/team")
def team_page(request: Request, session: ReadSession, slug: str, notice: str = "") -> Response:
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.VIEWER
    )
    return _page(request, session, letter, role, organizer, notice=notice)


@router.post("/dashboard/letters/{slug}/team")
def invite(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    slug: str,
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    organizer = signed_in(request, session)
    letter, my_role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    # Every invitation an owner may send counts (RATE_LIMIT_INVITE per organizer, all
    # letters and the admins' invitations together): over it, 429 and nothing is sent.
    ratelimit.check(request, ratelimit.INVITE, subject=f"organizer:{organizer.id}")
    try:
        letters.invite_to_team(
            session,
            letter=letter,
            email=email,
            role=_role(role),
            actor=Actor(organizer),
            settings=settings,
        )
    except InvalidInput as exc:
        return _page(
            request,
            session,
            letter,
            my_role,
            organizer,
            form={"email": email[:254], "role": role},
            errors=exc.fields,
            error="" if exc.fields else exc.detail,
            status_code=422,
        )
    return RedirectResponse(f"/dashboard/letters/{letter.slug}/team?notice=invited", 303)


@router.post("/dashboard/letters/{slug}/team/{member_id}/role")
def change_role(
    request: Request,
    session: WriteSession,
    slug: str,
    member_id: int,
    role: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    organizer = signed_in(request, session)
    letter, my_role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    try:
        letters.change_team_role(
            session, letter=letter, organizer_id=member_id, role=_role(role), actor=Actor(organizer)
        )
    except InvalidInput as exc:
        return _page(
            request, session, letter, my_role, organizer, error=exc.detail, status_code=422
        )
    return RedirectResponse(f"/dashboard/letters/{letter.slug}/team?notice=changed", 303)


@router.post("/dashboard/letters/{slug}/team/{member_id}/remove")
def remove(
    request: Request,
    session: WriteSession,
    slug: str,
    member_id: int,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    organizer = signed_in(request, session)
    letter, my_role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    try:
        letters.remove_from_team(
            session, letter=letter, organizer_id=member_id, actor=Actor(organizer)
        )
    except InvalidInput as exc:
        return _page(
            request, session, letter, my_role, organizer, error=exc.detail, status_code=422
        )
    if member_id == organizer.id and not organizer.is_admin:
        return RedirectResponse("/dashboard", 303)  # they left the team: the letter is not theirs
    return RedirectResponse(f"/dashboard/letters/{letter.slug}/team?notice=removed", 303)
