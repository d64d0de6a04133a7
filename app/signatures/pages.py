"""The signing loop's pages: a letter with its sign form, check-your-email, the signer
list, and the verify page. Each route parses, calls one service, renders."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import ValidationError
from starlette.responses import Response

from app import urls
from app.abuse import service as abuse
from app.abuse import web as proof_gate
from app.abuse.proof import MAX_PAYLOAD_CHARS
from app.db import utcnow
from app.errors import CSRFError, InvalidInput
from app.letters import accent, images, translations
from app.letters import service as letters
from app.letters.models import Letter
from app.letters.versions import edit_notice
from app.signatures import charts, public_csv
from app.signatures import service as signatures
from app.signatures.addresses import masked
from app.signatures.breakdown import letter_breakdown
from app.signatures.moderation import public_comments
from app.signatures.schemas import SEARCH_PATTERN, SignatureIn
from app.signatures.timeline import letter_timeline
from app.signlog import service as signlog
from app.web import ratelimit
from app.web.cache import public
from app.web.client import client_of
from app.web.deps import (
    AppSettings,
    PublicReadSession,
    ReadSession,
    WriteSession,
    public_database,
)
from app.web.rendering import render
from app.web.security import check_csrf, sent_by_browser_metadata

router = APIRouter(include_in_schema=False)

SIGN_FIELDS = ("name", "email", "title", "organization", "city", "comment", "display")
FORM_ORDER = (*SIGN_FIELDS[:-1], "comment_public_ok", "display", "show_domain", "name_threshold",
              "contact_ok", proof_gate.FIELD)  # fmt: skip
"""The order of the sign form's fields: the error summary lists problems in it."""
# What the service's refusals are called in templates (signatures/_errors.html).
SERVICE_ERRORS = {
    signatures.REQUIRED: "required",
    signatures.ANONYMOUS_NOT_ALLOWED: "anonymous_not_allowed",
}

# Short-lived cookies that carry a moment from one page to the next in this browser
# only: never in the URL, where it would be shared, logged or bookmarked.
THANKS_COOKIE = "thanks"  # the letter page after confirming: thank-you, no sign form
SENT_TO_COOKIE = "sent_to"  # the check-email page: where the link went, masked
FLASH_SECONDS = 600

# The sign form's traps (app.abuse.service.form_trap): a field people never see, and
# the signed moment the form was shown.
HONEYPOT_FIELD = "homepage"
RENDERED_FIELD = "form_rendered"


def _flash(response: Response, request: Request, name: str, value: str, path: str) -> None:
    response.set_cookie(
        name,
        quote(value),
        max_age=FLASH_SECONDS,
        path=path,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.secure_cookies,
    )


def _read_flash(request: Request, response: Response, name: str, path: str) -> str:
    """The flash cookie's value (shown once: the response deletes it), or ""."""
    value = unquote(request.cookies.get(name, ""))[:300]
    if value:
        response.delete_cookie(name, path=path, httponly=True, samesite="lax")
        response.headers["cache-control"] = "no-store"
    return value


def _no_store(response: Response) -> Response:
    """For pages that show a signer's own data or a live link: never cached."""
    response.headers["cache-control"] = "no-store"
    return response


