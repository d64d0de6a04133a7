"""/api/v1/letters: the public letters and their tallies, as JSON."""

from __future__ import annotations

from fastapi import APIRouter

from app import urls
from app.config import Settings
from app.letters import service as letters
from app.letters.schemas import LetterDetailOut, LetterList, LetterOut
from app.web.deps import AppSettings, ReadSession
from app.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["letters"])


def letter_out(found: letters.LetterWithTally, settings: Settings) -> LetterOut:
    letter = found.letter
    return LetterOut(
        slug=letter.slug,
        title=letter.title,
        summary=letter.summary,
        status=letter.status,
        signature_count=found.signature_count,
        goal=letter.goal,
        closes_at=letter.closes_at,
        url=urls.letter_url(settings.base_url, letter.slug),
    )


@router.get("/letters")
def list_letters(session: ReadSession, settings: AppSettings) -> LetterList:
    """Published letters, open ones first, each with its verified tally."""
    return LetterList(
        items=[letter_out(found, settings) for found in letters.list_public_letters(session)]
    )


@router.get("/letters/{slug}", responses=error_responses(404))
def get_letter(slug: str, session: ReadSession, settings: AppSettings) -> LetterDetailOut:
    found = letters.get_public_letter(session, slug=slug)
    return LetterDetailOut(
        **letter_out(found, settings).model_dump(),
        body_html=found.letter.body_html,
        addressed_to=found.letter.addressed_to,
        published_at=found.letter.published_at,
    )
