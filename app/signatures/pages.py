"""The signing loop's pages: a letter with its sign form, check-your-email, the signer
list, and the verify page. Each route parses, calls one service, renders."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.responses import Response

from app import urls
from app.db import utcnow
from app.letters import service as letters
from app.signatures import service as signatures
from app.signatures.models import SignatureStatus
from app.signatures.schemas import SEARCH_PATTERN, SignatureIn
from app.web.deps import AppSettings, ReadSession, WriteSession
from app.web.rendering import render
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)

SIGN_FIELDS = ("name", "email", "title", "organization", "city", "comment", "display")


def _letter_page(
    request: Request,
    session: ReadSession,
    slug: str,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, dict[str, Any]] | None = None,
    status_code: int = 200,
) -> Response:
    found = letters.get_public_letter(session, slug=slug)
    recent = signatures.recent_public_signers(session, letter_id=found.letter.id)
    return render(
        request,
        "letters/detail.html",
        {
            "letter": found.letter,
            "count": found.signature_count,
            "recent": recent,
            "is_open": found.letter.is_open(utcnow()),
            "form": form or {"display": "public"},
            "errors": errors or {},
            "signed": request.query_params.get("signed") == "1",
            "share_url": urls.letter_url(request.app.state.settings.base_url, found.letter.slug),
        },
        status_code=status_code,
    )


@router.get("/letters/{slug}")
def letter_detail(request: Request, session: ReadSession, slug: str) -> Response:
    return _letter_page(request, session, slug)


def _form_errors(exc: ValidationError) -> dict[str, dict[str, Any]]:
    errors: dict[str, dict[str, Any]] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "form"
        errors.setdefault(field, {"type": error["type"], **error.get("ctx", {})})
    return errors


@router.post("/letters/{slug}/sign")
def sign(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    slug: str,
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    organization: Annotated[str, Form()] = "",
    city: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    display: Annotated[str, Form()] = "public",
    contact_ok: Annotated[str | None, Form()] = None,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    form: dict[str, Any] = dict(zip(SIGN_FIELDS, (name, email, title, organization, city,
                                                  comment, display), strict=True))  # fmt: skip
    form["contact_ok"] = contact_ok is not None
    try:
        data = SignatureIn.model_validate(form)
    except ValidationError as exc:
        return _letter_page(
            request, session, slug, form=form, errors=_form_errors(exc), status_code=422
        )
    signatures.sign_letter(session, slug=slug, data=data, settings=settings)
    return RedirectResponse(f"/letters/{slug}/check-email", status_code=303)


@router.get("/letters/{slug}/check-email")
def check_email(
    request: Request, session: ReadSession, settings: AppSettings, slug: str
) -> Response:
    found = letters.get_public_letter(session, slug=slug)
    return render(
        request,
        "signatures/check_email.html",
        {"letter": found.letter, "max_age_days": settings.verify_max_age_days},
    )


@router.get("/letters/{slug}/signers")
def signer_list(
    request: Request,
    session: ReadSession,
    slug: str,
    q: Annotated[str, Query(max_length=100, pattern=SEARCH_PATTERN)] = "",
    after: Annotated[int | None, Query(ge=1, le=signatures.MAX_CURSOR)] = None,
) -> Response:
    found = letters.get_public_letter(session, slug=slug)
    page, next_cursor = signatures.list_public_signatures(
        session, letter_id=found.letter.id, query=q.strip(), after=after
    )
    return render(
        request,
        "letters/signers.html",
        {
            "letter": found.letter,
            "count": found.signature_count,
            "signers": page,
            "q": q.strip(),
            "next_cursor": next_cursor,
            "is_first_page": after is None,
        },
    )


@router.get("/verify/{token}")
def verify_page(
    request: Request, session: ReadSession, settings: AppSettings, token: str
) -> Response:
    found = signatures.read_verification(session, token=token, settings=settings)
    return render(
        request,
        "signatures/verify.html",
        {
            "letter": found.letter,
            "signature": found.signature,
            "already": found.signature.status == SignatureStatus.VERIFIED,
            "token": token,
        },
    )


@router.post("/verify/{token}")
def verify(
    request: Request,
    session: WriteSession,
    settings: AppSettings,
    token: str,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    found = signatures.verify_signature(session, token=token, settings=settings)
    return RedirectResponse(f"/letters/{found.letter.slug}?signed=1#thanks", status_code=303)