def _letter_page(
    request: Request,
    session: ReadSession,
    slug: str,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, dict[str, Any]] | None = None,
    status_code: int = 200,
    rendered: str = "",
    public_page: bool = False,
) -> Response:
    """The letter's page. `rendered`: the form's render-time token to carry over when
    a refused form is shown again (the person's time started when they first saw it).

    The page as GET shows it is the same for everyone (cached: app/web/cache.py), so its
    form carries no CSRF token: browsers prove the POST's origin (`check_csrf`). A
    refused form, shown again, carries one, for a browser that proves nothing."""
    found = letters.get_public_letter(session, slug=slug)
    letter = found.letter
    secret = request.app.state.settings.secret
    if not rendered or abuse.rendered_at(secret, rendered) is None:
        rendered = abuse.form_timestamp(secret)
    if form is not None and errors:
        # A refused form: the letter's own rules too, so every problem shows at once.
        errors = _in_form_order({**_rule_errors(letter, form), **errors})
    breakdown = letter_breakdown(session, letter=letter) if letter.show_signers else None
    timeline = letter_timeline(session, letter=letter, count=found.signature_count)
    recent = (
        signatures.recent_public_signers(session, letter_id=letter.id)
        if letter.show_signers
        else []
    )
    path = f"/letters/{found.letter.slug}"
    signed = request.cookies.get(THANKS_COOKIE) == quote(found.letter.slug)
    response = render(
        request,
        "letters/detail.html",
        {
            "letter": found.letter,
            "count": found.signature_count,
            "recent": recent,
            "is_open": found.letter.is_open(utcnow()),
            "form": form or {"display": "public"},
            "errors": errors or {},
            "token_in_form": form is not None,
            "signed": signed,
            "share_url": urls.letter_url(request.app.state.settings.base_url, found.letter.slug),
            "edit_notice": edit_notice(session, letter=letter),
            "comments": public_comments(session, letter_id=letter.id),
            "breakdown": breakdown,
            "timeline": timeline,
            "charts": charts.letter_charts(timeline, breakdown),
            "honeypot_field": HONEYPOT_FIELD,
            "rendered_field": RENDERED_FIELD,
            "form_rendered": rendered,
            "proof_of_work": proof_gate.asked_for(
                request, request.app.state.settings, found.letter.slug
            ),
            # What this reader reads: the text in their language, the header image, the
            # accent colour's stylesheet (app/letters/looks.py).
            "text": translations.localized(session, letter=letter),
            "header_image": images.header_of(session, letter_id=letter.id),
            "theme_css": accent.theme_path(letter.accent_color) if letter.accent_color else None,
            # The public log's line under the count (signlog/_checkpoint_line.html): two
            # indexed reads, the latest checkpoint and the changes queued for the next.
            "log_checkpoint": signlog.latest(
                session, request.app.state.settings, letter_id=letter.id, slug=letter.slug
            ),
            "log_queued": signlog.unsequenced(session, letter_id=letter.id),
        },
        status_code=status_code,
    )
    if signed:
        _read_flash(request, response, THANKS_COOKIE, path)
    elif public_page:
        public(response, request.app.state.settings, ignoring=rendered)
    return response


@router.get("/letters/{slug}")
def letter_detail(request: Request, session: PublicReadSession, slug: str) -> Response:
    return _letter_page(request, session, slug, public_page=True)


