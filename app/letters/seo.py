"""What search engines are told: the sitemap of public letters and robots.txt (D104).

The sitemap lists the home page and every published letter that the home page lists
(open or closed, not archived): drafts are not public, and an archived letter keeps its
page for those who have the link but is no longer put forward. robots.txt keeps the
private and per-person pages out of indexes: each of them also says `noindex` itself
(templates/letters/_meta.html), since robots.txt only asks crawlers not to fetch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import urls
from app.letters.models import Letter, LetterStatus

SITEMAP_LIMIT = 50_000
"""The sitemap protocol's cap on URLs in one file."""

PRIVATE_PREFIXES = (
    "/verify/",
    "/signature/",
    "/dev/",
    "/dashboard",
    "/login",
    "/logout",
    "/unsubscribe/",
    "/receipt",
)
"""Paths no search engine should index: links sent to one person, the organizers'
pages, the developer's mailbox. `_meta.html` marks the same pages `noindex`."""
CHECK_EMAIL = "/letters/*/check-email"
"""The page after signing (RFC 9309's `*` matches any letter)."""


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    slug: str
    updated_at: datetime


def sitemap_entries(session: Session) -> Sequence[SitemapEntry]:
    """Published, not archived letters, the most recently changed first."""
    rows = session.execute(
        select(Letter.slug, Letter.updated_at)
        .where(Letter.status != LetterStatus.DRAFT, Letter.archived_at.is_(None))
        .order_by(Letter.updated_at.desc(), Letter.id.desc())
        .limit(SITEMAP_LIMIT - 1)
    ).all()
    return [SitemapEntry(slug, updated_at) for slug, updated_at in rows]


def sitemap_xml(base_url: str, entries: Sequence[SitemapEntry]) -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
        f"  <url><loc>{escape(base_url)}/</loc></url>",
    ]
    for entry in entries:
        loc = escape(urls.letter_url(base_url, entry.slug))
        lastmod = entry.updated_at.strftime("%Y-%m-%d")
        lines.append(f"  <url><loc>{loc}</loc><lastmod>{lastmod}</lastmod></url>")
    lines.append("</urlset>")
    return "\n".join(lines) + "\n"


def robots_txt(base_url: str) -> str:
    disallowed = "".join(f"Disallow: {path}\n" for path in (*PRIVATE_PREFIXES, CHECK_EMAIL))
    return f"User-agent: *\n{disallowed}\nSitemap: {base_url}/sitemap.xml\n"
