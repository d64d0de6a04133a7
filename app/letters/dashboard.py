"""The organizers' letters: the list, a new letter, a letter's overview and edit form,
its lifecycle (publish, close, reopen, archive) and its audit log.

Who may do what: any role sees a letter's overview; editors and owners edit it; only
owners change its status and read its audit log. Without a role the letter does not
exist (404); signed out, pages send the browser to /login."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from app.db import utcnow
from app.errors import InvalidInput
from app.i18n import gettext as _
from app.letters import service as letters
from app.letters.models import (
    DEFAULT_CONTACT_RETENTION_DAYS,
    SIGNER_FIELDS,
    FieldRule,
    Letter,
    SignerKind,
)
from app.letters.schemas import (
    ANONYMIZE_MAX_MONTHS,
    BODY_MAX,
    CONTACT_RETENTION_MAX_DAYS,
    LetterCreate,
    LetterFields,
    domain_names_text,
    parse,
    parse_closes_at,
)
from app.organizers.models import Role
from app.organizers.service import Actor
from app.organizers.web import render_dashboard, signed_in
from app.web.deps import ReadSession, WriteSession
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)

NOTICES = ("created", "saved", "new_version", "unchanged", "publish", "close", "reopen", "archive")
"""What the overview may say after a change (`?notice=`): a fixed set of words."""


class LetterForm(BaseModel):
    """The letter form as sent: text only; `parse` turns it into `LetterCreate` or
    `LetterFields` with an error message for each field that is wrong."""

    model_config = ConfigDict(extra="ignore")

    csrf_token: str = ""
    action: str = "save"
    slug: str = ""
    title: str = ""
    summary: str = ""
    body: str = ""
    addressed_to: str = ""
    goal: str = ""
    closes_at: str = ""
    from_name: str = ""
    from_url: str = ""
    field_title: str = FieldRule.OPTIONAL.value
    field_organization: str = FieldRule.OPTIONAL.value
    field_city: str = FieldRule.OPTIONAL.value
    field_comment: str = FieldRule.OFF.value
    allow_anonymous: str | None = None
    show_signers: str | None = None
    forbidden_domains: str = ""
    required_domains: str = ""
    signers: str = SignerKind.PEOPLE.value
    domain_names: str = ""
    contact_retention_days: str = str(DEFAULT_CONTACT_RETENTION_DAYS)
    anonymize_after_months: str = ""

    def shown(self) -> dict[str, Any]:
        """The values to show again in the form."""
        values = self.model_dump(exclude={"csrf_token", "action"})
        values["allow_anonymous"] = self.allow_anonymous is not None
        values["show_signers"] = self.show_signers is not None
        return values

    def letter_values(self) -> dict[str, Any]:
        """The values as the schemas name them."""
        values = self.shown()
        values["body_markdown"] = values.pop("body")
        return values


def _shown(letter: Letter) -> dict[str, Any]:
    """A letter's fields as the form shows them."""
    values = letters.current_fields(letter)
    values["body"] = values.pop("body_markdown")
    values["goal"] = "" if letter.goal is None else str(letter.goal)
    values["closes_at"] = _local(letter.closes_at)
    values["slug"] = letter.slug
    values["signers"] = letter.signers.value
    values["domain_names"] = domain_names_text(letter.domain_names or {})
    values["contact_retention_days"] = str(letter.contact_retention_days)
    values["anonymize_after_months"] = (
        "" if letter.anonymize_after_months is None else str(letter.anonymize_after_months)
    )
    return values


def _local(moment: datetime | None) -> str:
    """A UTC time as a datetime-local input shows it."""
    return moment.strftime("%Y-%m-%dT%H:%M") if moment else ""