def _rule_errors(letter: Letter, form: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _service_errors(signatures.signer_rule_errors(letter, form))


def _service_errors(fields: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The service's field errors for the form: known codes become message types the
    templates word; any other text (an email domain refused) is shown as written."""
    return {
        field: {"type": SERVICE_ERRORS[code]}
        if code in SERVICE_ERRORS
        else {"type": "refused", "message": code}
        for field, code in fields.items()
    }


def _in_form_order(errors: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rank = {field: n for n, field in enumerate(FORM_ORDER)}
    return dict(sorted(errors.items(), key=lambda item: rank.get(item[0], len(rank))))


def _form_errors(exc: ValidationError) -> dict[str, dict[str, Any]]:
    errors: dict[str, dict[str, Any]] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "form"
        errors.setdefault(field, {"type": error["type"], **error.get("ctx", {})})
    return errors


# The rate limit runs first, before the request takes its session (no database work).
@router.post("/letters/{slug}/sign", dependencies=[Depends(ratelimit.limit_signing)])
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
    comment_public_ok: Annotated[str | None, Form()] = None,
    display: Annotated[str, Form()] = "public",
    show_domain: Annotated[str | None, Form()] = None,
    name_threshold: Annotated[str, Form()] = "",
    contact_ok: Annotated[str | None, Form()] = None,
    homepage: Annotated[str, Form(alias=HONEYPOT_FIELD)] = "",
    form_rendered: Annotated[str, Form(alias=RENDERED_FIELD)] = "",
    altcha: Annotated[str, Form(max_length=MAX_PAYLOAD_CHARS)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    form: dict[str, Any] = dict(zip(SIGN_FIELDS, (name, email, title, organization, city,
                                                  comment, display), strict=True))  # fmt: skip
    form["contact_ok"] = contact_ok is not None
    form["comment_public_ok"] = comment_public_ok is not None
    form["show_domain"] = show_domain is not None
    form["name_threshold"] = name_threshold

    def refused(errors: dict[str, dict[str, Any]]) -> Response:
        # The form again, with the time it was first shown (`form_rendered`) kept.
        return _letter_page(
            request,
            session,
            slug,
            form=form,
            errors=errors,
            status_code=422,
            rendered=form_rendered,
        )

    try:
        check_csrf(request, csrf_token)
    except CSRFError:
        if sent_by_browser_metadata(request):
            raise  # another site's form
        # A browser that says nothing of where the POST came from, and had no token
        # (the public form carries none): the form again, with a token, to send again.
        return refused({"form": {"type": "confirm_again"}})
    try:
        data = SignatureIn.model_validate(form)
    except ValidationError as exc:
        return refused(_form_errors(exc))
    # A trapped form gets every check and the same answer as anyone's; nothing is kept.
    trapped = abuse.form_trap(
        settings.secret,
        honeypot=homepage,
        timestamp=form_rendered,
        min_seconds=settings.form_min_seconds,
    )
    source = abuse.source_hash(settings.secret, client_of(request))
    try:
        # Proof of work, when asked for, before any work on the address.
        proof_gate.require_proof(request, session, settings, slug=slug, payload=altcha)
        signatures.sign_letter(
            session, slug=slug, data=data, settings=settings, source_hash=source, trapped=trapped
        )
    except InvalidInput as exc:  # the letter's rules or the proof: nothing was stored
        return refused(_service_errors(exc.fields))
    session.commit()  # in this thread, at once (D183): on SQLite the write turn is free
    check_email_path = f"/letters/{slug}/check-email"
    response = RedirectResponse(check_email_path, status_code=303)
    _flash(response, request, SENT_TO_COOKIE, masked(data.email), check_email_path)
    return response


@router.get("/letters/{slug}/check-email")
def check_email(
    request: Request, session: ReadSession, settings: AppSettings, slug: str
) -> Response:
    found = letters.get_public_letter(session, slug=slug)
    sent_to = unquote(request.cookies.get(SENT_TO_COOKIE, ""))[:300]
    response = render(
        request,
        "signatures/check_email.html",
        {
            "letter": found.letter,
            "text": translations.localized(session, letter=found.letter),
            "max_age_days": settings.verify_max_age_days,
            "sent_to": sent_to,
            "email_cap": settings.email_cap[0],
            "email_window_minutes": int(settings.email_cap[1].total_seconds() // 60),
        },
    )
    return _no_store(response)


@router.get("/letters/{slug}/signers")
def signer_list(
    request: Request,
    session: PublicReadSession,
    settings: AppSettings,
    slug: str,
    q: Annotated[str, Query(max_length=100, pattern=SEARCH_PATTERN)] = "",
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    found = letters.get_public_letter(session, slug=slug)
    if not found.letter.show_signers:  # the tally only, as on the letter page
        context = {
            "letter": found.letter,
            "count": found.signature_count,
            "text": translations.localized(session, letter=found.letter),
        }
        return public(render(request, "signatures/signers_not_public.html", context), settings)
    position = signatures.decode_cursor(settings, after) if after else None
    query, search_error = q.strip(), None
    try:
        page, next_after = signatures.list_public_signatures(
            session, letter_id=found.letter.id, query=query, after=position
        )
    except InvalidInput as exc:
        # Too short to search: say so by the search box, and list everyone.
        search_error = exc.detail
        page, next_after = signatures.list_public_signatures(
            session, letter_id=found.letter.id, after=position
        )
    response = render(
        request,
        "letters/signers.html",
        {
            "letter": found.letter,
            "count": found.signature_count,
            "text": translations.localized(session, letter=found.letter),
            "signers": page,
            "q": query,
            "search_error": search_error,
            "next_cursor": signatures.encode_cursor(settings, next_after) if next_after else None,
            "is_first_page": after is None,
        },
        status_code=422 if search_error else 200,
    )
    return response if search_error else public(response, settings)


@router.get("/letters/{slug}/signers.csv", dependencies=[Depends(ratelimit.limit_api)])
def signers_csv(request: Request, session: PublicReadSession, slug: str) -> Response:
    """The public signer list as CSV (app/signatures/public_csv.py), streamed in short
    read sessions of its own after this request's has ended. Not cached: each download
    reads the list as it is. 404 when the organizers do not publish the list."""
    found = letters.get_public_letter(session, slug=slug)
    signatures.require_public_list(found.letter)
    return StreamingResponse(
        public_csv.csv_lines(public_database(request), letter_id=found.letter.id),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{found.letter.slug}-signers.csv"',
            "cache-control": "no-store",
        },
    )


@router.get("/verify/{token}")
def verify_page(
    request: Request, session: ReadSession, settings: AppSettings, token: str
) -> Response:
    found = signatures.read_verification(session, token=token, settings=settings)
    response = render(
        request,
        "signatures/verify.html",
        {
            "letter": found.letter,
            "text": translations.localized(session, letter=found.letter),
            "pending": found.pending,
            "already": found.already,
            "token": token,
        },
    )
    return _no_store(response)


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
    session.commit()  # at once, as the API's confirmation does (D183)
    letter_path = f"/letters/{found.letter_slug}"
    response = RedirectResponse(f"{letter_path}#thanks", status_code=303)
    _flash(response, request, THANKS_COOKIE, found.letter_slug, letter_path)
    return _no_store(response)
