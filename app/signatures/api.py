"""/api/v1: signing, verifying and the public signer list, as JSON. The same services
as the pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.errors import InvalidInput
from app.letters import service as letters
from app.signatures import service as signatures
from app.signatures.schemas import (
    SEARCH_PATTERN,
    SignatureAccepted,
    SignatureIn,
    SignaturePage,
    VerifyIn,
    VerifyOut,
)
from app.web.deps import AppSettings, ReadSession, WriteSession
from app.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["signatures"])


@router.get("/letters/{slug}/signatures", responses=error_responses(404, 422))
def list_signatures(
    slug: str,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    q: Annotated[str, Query(max_length=100, pattern=SEARCH_PATTERN)] = "",
) -> SignaturePage:
    """Verified signers, newest first. Anonymous signers appear with every field null."""
    # isdigit() alone accepts "²", which int() refuses; and ids are 64-bit.
    if cursor is not None and not (
        cursor.isascii() and cursor.isdigit() and int(cursor) <= signatures.MAX_CURSOR
    ):
        raise InvalidInput("The cursor is not valid.", fields={"cursor": "not a cursor"})
    found = letters.get_public_letter(session, slug=slug)
    items, next_cursor = signatures.list_public_signatures(
        session,
        letter_id=found.letter.id,
        query=q.strip(),
        after=int(cursor) if cursor else None,
        limit=limit,
    )
    return SignaturePage(
        items=items, next_cursor=str(next_cursor) if next_cursor is not None else None
    )


@router.post(
    "/letters/{slug}/signatures",
    status_code=202,
    responses=error_responses(404, 409, 413, 422),
)
def sign_letter(
    slug: str, data: SignatureIn, session: WriteSession, settings: AppSettings
) -> SignatureAccepted:
    """Always `202 {"status": "pending"}` when accepted, whether the address is new,
    pending or already verified: the answer never tells whether someone signed."""
    signatures.sign_letter(session, slug=slug, data=data, settings=settings)
    return SignatureAccepted()


@router.post("/signatures/verify", responses=error_responses(400, 409, 413, 422))
def verify_signature(data: VerifyIn, session: WriteSession, settings: AppSettings) -> VerifyOut:
    signatures.verify_signature(session, token=data.token, settings=settings)
    return VerifyOut()