def _form_page(
    request: Request,
    *,
    form: dict[str, Any],
    letter: Letter | None = None,
    role: Role | None = None,
    errors: dict[str, str] | None = None,
    message: str = "",
    preview: str | None = None,
    status_code: int = 200,
) -> Response:
    return render_dashboard(
        request,
        "dashboard/letters/form.html",
        {
            "form": form,
            "letter": letter,
            "role": role,
            "errors": errors or {},
            "message": message,
            "preview": preview,
            "signer_fields": SIGNER_FIELDS,
            "field_rules": [rule.value for rule in FieldRule],
            "body_max": BODY_MAX,
            "signer_kinds": [kind.value for kind in SignerKind],
            "retention_max_days": CONTACT_RETENTION_MAX_DAYS,
            "anonymize_max_months": ANONYMIZE_MAX_MONTHS,
        },
        status_code=status_code,
    )


def _preview(body: str) -> tuple[str | None, dict[str, str]]:
    if len(body) > BODY_MAX:
        return None, {"body": _("Use at most %(n)s characters.") % {"n": BODY_MAX}}
    return letters.render_markdown(body), {}


def _invalid(exc: InvalidInput) -> tuple[dict[str, str], str]:
    """Field errors, and a message for the page when the error is about no field."""
    return exc.fields, "" if exc.fields else exc.detail


# --- the list --------------------------------------------------------------------------


@router.get("/dashboard")
def dashboard(request: Request, session: ReadSession) -> Response:
    organizer = signed_in(request, session)
    found = letters.dashboard_letters(session, organizer=organizer)
    archived = letters.LetterState.ARCHIVED
    return render_dashboard(
        request,
        "dashboard/letters/index.html",
        {
            "current": [item for item in found if item.state != archived],
            "archived": [item for item in found if item.state == archived],
        },
    )


# --- a new letter ------------------------------------------------------------------------


@router.get("/dashboard/letters/new")
def new_letter_form(request: Request, session: ReadSession) -> Response:
    signed_in(request, session)
    return _form_page(
        request, form=LetterForm().shown() | {"allow_anonymous": True, "show_signers": True}
    )


@router.post("/dashboard/letters/new")
def new_letter(
    request: Request, session: WriteSession, form: Annotated[LetterForm, Form()]
) -> Response:
    check_csrf(request, form.csrf_token)
    organizer = signed_in(request, session)
    if form.action == "preview":
        preview, errors = _preview(form.body)
        return _form_page(
            request,
            form=form.shown(),
            preview=preview,
            errors=errors,
            status_code=422 if errors else 200,
        )
    try:
        data = parse(LetterCreate, form.letter_values())
        letter = letters.create_letter(session, data=data, actor=Actor(organizer))
    except InvalidInput as exc:
        errors, message = _invalid(exc)
        return _form_page(
            request, form=form.shown(), errors=errors, message=message, status_code=422
        )
    return RedirectResponse(f"/dashboard/letters/{letter.slug}?notice=created", status_code=303)


# --- one letter ----------------------------------------------------------------------------


def _overview(
    request: Request,
    session: ReadSession,
    letter: Letter,
    role: Role,
    *,
    notice: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    now = utcnow()
    return render_dashboard(
        request,
        "dashboard/letters/overview.html",
        {
            "letter": letter,
            "role": role,
            "count": letters.signature_count(session, letter_id=letter.id),
            "state": letters.letter_state(letter, now),
            "transitions": letters.available_transitions(letter, now) if role == Role.OWNER else [],
            "notice": notice if notice in NOTICES else "",
            "error": error,
            "closes_at_passed": letter.closes_at is not None and letter.closes_at <= now,
        },
        status_code=status_code,
    )


@router.get("/dashboard/letters/{slug}")
def overview(
    request: Request, session: ReadSession, slug: str, notice: Annotated[str, Query()] = ""
) -> Response:
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.VIEWER
    )
    return _overview(request, session, letter, role, notice=notice)


@router.get("/dashboard/letters/{slug}/edit")
def edit_form(request: Request, session: ReadSession, slug: str) -> Response:
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.EDITOR
    )
    return _form_page(request, form=_shown(letter), letter=letter, role=role)


