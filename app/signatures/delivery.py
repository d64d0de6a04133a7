"""Delivery on the dashboard: the milestones, the day the letter was delivered, the
addressee's response, and the delivery packet (a page made to print).

Any organizer of the letter sees the delivery page; only owners change anything or
download the packet. The packet lives in this layer because it lists signers: it is
rendered with Jinja's `generate()` over signers read in keyset batches, each in its
own short session (`app.signatures.packet`), so a letter of any size is sent in
constant memory. The request's own session (a write, for the audit line) only checks
who asks and records the download; it commits before the first byte is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response, StreamingResponse

from app.db import Database, utcnow
from app.errors import InvalidInput
from app.letters import delivery
from app.letters import service as letters
from app.letters.models import Letter
from app.organizers.models import Role
from app.organizers.service import Actor
from app.organizers.web import render_dashboard, signed_in
from app.signatures import packet
from app.templating import environment
from app.web.deps import ReadSession, WriteSession
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)

SAVED = ("delivered", "response", "cleared")
"""What the page can say was just saved (`?saved=`, after a redirect); anything else is
ignored."""
CHUNK_CHARS = 16 * 1024
"""The packet is sent in pieces of about this size (Jinja yields many small strings)."""


def _delivery_path(letter: Letter) -> str:
    return f"/dashboard/letters/{letter.slug}/delivery"


def _page(
    request: Request,
    letter: Letter,
    role: Role,
    *,
    saved: str = "",
    failed: str = "",
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    today = utcnow().date().isoformat()
    return render_dashboard(
        request,
        "dashboard/delivery/index.html",
        {
            "letter": letter,
            "role": role,
            "is_owner": role.allows(Role.OWNER),
            "milestones": delivery.milestones(letter),
            "saved": saved,
            "failed": failed,
            "errors": errors or {},
            "form": form or {},
            "today": today,
            "max_text": delivery.MAX_RESPONSE_CHARS,
            "max_link": delivery.MAX_LINK_CHARS,
        },
        status_code=status_code,
    )


@router.get("/dashboard/letters/{slug}/delivery")
def delivery_page(request: Request, session: ReadSession, slug: str, saved: str = "") -> Response:
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.VIEWER
    )
    return _page(request, letter, role, saved=saved if saved in SAVED else "")


@router.post("/dashboard/letters/{slug}/delivered")
def mark_delivered(
    request: Request,
    session: WriteSession,
    slug: str,
    csrf_token: Annotated[str, Form()] = "",
    date: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    try:
        delivery.mark_delivered(session, letter=letter, actor=Actor(organizer), on=date)
    except InvalidInput as exc:
        return _page(
            request, letter, role, failed="delivered", errors=exc.fields,
            form={"delivered_date": date}, status_code=422,
        )  # fmt: skip
    return RedirectResponse(f"{_delivery_path(letter)}?saved=delivered", status_code=303)


@router.post("/dashboard/letters/{slug}/response")
def record_response(
    request: Request,
    session: WriteSession,
    slug: str,
    csrf_token: Annotated[str, Form()] = "",
    date: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    link: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    try:
        delivery.record_response(
            session, letter=letter, actor=Actor(organizer), on=date, text=text, link=link
        )
    except InvalidInput as exc:
        return _page(
            request, letter, role, failed="response", errors=exc.fields,
            form={"response_date": date, "text": text, "link": link}, status_code=422,
        )  # fmt: skip
    return RedirectResponse(f"{_delivery_path(letter)}?saved=response", status_code=303)


@router.post("/dashboard/letters/{slug}/response/clear")
def clear_response(
    request: Request,
    session: WriteSession,
    slug: str,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    organizer = signed_in(request, session)
    letter, _ = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    delivery.clear_response(session, letter=letter, actor=Actor(organizer))
    return RedirectResponse(f"{_delivery_path(letter)}?saved=cleared", status_code=303)


# --- The packet ----------------------------------------------------------------------


def _in_chunks(pieces: Iterable[str], size: int | None = None) -> Iterator[str]:
    size = size or CHUNK_CHARS
    buffer: list[str] = []
    length = 0
    for piece in pieces:
        buffer.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(buffer)
            buffer, length = [], 0
    if buffer:
        yield "".join(buffer)


@router.get("/dashboard/letters/{slug}/packet")
def delivery_packet(request: Request, session: WriteSession, slug: str) -> Response:
    """Owners only. A GET that writes: the download goes in the audit log, in this
    request's one transaction, committed before the stream starts."""
    organizer = signed_in(request, session)
    letter, _ = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.OWNER
    )
    count = packet.start_packet(session, letter=letter, actor=Actor(organizer))
    database: Database = request.app.state.database
    context: dict[str, Any] = {
        "letter": letter,
        "count": count,
        "groups": packet.group_signers(packet.iter_signers(database, letter_id=letter.id)),
        "anonymous_count": lambda: packet.anonymous_count(database, letter_id=letter.id),
        "prepared_at": utcnow(),
    }
    pieces = environment().get_template("dashboard/delivery/packet.html").generate(context)
    return StreamingResponse(
        _in_chunks(pieces),
        media_type="text/html; charset=utf-8",
        headers={"cache-control": "no-store"},
    )
