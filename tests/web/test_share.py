"""A letter in link previews and chats: OpenGraph/Twitter tags, the share card, the
share links and the embed code on the letter page."""

from __future__ import annotations

import html
import re
from io import BytesIO
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.letters.models import Letter
from tests.web.flows import add_letter, add_verified_signers

META = re.compile(r'<meta (?:property|name)="([^"]+)" content="([^"]*)">')
SHARE_HOSTS = {"s2f.kytta.dev", "bsky.app", "x.com", "wa.me"}


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    letter = add_letter(
        app,
        slug="ice-out",
        title="Cancel the contracts",
        summary="Tech workers ask their employers to end contracts with ICE.",
        goal=10,
    )
    add_verified_signers(app, letter, {"name": "Grace Hopper"})
    return letter


def _meta(page: str) -> dict[str, str]:
    return {name: html.unescape(content) for name, content in META.findall(page)}


def test_a_letter_page_carries_opengraph_and_twitter_tags(
    client: TestClient, letter: Letter
) -> None:
    page = client.get("/letters/ice-out").text
    meta = _meta(page)
    summary = "Tech workers ask their employers to end contracts with ICE."
    assert meta["og:type"] == "article"
    assert meta["og:title"] == meta["twitter:title"] == "Cancel the contracts"
    assert meta["og:description"] == meta["twitter:description"] == meta["description"] == summary
    assert meta["og:url"] == "http://testserver/letters/ice-out"  # BASE_URL, canonical
    assert meta["og:image"] == meta["twitter:image"] == "http://testserver/letters/ice-out/card.png"
    assert (meta["og:image:width"], meta["og:image:height"]) == ("1200", "630")
    assert meta["twitter:card"] == "summary_large_image"
    assert meta["og:image:alt"]
    assert '<link rel="canonical" href="http://testserver/letters/ice-out">' in page


def test_the_tags_follow_base_url_not_the_host_header(client: TestClient, letter: Letter) -> None:
    page = client.get("/letters/ice-out?x=1", headers={"host": "evil.example"}).text
    assert "evil.example" not in page
    assert _meta(page)["og:url"] == "http://testserver/letters/ice-out"
    assert '<link rel="canonical" href="http://testserver/letters/ice-out">' in page


def test_a_letter_without_summary_still_describes_itself(client: TestClient, app: FastAPI) -> None:
    add_letter(app, slug="bare", title="Bare letter", summary="")
    meta = _meta(client.get("/letters/bare").text)
    assert "Bare letter" in meta["description"]
    assert meta["og:description"] == meta["description"]


def test_the_spanish_page_points_at_the_spanish_card(client: TestClient, letter: Letter) -> None:
    meta = _meta(client.get("/letters/ice-out?lang=es").text)
    assert meta["og:image"] == "http://testserver/letters/ice-out/card.png?lang=es"
    card = client.get("/letters/ice-out/card.png?lang=es")
    assert (
        card.status_code == 200
        and card.content != client.get("/letters/ice-out/card.png?lang=en").content
    )


def test_the_share_card_is_a_cached_1200_by_630_png(
    client: TestClient, app: FastAPI, letter: Letter
) -> None:
    response = client.get("/letters/ice-out/card.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"].startswith("public")
    image = Image.open(BytesIO(response.content))
    assert (image.format, image.size) == ("PNG", (1200, 630))
    etag = response.headers["etag"]
    assert (
        client.get("/letters/ice-out/card.png", headers={"if-none-match": etag}).status_code == 304
    )
    # Below 1,000 every signature changes the card.
    add_verified_signers(app, letter, {"name": "Alan Turing"})
    moved = client.get("/letters/ice-out/card.png", headers={"if-none-match": etag})
    assert moved.status_code == 200 and moved.headers["etag"] != etag


def test_the_letter_page_has_plain_share_links(client: TestClient, letter: Letter) -> None:
    page = client.get("/letters/ice-out").text
    section = re.search(r'<section id="share".*?</section>', page, re.S)
    assert section, "no share section"
    links = re.findall(r'<a href="([^"]+)"([^>]*)>', section.group(0))
    hosts = set()
    for href, attributes in links:
        url = html.unescape(href)
        parts = urlsplit(url)
        if parts.scheme == "mailto":
            assert "http://testserver/letters/ice-out" in parse_qs(parts.query)["body"]
            continue
        hosts.add(parts.netloc)
        assert parts.scheme == "https"
        assert 'rel="noopener noreferrer"' in attributes, url
        assert "http://testserver/letters/ice-out" in " ".join(
            value for values in parse_qs(parts.query).values() for value in values
        )
    assert hosts == SHARE_HOSTS
    assert re.search(
        r'<input id="share-link" type="text" readonly value="http://testserver/letters/ice-out">',
        page,
    )
    # No platform's script, image or frame: only links.
    assert not re.search(r"<(?:script|img|iframe)\b[^>]*(?:bsky|kytta|x\.com|wa\.me)", page)


def test_the_embed_code_is_on_the_letter_page(client: TestClient, letter: Letter) -> None:
    page = client.get("/letters/ice-out").text
    frame = re.search(r'<textarea id="embed-frame" readonly[^>]*>(.*?)</textarea>', page, re.S)
    assert frame
    snippet = html.unescape(frame.group(1))
    assert snippet.startswith('<iframe src="http://testserver/letters/ice-out/embed"')
    assert 'title="Cancel the contracts"' in snippet
    badge = re.search(r'<textarea id="embed-badge" readonly[^>]*>(.*?)</textarea>', page, re.S)
    assert badge
    assert html.unescape(badge.group(1)) == (
        "[![Cancel the contracts](http://testserver/letters/ice-out/badge.svg)]"
        "(http://testserver/letters/ice-out)"
    )
    assert "http://testserver/letters/ice-out/badge.svg" in page
    assert client.get("/letters/ice-out/embed").status_code == 200


def test_after_signing_the_thanks_offers_the_same_links(client: TestClient, letter: Letter) -> None:
    client.cookies.set("thanks", "ice-out")
    page = client.get("/letters/ice-out").text
    thanks = re.search(r'<section id="thanks".*?</section>', page, re.S)
    assert thanks
    assert 'id="share-link"' in thanks.group(0)
    assert "https://bsky.app/intent/compose?text=" in thanks.group(0)
    assert page.count('id="share-link"') == 1  # once on the page
