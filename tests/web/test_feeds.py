"""`/letters.atom`: a valid Atom 1.0 feed of the newest published letters, with absolute
links from BASE_URL, in the reader's language, cached like any public page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.letters import feeds
from app.letters.models import LetterStatus, LetterTranslation
from tests.support.factories import make_letter

A = "{http://www.w3.org/2005/Atom}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
START = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def _feed(client: TestClient, **params: str) -> ElementTree.Element:
    response = client.get("/letters.atom", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert response.content.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ElementTree.fromstring(response.content)  # noqa: S314 (our own feed)
    assert root.tag == A + "feed"
    return root


def _one(parent: ElementTree.Element, tag: str) -> ElementTree.Element:
    [element] = parent.findall(A + tag)
    return element


def _is_moment(text: str | None) -> bool:
    """RFC 3339 in UTC, as Atom's date constructs need."""
    assert text is not None and text.endswith("Z"), text
    return datetime.fromisoformat(text).tzinfo is not None


def test_the_feed_is_valid_atom_with_the_newest_published_letters(
    app: FastAPI, client: TestClient
) -> None:
    with app.state.database.write() as session:
        older = make_letter(session, slug="older", title="Older letter")
        older.published_at = START
        newer = make_letter(
            session, slug="newer", title="Fix <this> & that", summary="We ask for one thing."
        )
        newer.published_at = START + timedelta(days=2)
        newer.edited_at = START + timedelta(days=3)
        newer.from_name = "Workers for Good"
        closed = make_letter(session, slug="closed-one", status=LetterStatus.CLOSED)
        closed.published_at = START + timedelta(days=1)
        make_letter(session, slug="a-draft", status=LetterStatus.DRAFT)
        archived = make_letter(session, slug="archived-one")
        archived.published_at = START + timedelta(days=4)
        archived.archived_at = START + timedelta(days=5)

    root = _feed(client)
    base = app.state.settings.base_url
    # The feed's required elements (RFC 4287 4.1.1), each once.
    assert _one(root, "id").text == base + "/letters.atom"
    assert _one(root, "title").text == "New letters · Undersigned"
    assert _one(root, "updated").text == "2026-10-04T09:00:00Z"  # newest entry's update
    assert _one(_one(root, "author"), "name").text == "Undersigned"
    links = {link.get("rel"): link for link in root.findall(A + "link")}
    assert links["self"].get("href") == base + "/letters.atom"
    assert links["self"].get("type") == "application/atom+xml"
    assert links["alternate"].get("href") == base + "/"

    entries = root.findall(A + "entry")
    slugs = [_one(entry, "id").text for entry in entries]
    assert slugs == [f"{base}/letters/{slug}" for slug in ("newer", "closed-one", "older")]
    first = entries[0]
    assert _one(first, "title").text == "Fix <this> & that"  # escaped, read back whole
    assert _one(first, "summary").text == "We ask for one thing."
    assert _one(first, "published").text == "2026-10-03T09:00:00Z"
    assert _one(first, "updated").text == "2026-10-04T09:00:00Z"
    assert _one(_one(first, "author"), "name").text == "Workers for Good"
    [alternate] = first.findall(A + "link")
    assert (alternate.get("rel"), alternate.get("href")) == ("alternate", f"{base}/letters/newer")
    for entry in entries:
        for tag in ("id", "title", "updated", "summary"):
            assert (_one(entry, tag).text or "").strip(), tag
        assert _is_moment(_one(entry, "updated").text)


def test_at_most_the_newest_fifty(app: FastAPI, client: TestClient) -> None:
    with app.state.database.write() as session:
        for n in range(feeds.FEED_SIZE + 3):
            make_letter(session, slug=f"letter-no-{n}").published_at = START + timedelta(hours=n)
    entries = _feed(client).findall(A + "entry")
    assert len(entries) == feeds.FEED_SIZE
    assert _one(entries[0], "id").text.endswith(f"/letter-no-{feeds.FEED_SIZE + 2}")  # type: ignore[union-attr]
    assert _one(entries[-1], "id").text.endswith("/letter-no-3")  # type: ignore[union-attr]


def test_links_come_from_base_url_never_the_host_header(app: FastAPI, client: TestClient) -> None:
    with app.state.database.write() as session:
        make_letter(session, slug="ours")
    response = client.get("/letters.atom", headers={"host": "evil.example"})
    assert b"evil.example" not in response.content
    assert app.state.settings.base_url.encode() + b"/letters/ours" in response.content


def test_titles_and_summaries_in_the_readers_language(app: FastAPI, client: TestClient) -> None:
    with app.state.database.write() as session:
        letter = make_letter(session, slug="bilingual", title="Ice out", summary="In English.")
        session.add(
            LetterTranslation(letter_id=letter.id, locale="es", title="Fuera ICE",
                              summary="En español.", body_markdown="Hola", body_html="<p>Hola</p>")
        )  # fmt: skip
    english = _one(_feed(client), "entry")
    assert (_one(english, "title").text, english.get(XML_LANG)) == ("Ice out", "en")
    spanish_feed = _feed(client, lang="es")
    assert spanish_feed.get(XML_LANG) == "es"
    spanish = _one(spanish_feed, "entry")
    assert (_one(spanish, "title").text, spanish.get(XML_LANG)) == ("Fuera ICE", "es")
    assert _one(spanish, "summary").text == "En español."


def test_an_empty_feed_is_still_valid(client: TestClient) -> None:
    root = _feed(client)
    assert root.findall(A + "entry") == []
    assert _is_moment(_one(root, "updated").text)


def test_cached_like_a_public_page_and_announced_in_every_page(
    app: FastAPI, client: TestClient
) -> None:
    with app.state.database.write() as session:
        make_letter(session, slug="cached")
    first = client.get("/letters.atom")
    assert first.headers["cache-control"].startswith("public")
    again = client.get("/letters.atom", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    home = client.get("/").text
    assert '<link rel="alternate" type="application/atom+xml" href="/letters.atom"' in home
    assert '<link rel="alternate" type="application/atom+xml"' in client.get("/letters/cached").text
