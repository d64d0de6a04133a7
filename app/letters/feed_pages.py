"""`/letters.atom`: the Atom feed of new letters (built by app/letters/feeds.py)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.letters import feeds
from app.web.cache import public
from app.web.deps import AppSettings, PublicReadSession

router = APIRouter(include_in_schema=False)


@router.get(feeds.PATH)
def letters_feed(session: PublicReadSession, settings: AppSettings) -> Response:
    """The same for every reader of a language: cached like the home page."""
    body = feeds.letters_feed(session, base_url=settings.base_url)
    return public(Response(body, media_type=feeds.MEDIA_TYPE), settings)
