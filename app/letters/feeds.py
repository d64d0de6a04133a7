"""The Atom feed of new letters (`/letters.atom`, RFC 4287): the newest published
letters, so that people can follow a site's letters in a feed reader.

Rules kept here:
- Published letters only (open or closed), not archived ones, as the home page lists
  them; the newest `FEED_SIZE` by publication.
- Every link is absolute, built from BASE_URL (app/urls.py), never from the request.
- An entry's id is its letter's address (a slug never changes once published), its
  `updated` the last public edit of its text (or its publication).
- Titles and summaries in the reader's language when the letter has that translation
  (each entry says its own `xml:lang`).
- One query for the letters and one for their translations; the tallies are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from xml.etree.ElementTree import Element, SubElement, tostring

from sqlalchemy import select
from sqlalchemy.orm import Session, load_only

from app import urls
from app.db import utcnow
from app.i18n import current_locale
from app.i18n import gettext as _
from app.letters.models import Letter, LetterStatus
from app.letters.translations import ShortText, localized_short

FEED_SIZE = 50
ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml; charset=utf-8"
PATH = "/letters.atom"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def newest_letters(session: Session, *, limit: int = FEED_SIZE) -> Sequence[Letter]:
    """The newest published, unarchived letters, newest first (one query; no body)."""
    return session.scalars(
        select(Letter)
        .options(
            load_only(
                Letter.slug,
                Letter.title,
                Letter.summary,
                Letter.from_name,
                Letter.published_at,
                Letter.edited_at,
                raiseload=True,
            )
        )
        .where(
            Letter.status != LetterStatus.DRAFT,
            Letter.archived_at.is_(None),
            Letter.published_at.is_not(None),
        )
        .order_by(Letter.published_at.desc(), Letter.id.desc())
        .limit(limit)
    ).all()


def _moment(value: datetime) -> str:
    """RFC 3339 in UTC, to the second: 2026-11-27T23:51:35Z."""
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _updated(letter: Letter) -> datetime:
    published = letter.published_at or utcnow()
    return max(published, letter.edited_at) if letter.edited_at else published


def _text(parent: Element, tag: str, text: str, **attributes: str) -> Element:
    element = SubElement(parent, tag, attributes)
    element.text = text
    return element


def atom_feed(
    letters: Sequence[Letter], texts: dict[int, ShortText], *, base_url: str, now: datetime
) -> bytes:
    """The feed's XML (UTF-8). `texts`: each letter's title and summary as the reader
    reads them; `now`: the feed's `updated` when it has no entry."""
    feed = Element("feed", {"xmlns": ATOM, _XML_LANG: current_locale()})
    feed_url = base_url + PATH
    _text(feed, "id", feed_url)
    _text(feed, "title", _("New letters · Undersigned"))
    _text(feed, "subtitle", _("Open letters published on this site, newest first."))
    newest = max((_updated(letter) for letter in letters), default=now)
    _text(feed, "updated", _moment(newest))
    SubElement(feed, "link", {"rel": "self", "type": "application/atom+xml", "href": feed_url})
    SubElement(feed, "link", {"rel": "alternate", "type": "text/html", "href": base_url + "/"})
    author = SubElement(feed, "author")
    _text(author, "name", _("Undersigned"))
    _text(feed, "generator", "Undersigned")
    for letter in letters:
        text = texts.get(letter.id) or ShortText(current_locale(), letter.title, letter.summary)
        url = urls.letter_url(base_url, letter.slug)
        entry = SubElement(feed, "entry", {_XML_LANG: text.locale})
        _text(entry, "id", url)
        _text(entry, "title", text.title)
        SubElement(entry, "link", {"rel": "alternate", "type": "text/html", "href": url})
        if letter.published_at:
            _text(entry, "published", _moment(letter.published_at))
        _text(entry, "updated", _moment(_updated(letter)))
        if letter.from_name:
            entry_author = SubElement(entry, "author")
            _text(entry_author, "name", letter.from_name)
        _text(entry, "summary", text.summary or text.title)
    body: bytes = tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def letters_feed(session: Session, *, base_url: str) -> bytes:
    """The whole feed: the newest letters, in the reader's language."""
    letters = newest_letters(session)
    texts = localized_short(session, letters=letters)
    return atom_feed(letters, texts, base_url=base_url, now=utcnow())
