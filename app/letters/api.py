"""/api/v1/letters: the public letters and their tallies, as JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from app import urls
from app.config import Settings
from app.errors import LetterNotFound
from app.letters import service as letters
from app.letters import translations
from app.letters.models import SIGNER_FIELDS
from app.letters.schemas import (
    SLUG_MAX_LENGTH,
    SLUG_PATTERN,
    LetterDetailOut,
    LetterList,
    LetterOut,
    SignerFieldsOut,
    TranslationOut,
)
from app.web import ratelimit
from app.web.cache import NOT_MODIFIED, public
from app.web.deps import AppSettings, PublicReadSession
from app.web.errors import error_responses

# Every route counts against the API's limit per client, before it takes a session.
router = APIRouter(prefix="/api/v1", tags=["letters"], dependencies=[Depends(ratelimit.limit_api)])


async def letter_slug(  # async: a plain check, on the event loop, not in a thread
    slug: Annotated[
        str,
        Path(
            description="The letter's slug, as in its address and in `GET /api/v1/letters`.",
            examples=["ice-out"],
            # Documented, not enforced as a 422: any other text is simply no letter.
            json_schema_extra={"pattern": SLUG_PATTERN, "maxLength": SLUG_MAX_LENGTH},
        ),
    ],
) -> str:
    """The `{slug}` of a letter route. A slug no letter can have is a 404 before any
    query, so odd text never reaches the database (PostgreSQL refuses a NUL in text)."""
    if not letters.is_slug(slug):
        raise LetterNotFound()
    return slug


LetterSlug = Annotated[str, Depends(letter_slug)]


def letter_out(found: letters.LetterWithTally, settings: Settings) -> LetterOut:
    letter = found.letter
    return LetterOut(
        slug=letter.slug,
        title=letter.title,
        summary=letter.summary,
        status=found.status,
        signature_count=found.signature_count,
        goal=letter.goal,
        closes_at=letter.closes_at,
        url=urls.letter_url(settings.base_url, letter.slug),
    )


@router.get("/letters", responses={**error_responses(), **NOT_MODIFIED})
def list_letters(
    session: PublicReadSession, settings: AppSettings, response: Response
) -> LetterList:
    """Published letters, open ones first, each with its verified tally. Cached for a
    few seconds (`Cache-Control`, `ETag`)."""
    public(response, settings)
    return LetterList(
        items=[letter_out(found, settings) for found in letters.list_public_letters(session)]
    )


@router.get("/letters/{slug}", responses={**error_responses(404), **NOT_MODIFIED})
def get_letter(
    slug: LetterSlug, session: PublicReadSession, settings: AppSettings, response: Response
) -> LetterDetailOut:
    """A published (open or closed) letter, with its text as sanitized HTML and its
    translations (`translations`: the same letter in other languages). Cached for a few
    seconds (`Cache-Control`, `ETag`)."""
    found = letters.get_public_letter(session, slug=slug)
    public(response, settings)
    return LetterDetailOut(
        **letter_out(found, settings).model_dump(),
        body_html=found.letter.body_html,
        language=translations.OWN_LOCALE,
        translations=[
            TranslationOut(
                language=row.locale, title=row.title, summary=row.summary, body_html=row.body_html
            )
            for row in translations.all_translations(session, letter_id=found.letter.id)
        ],
        addressed_to=found.letter.addressed_to,
        published_at=found.letter.published_at,
        signer_fields=SignerFieldsOut(
            **{field: found.letter.field_rule(field) for field in SIGNER_FIELDS}
        ),
        allow_anonymous=found.letter.allow_anonymous,
        show_signers=found.letter.show_signers,
        signers=found.letter.signers,
    )
