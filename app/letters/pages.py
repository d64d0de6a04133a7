"""Public pages about letters: the home page (published letters with their tallies) and
a letter's changes (its versions and what changed between them). A letter's own page,
with its sign form and signers, belongs to the signing loop: app/signatures/pages.py."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.letters import service as letters
from app.letters import translations, versions
from app.web.cache import public
from app.web.deps import AppSettings, PublicReadSession
from app.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request, session: PublicReadSession, settings: AppSettings) -> Response:
    found = letters.list_public_letters(session)
    texts = translations.localized_short(session, letters=[item.letter for item in found])
    response = render(request, "home.html", {"letters": found, "texts": texts})
    return public(response, settings)


@router.get("/letters/{slug}/changes")
def changes(
    request: Request, session: PublicReadSession, settings: AppSettings, slug: str
) -> Response:
    """Each version of a published letter's text, newest first, with what changed."""
    found = letters.get_public_letter(session, slug=slug)
    response = render(
        request,
        "letters/changes.html",
        {
            "letter": found.letter,
            "changes": versions.letter_changes(session, letter_id=found.letter.id),
        },
    )
    return public(response, settings)
