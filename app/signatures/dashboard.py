"""The organizers' signature pages: the moderation list and its actions, bulk
invalidation, and the CSV export. Each route parses, calls one or two services,
renders or redirects.

Who may do what: any role sees the list; editors and owners hide, unhide, remove and
restore; owners approve comments, mark signatures confirmed by the organizers,
invalidate in bulk and export."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.responses import Response

from app.errors import InvalidInput
from app.letters.models import Letter
from app.letters.service import get_letter_for_organizer
from app.organizers.models import Organizer, Role
from app.organizers.service import Actor
from app.organizers.web import private, render_dashboard, signed_in
from app.signatures import export, moderation
from app.signatures.models import RemovalReason
from app.signatures.service import decode_cursor, encode_cursor
from app.web.deps import AppSettings, ReadSession, WriteSession
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)

BASE = "/dashboard/letters/{slug}/signatures"
Text = Annotated[str, Query(max_length=1000)]
FormText = Annotated[str, Form(max_length=1000)]
Position = Annotated[int, Path(ge=1, le=moderation.MAX_POSITION)]
DONE = {
    "hidden",
    "unhidden",
    "removed",
    "restored",
    "approved",
    "unapproved",
    "confirmed",
    "unconfirmed",
    "unchanged",
    "bulk",
}
"""What a redirect after an action may tell the list page (a fixed set: no free text
travels in the URL)."""


def _letter(
    request: Request, session: ReadSession, slug: str, needed: Role
) -> tuple[Organizer, Letter, Role]:
    organizer = signed_in(request, session)
    letter, role = get_letter_for_organizer(session, slug=slug, organizer=organizer, needed=needed)
    return organizer, letter, role


def _list_url(slug: str, back: str = "", **facts: Any) -> str:
    """The list page, with the filter it was left on (only known parameters survive, so
    nothing else can ride along) and what was just done."""
    kept = [
        (key, value[:300])
        for key, value in parse_qsl(back[:2000])
        if key in moderation.FILTER_PARAMETERS or key == "after"
    ]
    kept += [(key, str(value)) for key, value in facts.items()]
    query = urlencode(kept)
    return BASE.format(slug=slug) + (f"?{query}" if query else "")


# --- The list ------------------------------------------------------------------------------


@router.get("/dashboard/letters/{slug}/signatures")
def signatures_page(
    request: Request,
    session: ReadSession,
    settings: AppSettings,
    slug: str,
    status: Text = "",
    domain: Text = "",
    organization: Text = "",
    name: Text = "",
    confirmed_from: Annotated[str, Query(alias="from", max_length=1000)] = "",
    confirmed_to: Annotated[str, Query(alias="to", max_length=1000)] = "",
    after: Annotated[str, Query(max_length=300)] = "",
    done: Annotated[str, Query(max_length=20)] = "",
    n: Annotated[int | None, Query(ge=0, le=moderation.MAX_POSITION)] = None,
    removed: Annotated[int | None, Query(ge=0)] = None,
    previewed: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    _, letter, role = _letter(request, session, slug, Role.VIEWER)
    form = {
        "status": status,
        "domain": domain,
        "organization": organization,
        "name": name,
        "from": confirmed_from,
        "to": confirmed_to,
    }
    context: dict[str, Any] = {
        "letter": letter,
        "role": role,
        "form": form,
        "errors": {},
        "rows": [],
        "matches": 0,
        "next_cursor": None,
        "back": "",
        "tally": moderation.tally(session, letter_id=letter.id),
        "can_moderate": role.allows(Role.EDITOR),
        "is_owner": role.allows(Role.OWNER),
        "statuses": list(moderation.StatusFilter),
        "reasons": list(RemovalReason),
        "done": done if done in DONE else "",
        "n": n,
        "removed": removed,
        "previewed": previewed,
        "is_first_page": not after,
        "bulk_query": "",
    }
    try:
        found = moderation.parse_filter(
            status=status,
            domain=domain,
            organization=organization,
            name=name,
            confirmed_from=confirmed_from,
            confirmed_to=confirmed_to,
        )
        position = decode_cursor(settings, after) if after else None
    except InvalidInput as exc:
        context["errors"] = {"after" if key == "cursor" else key: message
                             for key, message in exc.fields.items()}  # fmt: skip
        return render_dashboard(request, "dashboard/signatures/list.html", context, status_code=422)
    rows, next_after = moderation.list_signatures(
        session, letter_id=letter.id, found=found, after=position
    )
    query = found.query()
    context.update(
        form={**form, **query, "status": found.status.value},
        rows=rows,
        matches=moderation.count_signatures(session, letter_id=letter.id, found=found),
        next_cursor=encode_cursor(settings, next_after) if next_after else None,
        next_query=urlencode({**query, "after": encode_cursor(settings, next_after)})
        if next_after
        else "",
        back=urlencode({**query, **({"after": after} if after else {})}),
        filter_query=urlencode(query),
        bulk_query=urlencode(found.bulk_query()),
    )
    return render_dashboard(request, "dashboard/signatures/list.html", context)


# --- One signature -------------------------------------------------------------------------


def _act(
    request: Request,
    session: WriteSession,
    slug: str,
    position: int,
    csrf_token: str,
    back: str,
    *,
    needed: Role,
    done: str,
    action: Any,
) -> Response:
    check_csrf(request, csrf_token)
    organizer, letter, _ = _letter(request, session, slug, needed)
    changed = action(session, actor=Actor(organizer), letter_id=letter.id, position=position)
    url = _list_url(slug, back, done=done if changed else "unchanged", n=position)
    return private(RedirectResponse(f"{url}#sig-{position}", status_code=303))


@router.post("/dashboard/letters/{slug}/signatures/{position}/hide")
def hide(
    request: Request,
    session: WriteSession,
    slug: str,
    position: Position,
    csrf_token: FormText = "",
    back: FormText = "",
) -> Response:
    def action(session: Any, **kwargs: Any) -> bool:
        return moderation.set_hidden(session, hidden=True, **kwargs)

    return _act(request, session, slug, position, csrf_token, back,
                needed=Role.EDITOR, done="hidden", action=action)  # fmt: skip


@router.post("/dashboard/letters/{slug}/signatures/{position}/unhide")
def unhide(
    request: Request,
    session: WriteSession,
    slug: str,
    position: Position,
    csrf_token: FormText = "",
    back: FormText = "",
) -> Response:
    def action(session: Any, **kwargs: Any) -> bool:
        return moderation.set_hidden(session, hidden=False, **kwargs)

    return _act(request, session, slug, position, csrf_token, back,
                needed=Role.EDITOR, done="unhidden", action=action)  # fmt: skip


@router.post("/dashboard/letters/{slug}/signatures/{position}/remove")
def remove(
    request: Request,
    session: WriteSession,
    slug: str,
    position: Position,
    reason: Annotated[RemovalReason, Form()],
    csrf_token: FormText = "",
    back: FormText = "",
) -> Response:
    def action(session: Any, **kwargs: Any) -> bool:
        return moderation.remove_signature(session, reason=reason, **kwargs)

    return _act(request, session, slug, position, csrf_token, back,
                needed=Role.EDITOR, done="removed", action=action)  # fmt: skip


@router.post("/dashboard/letters/{slug}/signatures/{position}/restore")
def restore(
    request: Request,
    session: WriteSession,
    slug: str,
    position: Position,
    csrf_token: FormText = "",
    back: FormText = "",
) -> Response:
    return _act(request, session, slug, position, csrf_token, back,
                needed=Role.EDITOR, done="restored",
                action=moderation.restore_signature)  # fmt: skip


@router.post("/dashboard/letters/{slug}/signatures/{position}/comment/approve")
def approve_comment(
    request: Request,
    session: WriteSession,
    slug: str,
    position: Position,
    csrf_token: FormText = "",
    back: FormText = "",
) -> Response:
    def action(session: Any, **kwargs: Any) -> bool:
        return moderation.set_comment_approved(session, approved=True, **kwargs)

    return _act(request, session, slug, position, csrf_token, back,
                needed=Role.OWNER, done="approved", action=action)  # fmt: skip


@router.post("/dashboard/letters/{slug}/signatures/{position}/comment/unapprove")
def unapprove_comment(
    request: Request,
    session: WriteSession,
    slug: str,
    position: Position,
    csrf_token: FormText = "",
    back: FormText = "",
) -> Response:
    def action(session: Any, **kwargs: Any) -> bool:
        return moderation.set_comment_approved(session, approved=False, **kwargs)

    return _act(request, session, slug, position, csrf_token, back,
                needed=Role.OWNER, done="unapproved", action=action)  # fmt: skip


@router.post("/dashboard/letters/{slug}/signatures/{position}/confirmed")
def confirm(
    request: Request,
    session: WriteSession,
    slug: str,
    position: Position,
    confirmed: Annotated[bool, Form()],
    csrf_token: FormText = "",
    back: FormText = "",
) -> Response:
    """Owners mark a signature "confirmed by the organizers" (checked by hand), or take
    the mark back (`confirmed` false)."""

    def action(session: Any, **kwargs: Any) -> bool:
        return moderation.set_organizer_confirmed(session, confirmed=confirmed, **kwargs)

    done = "confirmed" if confirmed else "unconfirmed"
    return _act(request, session, slug, position, csrf_token, back,
                needed=Role.OWNER, done=done, action=action)  # fmt: skip


# --- Bulk invalidation ---------------------------------------------------------------------


def _bulk_page(
    request: Request,
    letter: Letter,
    role: Role,
    form: dict[str, str],
    *,
    preview: moderation.BulkPreview | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
    reason: str = RemovalReason.BOT.value,
    status_code: int = 200,
) -> Response:
    return render_dashboard(
        request,
        "dashboard/signatures/bulk.html",
        {
            "letter": letter,
            "role": role,
            "form": form,
            "preview": preview,
            "errors": errors or {},
            "notice": notice,
            "reasons": list(RemovalReason),
            "reason": reason,
        },
        status_code=status_code,
    )


@router.get("/dashboard/letters/{slug}/signatures/bulk")
def bulk_page(
    request: Request,
    session: ReadSession,
    slug: str,
    domain: Text = "",
    organization: Text = "",
    confirmed_from: Annotated[str, Query(alias="from", max_length=1000)] = "",
    confirmed_to: Annotated[str, Query(alias="to", max_length=1000)] = "",
) -> Response:
    _, letter, role = _letter(request, session, slug, Role.OWNER)
    form = {"domain": domain, "organization": organization,
            "from": confirmed_from, "to": confirmed_to}  # fmt: skip
    if not any(form.values()):
        return _bulk_page(request, letter, role, form)
    try:
        found = moderation.parse_filter(
            domain=domain,
            organization=organization,
            confirmed_from=confirmed_from,
            confirmed_to=confirmed_to,
        )
        preview = moderation.preview_bulk(session, letter_id=letter.id, found=found)
    except InvalidInput as exc:
        return _bulk_page(request, letter, role, form, errors=exc.fields, status_code=422)
    return _bulk_page(request, letter, role, {**form, **found.bulk_query()}, preview=preview)


@router.post("/dashboard/letters/{slug}/signatures/bulk")
def bulk_apply(
    request: Request,
    session: WriteSession,
    slug: str,
    expected: Annotated[int, Form(ge=0, le=moderation.MAX_POSITION)],
    reason: Annotated[RemovalReason, Form()],
    as_of: Annotated[str, Form(max_length=100)],
    domain: FormText = "",
    organization: FormText = "",
    confirmed_from: Annotated[str, Form(alias="from", max_length=1000)] = "",
    confirmed_to: Annotated[str, Form(alias="to", max_length=1000)] = "",
    csrf_token: FormText = "",
) -> Response:
    check_csrf(request, csrf_token)
    organizer, letter, role = _letter(request, session, slug, Role.OWNER)
    form = {"domain": domain, "organization": organization,
            "from": confirmed_from, "to": confirmed_to}  # fmt: skip
    try:
        found = moderation.parse_filter(
            domain=domain,
            organization=organization,
            confirmed_from=confirmed_from,
            confirmed_to=confirmed_to,
        )
        result = moderation.apply_bulk(
            session,
            actor=Actor(organizer),
            letter_id=letter.id,
            found=found,
            as_of=moderation.parse_as_of(as_of),
            reason=reason,
            expected=expected,
        )
    except InvalidInput as exc:
        if "expected" not in exc.fields:
            return _bulk_page(request, letter, role, form, errors=exc.fields, status_code=422)
        # More than the owner was shown: nothing was removed; show the filter afresh.
        preview = moderation.preview_bulk(session, letter_id=letter.id, found=found)
        return _bulk_page(request, letter, role, form, preview=preview, notice=exc.detail,
                          reason=reason.value, status_code=409)  # fmt: skip
    url = _list_url(slug, done="bulk", removed=result.removed, previewed=result.previewed)
    return private(RedirectResponse(url, status_code=303))


# --- Export ----------------------------------------------------------------------------------


@router.get("/dashboard/letters/{slug}/export.csv")
def export_csv(request: Request, session: WriteSession, slug: str) -> Response:
    """Owners only. The audit line is written (and committed, with the request's one
    transaction) before the first byte; the rows then stream from `csv_lines`, which
    reads in short sessions of its own, after this request's session has ended."""
    organizer, letter, _ = _letter(request, session, slug, Role.OWNER)
    export.record_export(session, actor=Actor(organizer), letter_id=letter.id)
    return StreamingResponse(
        export.csv_lines(request.app.state.database, letter_id=letter.id),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{letter.slug}-signatures.csv"',
            "cache-control": "no-store",
        },
    )
