"""/api/v1: signing, verifying and the public signer list, as JSON. The same services
as the pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.abuse import service as abuse
from app.abuse.web import require_proof
from app.errors import InvalidInput
from app.letters import service as letters
from app.letters.api import LetterSlug
from app.signatures import breakdown, timeline
from app.signatures import service as signatures
from app.signatures.breakdown import Breakdown
from app.signatures.schemas import (
    SEARCH_PATTERN,
    SignatureAccepted,
    SignatureIn,
    SignaturePage,
    Timeline,
    VerifyIn,
    VerifyOut,
)
from app.web import ratelimit
from app.web.cache import NOT_MODIFIED, public
from app.web.client import client_of
from app.web.deps import AppSettings, PublicReadSession, WriteSession
from app.web.errors import JSON_BODY_422, error_response, error_responses
from app.web.rendering import json_answer

# Every route counts against the API's limit per client, before it takes a session.
router = APIRouter(
    prefix="/api/v1", tags=["signatures"], dependencies=[Depends(ratelimit.limit_api)]
)


@router.get(
    "/letters/{slug}/signatures",
    responses=error_responses(
        404,
        422,
        descriptions={
            404: "There is no published letter at this address (`letter_not_found`), or "
            "its organizers do not publish the list of signers (`signers_not_public`; "
            "the tally stays public).",
            422: "A query parameter is not valid; `fields` names it.",
        },
    )
    | NOT_MODIFIED,
)
def list_signatures(
    response: Response,
    slug: LetterSlug,
    session: PublicReadSession,
    settings: AppSettings,
    limit: Annotated[int, Query(ge=1, le=100, description="Signers per page.")] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=r"^[A-Za-z0-9_.\-]+$",
            description="The `next_cursor` of the page before (opaque).",
        ),
    ] = None,
    q: Annotated[
        str,
        Query(
            max_length=100,
            pattern=SEARCH_PATTERN,
            description="Only public signers whose name or organization contains it "
            f"(at least {signatures.MIN_SEARCH_LENGTH} characters).",
        ),
    ] = "",
) -> SignaturePage:
    """Verified signers, newest first. Anonymous signers appear with every field null.
    Signers hidden by the organizers are left out. A letter whose organizers do not
    publish the list answers `404` `signers_not_public`."""
    position = signatures.decode_cursor(settings, cursor) if cursor else None
    found = letters.get_public_letter(session, slug=slug)
    signatures.require_public_list(found.letter)
    items, next_after = signatures.list_public_signatures(
        session, letter_id=found.letter.id, query=q, after=position, limit=limit
    )
    next_cursor = signatures.encode_cursor(settings, next_after) if next_after else None
    public(response, settings)
    return SignaturePage(items=items, next_cursor=next_cursor)


@router.get(
    "/letters/{slug}/breakdown",
    responses=error_responses(
        404,
        descriptions={
            404: "There is no published letter at this address (`letter_not_found`), or "
            "its organizers do not publish the list of signers (`signers_not_public`).",
        },
    )
    | NOT_MODIFIED,
)
def letter_breakdown(
    response: Response, settings: AppSettings, slug: LetterSlug, session: PublicReadSession
) -> Breakdown:
    """Verified signers in numbers: by company (or verified work domain, for signers who
    chose to show it) and by stated organization. Groups smaller than
    `min_group_size` (3) are folded into `other`, so a small group never points at a
    person."""
    found = letters.get_public_letter(session, slug=slug)
    signatures.require_public_list(found.letter)
    public(response, settings)
    return breakdown.letter_breakdown(session, letter=found.letter)


@router.get(
    "/letters/{slug}/timeline",
    responses=error_responses(
        404,
        descriptions={404: "There is no published letter at this address (`letter_not_found`)."},
    )
    | NOT_MODIFIED,
)
def letter_timeline(
    response: Response, settings: AppSettings, slug: LetterSlug, session: PublicReadSession
) -> Timeline:
    """Verified signatures over time: how many were confirmed each day (UTC), and the
    running total, whose last value is the tally. Public like the tally, even when the
    organizers do not publish the list of signers. Long letters are counted by the week,
    then by the month (`interval`)."""
    found = letters.get_public_letter(session, slug=slug)
    public(response, settings)
    return timeline.letter_timeline(session, letter=found.letter, count=found.signature_count)


@router.post(
    "/letters/{slug}/signatures",
    status_code=202,
    response_model=SignatureAccepted,
    response_description="Accepted (the same answer whether the address is new, pending or "
    "already verified).",
    responses=error_responses(
        404,
        409,
        413,
        422,
        descriptions={
            422: JSON_BODY_422 + " The letter's own settings are checked too: a field it "
            "requires left empty (`required`), `anonymous` on a letter that does not "
            "accept anonymous signatures (`display`), an address at a throwaway-address "
            "domain or a domain the letter does not accept (`email`), or a proof of work "
            "that is wrong, expired or used before (`altcha`)."
        },
    ),
    # Signing's own limit per client per letter (the form's too), before the session.
    dependencies=[Depends(ratelimit.limit_signing)],
)
def sign_letter(
    request: Request,
    slug: LetterSlug,
    data: SignatureIn,
    session: WriteSession,
    settings: AppSettings,
) -> Response:
    """Always `202 {"status": "pending"}` when accepted, whether the address is new,
    pending or already verified: the answer never tells whether someone signed.

    Each letter says which of `title`, `organization`, `city` and `comment` it asks for,
    and which of them are required, and whether it accepts anonymous signatures; a
    field it does not ask for is ignored. The signature records the version of the
    letter's text that was signed."""
    source = abuse.source_hash(settings.secret, client_of(request))
    try:
        require_proof(request, session, settings, slug=slug, payload=data.altcha)
        signatures.sign_letter(session, slug=slug, data=data, settings=settings, source_hash=source)
    except InvalidInput as exc:
        # Answered, not raised: the transaction commits the AbuseEvent a refused email
        # domain or a bad proof of work records (no submission was stored), as the sign
        # form's does.
        return error_response(request, exc)
    session.commit()  # in this thread, at once (D183): on SQLite the write turn is free
    return json_answer(SignatureAccepted(), 202)


@router.post(
    "/signatures/verify",
    response_model=VerifyOut,
    response_description="Confirmed and counted (confirming again changes nothing).",
    responses=error_responses(
        400,
        409,
        413,
        422,
        descriptions={
            409: "The letter closed before this signature was confirmed.",
            422: JSON_BODY_422,
        },
    ),
)
def verify_signature(data: VerifyIn, session: WriteSession, settings: AppSettings) -> Response:
    """Confirms a signature with the token from its email link."""
    signatures.verify_signature(session, token=data.token, settings=settings)
    # Committed here, in the endpoint's thread: the letter's counter row, locked by the
    # confirmation's last statement, is free one round trip later, not after the answer's
    # validation and a hop back through a busy event loop to WriteSession's teardown
    # (D183). The teardown then has nothing left to commit.
    session.commit()
    return json_answer(VerifyOut())
