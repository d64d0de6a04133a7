"""The JSON API, /api/v1. Same services as the pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.config import Settings
from app.errors import InvalidInput
from app.letters import service as letters
from app.letters.schemas import LetterDetailOut, LetterList, LetterOut
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

router = APIRouter(prefix="/api/v1", tags=["api"])

ERRORS = {
    400: {"description": "Bad or expired token: `{error, detail}`"},
    404: {"description": "Unknown letter: `{error, detail}`"},
    409: {"description": "The letter is not open: `{error, detail}`"},
    422: {"description": "Invalid input: `{error, detail, fields}`"},
}


def _letter_out(found: letters.LetterWithTally, settings: Settings) -> LetterOut:
    letter = found.letter
    return LetterOut(
        slug=letter.slug,
        title=letter.title,
        summary=letter.summary,
        status=letter.status,
        signature_count=found.signature_count,
        goal=letter.goal,
        closes_at=letter.closes_at,
        url=signatures.letter_url(settings, letter),
    )


@router.get("/letters")
def list_letters(session: ReadSession, settings: AppSettings) -> LetterList:
    return LetterList(
        items=[_letter_out(found, settings) for found in letters.list_public_letters(session)]
    )


@router.get("/letters/{slug}", responses={404: ERRORS[404]})
def get_letter(slug: str, session: ReadSession, settings: AppSettings) -> LetterDetailOut:
    found = letters.get_public_letter(session, slug=slug)
    return LetterDetailOut(
        **_letter_out(found, settings).model_dump(),
        body_html=found.letter.body_html,
        addressed_to=found.letter.addressed_to,
        published_at=found.letter.published_at,
    )


@router.get("/letters/{slug}/signatures", responses={404: ERRORS[404], 422: ERRORS[422]})
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
    responses={404: ERRORS[404], 409: ERRORS[409], 422: ERRORS[422]},
)
def sign_letter(
    slug: str, data: SignatureIn, session: WriteSession, settings: AppSettings
) -> SignatureAccepted:
    """Always `202 {"status": "pending"}` when accepted, whether the address is new,
    pending or already verified: the answer never tells whether someone signed."""
    signatures.sign_letter(session, slug=slug, data=data, settings=settings)
    return SignatureAccepted()


@router.post("/signatures/verify", responses={400: ERRORS[400], 409: ERRORS[409]})
def verify_signature(data: VerifyIn, session: WriteSession, settings: AppSettings) -> VerifyOut:
    signatures.verify_signature(session, token=data.token, settings=settings)
    return VerifyOut()
