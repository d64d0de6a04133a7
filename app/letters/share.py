"""A letter beyond its own page: the embed other sites frame, the count badge, the share
card for link previews, and what search engines read (sitemap.xml, robots.txt).

Every answer here is the same for every visitor, so each is marked public (ETag, 304s,
a few seconds in this process and in any shared cache: app/web/cache.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from app import urls
from app.i18n import format_number
from app.i18n import gettext as _
from app.letters import accent, cards, seo, translations
from app.letters import service as letters
from app.web.cache import public
from app.web.deps import AppSettings, PublicReadSession
from app.web.rendering import render
from app.web.security import allow_framing

router = APIRouter(include_in_schema=False)

IMAGE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""An image opened on its own runs nothing and loads nothing (the badge is SVG)."""


@router.get("/letters/{slug}/embed")
def embed(
    request: Request, session: PublicReadSession, settings: AppSettings, slug: str
) -> Response:
    """The one page other sites may frame (D100): title, live count, goal, a button to
    the letter in a new tab."""
    found = letters.get_public_letter(session, slug=slug)
    allow_framing(request)
    response = render(
        request,
        "letters/embed.html",
        {
            "letter": found.letter,
            "text": _short_text(session, found),
            "count": found.signature_count,
            "is_open": found.is_open,
            "letter_url": urls.letter_url(settings.base_url, found.letter.slug),
            "theme_css": accent.theme_path(colour)
            if (colour := found.letter.accent_color)
            else None,
        },
    )
    return public(response, settings)


@router.get("/letters/{slug}/badge.svg")
def badge(session: PublicReadSession, settings: AppSettings, slug: str) -> Response:
    """The exact count, as a shields-style badge."""
    found = letters.get_public_letter(session, slug=slug)
    count, goal = format_number(found.signature_count), found.letter.goal
    value = (
        _("%(count)s of %(goal)s") % {"count": count, "goal": format_number(goal)}
        if goal
        else count
    )
    svg = cards.badge_svg(label=_("signatures"), value=value, colour=found.letter.accent_color)
    response = Response(svg, media_type="image/svg+xml")
    response.headers["content-security-policy"] = IMAGE_CSP
    return public(response, settings)


@router.get("/letters/{slug}/card.png")
def card(session: PublicReadSession, settings: AppSettings, slug: str) -> Response:
    """The 1200x630 share card, drawn again only when the count has moved a step (D102)."""
    found = letters.get_public_letter(session, slug=slug)
    drawn = cards.card_for(
        title=_short_text(session, found).title,
        count=found.signature_count,
        goal=found.letter.goal,
        accent_color=found.letter.accent_color,
    )
    response = Response(cards.card_png(drawn), media_type="image/png")
    response.headers["content-security-policy"] = IMAGE_CSP
    return public(response, settings)


def _short_text(
    session: PublicReadSession, found: letters.LetterWithTally
) -> translations.ShortText:
    """The letter's title and summary in the reader's language."""
    return translations.localized_short(session, letters=[found.letter])[found.letter.id]


@router.get("/sitemap.xml")
def sitemap(session: PublicReadSession, settings: AppSettings) -> Response:
    body = seo.sitemap_xml(settings.base_url, seo.sitemap_entries(session))
    return public(Response(body, media_type="application/xml"), settings)


@router.get("/robots.txt")
def robots(settings: AppSettings) -> Response:
    return public(PlainTextResponse(seo.robots_txt(settings.base_url)), settings)