@router.post("/dashboard/letters/{slug}/edit")
def edit(
    request: Request, session: WriteSession, slug: str, form: Annotated[LetterForm, Form()]
) -> Response:
    check_csrf(request, form.csrf_token)
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.EDITOR
    )
    shown = form.shown() | {"slug": letter.slug}
    if form.action == "preview":
        preview, errors = _preview(form.body)
        return _form_page(
            request,
            form=shown,
            letter=letter,
            role=role,
            preview=preview,
            errors=errors,
            status_code=422 if errors else 200,
        )
    try:
        data = parse(LetterFields, form.letter_values())
        edited = letters.edit_letter(session, letter=letter, data=data, actor=Actor(organizer))
    except InvalidInput as exc:
        errors, message = _invalid(exc)
        return _form_page(
            request,
            form=shown,
            letter=letter,
            role=role,
            errors=errors,
            message=message,
            status_code=422,
        )
    notice = "new_version" if edited.new_version else "saved" if edited.changed else "unchanged"
    return RedirectResponse(f"/dashboard/letters/{letter.slug}?notice={notice}", status_code=303)


def _transition(
    request: Request,
    session: WriteSession,
    slug: str,
    transition: letters.Transition,
    csrf_token: str,
    *,
    closes_at: str = "",
    clear_closes_at: bool = False,
) -> Response:
    check_csrf(request, csrf_token)
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    try:
        letters.change_status(
            session,
            letter=letter,
            transition=transition,
            actor=Actor(organizer),
            closes_at=parse_closes_at(closes_at),
            clear_closes_at=clear_closes_at,
        )
    except InvalidInput as exc:
        message = next(iter(exc.fields.values()), exc.detail)
        return _overview(request, session, letter, role, error=message, status_code=422)
    return RedirectResponse(
        f"/dashboard/letters/{letter.slug}?notice={transition.value}", status_code=303
    )


CsrfToken = Annotated[str, Form()]


@router.post("/dashboard/letters/{slug}/publish")
def publish(
    request: Request, session: WriteSession, slug: str, csrf_token: CsrfToken = ""
) -> Response:
    return _transition(request, session, slug, letters.Transition.PUBLISH, csrf_token)


@router.post("/dashboard/letters/{slug}/close")
def close(
    request: Request, session: WriteSession, slug: str, csrf_token: CsrfToken = ""
) -> Response:
    return _transition(request, session, slug, letters.Transition.CLOSE, csrf_token)


@router.post("/dashboard/letters/{slug}/reopen")
def reopen(
    request: Request,
    session: WriteSession,
    slug: str,
    csrf_token: CsrfToken = "",
    closes_at: Annotated[str, Form()] = "",
    no_closing_time: Annotated[str | None, Form()] = None,
) -> Response:
    """Reopens a closed or archived letter. A closing time in the past must be replaced
    (`closes_at`) or dropped (`no_closing_time`)."""
    return _transition(
        request,
        session,
        slug,
        letters.Transition.REOPEN,
        csrf_token,
        closes_at=closes_at,
        clear_closes_at=no_closing_time is not None,
    )


@router.post("/dashboard/letters/{slug}/archive")
def archive(
    request: Request, session: WriteSession, slug: str, csrf_token: CsrfToken = ""
) -> Response:
    return _transition(request, session, slug, letters.Transition.ARCHIVE, csrf_token)


# --- the audit log ---------------------------------------------------------------------------


@router.get("/dashboard/letters/{slug}/audit")
def audit(
    request: Request,
    session: ReadSession,
    slug: str,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    page = letters.audit_page(session, letter_id=letter.id, before=before)
    return render_dashboard(
        request,
        "dashboard/letters/audit.html",
        {"letter": letter, "role": role, "page": page, "first_page": before is None},
    )
