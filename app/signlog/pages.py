"""The "check this count" page: a letter's signature log in plain words, with its latest
signed checkpoint, the public key and how anyone checks the count (or a receipt).

Public and cached like the letter page: it is the same for everyone, and a checkpoint
is a few seconds old at most anyway."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app import urls
from app.letters import service as letters
from app.letters import translations
from app.signlog import keys
from app.signlog import service as signlog
from app.signlog.well_known import KEY_PATH
from app.web.cache import public
from app.web.deps import AppSettings, PublicReadSession
from app.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/letters/{slug}/log")
def check_count(
    request: Request, session: PublicReadSession, settings: AppSettings, slug: str
) -> Response:
    """404 for a draft or unknown letter, as the letter page."""
    found = letters.get_public_letter(session, slug=slug)
    letter = found.letter
    response = render(
        request,
        "signlog/check.html",
        {
            "letter": letter,
            "text": translations.localized_short(session, letters=[letter])[letter.id],
            "count": found.signature_count,
            "checkpoint": signlog.latest(session, settings, letter_id=letter.id, slug=letter.slug),
            "queued": signlog.unsequenced(session, letter_id=letter.id),
            "letter_url": urls.letter_url(settings.base_url, letter.slug),
            "api_base": f"{settings.base_url}/api/v1/letters/{letter.slug}/log",
            "vkey": keys.verifier(settings).vkey(),
            "key_path": KEY_PATH,
        },
    )
    return public(response, settings)
