"""The embed other sites frame, the count badge, and CORS on the public API only."""

from __future__ import annotations

import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.etree import ElementTree

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.db import Database
from app.letters.cards import badge_svg
from app.letters.models import Letter, LetterStatus
from tests.support.browser import axe_violations
from tests.support.browser import chromium as launch_chromium
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.live import serve
from tests.support.ports import free_socket
from tests.support.tools import vnu_command, vnu_errors
from tests.web.flows import GOOD_FORM, add_letter, add_verified_signers

ORIGIN = {"origin": "https://elsewhere.example"}


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    letter = add_letter(app, slug="ice-out", title="Cancel <the> contracts & more", goal=10)
    add_verified_signers(app, letter, {"name": "Grace Hopper"}, {"name": "Alan Turing"})
    return letter


def _directives(header: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in header.split(";"))}


# --- the embed ---


def test_the_embed_may_be_framed_and_shows_the_letter(client: TestClient, letter: Letter) -> None:
    response = client.get("/letters/ice-out/embed")
    assert response.status_code == 200
    csp = _directives(response.headers["content-security-policy"])
    assert csp["frame-ancestors"] == ["*"]
    assert csp["script-src"] == ["'self'"]  # the rest of the policy stays as strict
    assert "x-frame-options" not in response.headers
    page = response.text
    assert "Cancel &lt;the&gt; contracts &amp; more" in page
    assert re.search(r"data-live-count>2<", page)  # the live count (static/live.js)
    assert 'max="10" value="2"' in page  # the goal bar
    assert re.search(r'<script src="/static/live\.[0-9a-f]{12}\.js" defer>', page)
    # The button opens the letter in a new browsing context, without an opener.
    button = re.search(r'<a class="sign-jump" href="([^"]+)" target="_blank" rel="noopener">', page)
    assert button and button.group(1) == "http://testserver/letters/ice-out#sign-title"
    assert "Sign this letter" in page
    assert "<form" not in page and "set-cookie" not in response.headers


def test_the_embed_is_cached_like_any_public_page(client: TestClient, letter: Letter) -> None:
    response = client.get("/letters/ice-out/embed")
    assert response.headers["cache-control"].startswith("public")
    again = client.get(
        "/letters/ice-out/embed", headers={"if-none-match": response.headers["etag"]}
    )
    assert again.status_code == 304


def test_a_closed_letters_embed_offers_to_read_it(client: TestClient, app: FastAPI) -> None:
    add_letter(app, slug="closed-one", status=LetterStatus.CLOSED)
    page = client.get("/letters/closed-one/embed").text
    assert "Read the letter" in page and "Sign this letter" not in page


def test_only_the_embed_may_be_framed(client: TestClient, letter: Letter) -> None:
    for path in ("/", "/letters/ice-out", "/letters/ice-out/signers", "/letters/nope/embed",
                 "/letters/ice-out/badge.svg", "/letters/ice-out/card.png", "/sitemap.xml",
                 "/api/v1/letters/ice-out"):  # fmt: skip
        response = client.get(path)
        csp = _directives(response.headers["content-security-policy"])
        assert csp["frame-ancestors"] == ["'none'"], path
        if not path.endswith((".svg", ".png")):
            assert response.headers["x-frame-options"] == "DENY", path


def test_a_draft_has_no_embed_badge_or_card(client: TestClient, app: FastAPI) -> None:
    add_letter(app, slug="draft-one", status=LetterStatus.DRAFT)
    for tail in ("embed", "badge.svg", "card.png"):
        assert client.get(f"/letters/draft-one/{tail}").status_code == 404, tail


def test_the_embed_and_badge_wear_the_letters_colour(
    client: TestClient, app: FastAPI, letter: Letter
) -> None:
    with app.state.database.write() as session:
        stored = session.get(Letter, letter.id)
        assert stored is not None
        stored.accent_color = "#8b1e3f"
    assert (
        '<link rel="stylesheet" href="/theme/accent-8b1e3f.css">'
        in client.get("/letters/ice-out/embed").text
    )
    assert 'fill="#8b1e3f"' in client.get("/letters/ice-out/badge.svg").text


# --- the badge ---


def test_the_badge_is_a_safe_svg_with_the_count(client: TestClient, letter: Letter) -> None:
    response = client.get("/letters/ice-out/badge.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    csp = _directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]  # opened on its own, it runs nothing
    assert "script-src" not in csp
    svg = ElementTree.fromstring(response.content)  # noqa: S314 (our own badge)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [element.text for element in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["signatures", "2 of 10"]
    assert "<script" not in response.text and "href" not in response.text
    assert "font-family" in response.text and "sans-serif" in response.text


def test_the_badge_is_cached_with_an_etag_until_the_count_moves(
    client: TestClient, app: FastAPI, letter: Letter
) -> None:
    first = client.get("/letters/ice-out/badge.svg")
    assert first.headers["cache-control"].startswith("public")
    etag = first.headers["etag"]
    assert (
        client.get("/letters/ice-out/badge.svg", headers={"if-none-match": etag}).status_code == 304
    )
    add_verified_signers(app, letter, {"name": "Katherine Johnson"})
    moved = client.get("/letters/ice-out/badge.svg", headers={"if-none-match": etag})
    assert moved.status_code == 200 and "3 of 10" in moved.text


def test_badge_text_is_escaped() -> None:
    svg = badge_svg(label='<script>alert("x")</script>', value="1 & 2")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "1 &amp; 2" in svg
    ElementTree.fromstring(svg)  # noqa: S314 (well-formed: our own markup)


# --- CORS ---


def test_public_api_reads_answer_any_origin_without_credentials(
    client: TestClient, letter: Letter
) -> None:
    for path in ("/api/v1/letters", "/api/v1/letters/ice-out",
                 "/api/v1/letters/ice-out/signatures", "/api/v1/letters/nope"):  # fmt: skip
        response = client.get(path, headers=ORIGIN)
        assert response.headers["access-control-allow-origin"] == "*", path
        assert "access-control-allow-credentials" not in response.headers, path
        assert "etag" in response.headers["access-control-expose-headers"].lower(), path


def test_a_cross_origin_read_preflight_is_answered(client: TestClient, letter: Letter) -> None:
    response = client.options(
        "/api/v1/letters/ice-out",
        headers={
            **ORIGIN,
            "access-control-request-method": "GET",
            "access-control-request-headers": "if-none-match",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert set(response.headers["access-control-allow-methods"].split(", ")) == {"GET", "HEAD"}
    assert "if-none-match" in response.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in response.headers


def test_writes_pages_and_the_dashboard_get_no_cors(client: TestClient, letter: Letter) -> None:
    preflight = client.options(
        "/api/v1/letters/ice-out/signatures",
        headers={**ORIGIN, "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 405
    post = client.post("/api/v1/letters/ice-out/signatures", json={}, headers=ORIGIN)
    assert "access-control-allow-origin" not in post.headers
    for path in ("/", "/letters/ice-out", "/dashboard", "/letters/ice-out/embed", "/login"):
        response = client.get(path, headers=ORIGIN)
        assert "access-control-allow-origin" not in response.headers, path
    page_preflight = client.options(
        "/letters/ice-out", headers={**ORIGIN, "access-control-request-method": "GET"}
    )
    assert "access-control-allow-origin" not in page_preflight.headers


def test_a_304_from_the_api_keeps_the_cors_header(client: TestClient, letter: Letter) -> None:
    etag = client.get("/api/v1/letters/ice-out", headers=ORIGIN).headers["etag"]
    again = client.get("/api/v1/letters/ice-out", headers={**ORIGIN, "if-none-match": etag})
    assert again.status_code == 304
    assert again.headers["access-control-allow-origin"] == "*"


def test_the_sign_form_still_refuses_other_sites(client: TestClient, letter: Letter) -> None:
    """CORS opens reads only: a form posted from elsewhere is still refused."""
    refused = client.post(
        "/letters/ice-out/sign", data=GOOD_FORM, headers={"sec-fetch-site": "cross-site"}
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


# --- in a browser, framed by another site ---


def test_another_site_can_frame_the_embed_and_only_the_embed(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Chromium on another origin frames the embed (shown, accessible, its button opens
    the letter in a new tab) and the letter page (refused: `frame-ancestors 'none'`)."""
    path = tmp_path / "embed.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, f"sqlite:///{path}", base_url=base_url)
    with database.write() as session:
        letter = make_letter(session, slug="framed", title="A letter worth framing", goal=10)
        sign_and_confirm(session, letter, settings, name="Grace Hopper")
    host_page = (
        "<!doctype html><html lang='en'><title>Other site</title>"
        f"<iframe id='embed' title='embed' src='{base_url}/letters/framed/embed'></iframe>"
        f"<iframe id='page' title='page' src='{base_url}/letters/framed'></iframe></html>"
    )
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text(host_page, encoding="utf-8")
    other, other_url = free_socket()
    other_site = other_url.replace("127.0.0.1", "localhost") + "/"  # another site
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = ThreadingHTTPServer(other.getsockname(), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = other
    other.listen()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with serve(sock, settings), launch_chromium() as browser:
            context = browser.new_context()
            page = context.new_page()
            page.goto(other_site)
            embed = page.frame_locator("#embed")
            assert embed.locator("h1").inner_text(timeout=10_000) == "A letter worth framing"
            assert embed.locator("[data-live-count]").inner_text() == "1"
            # The letter page refuses to be framed: its frame never gets the letter.
            page.wait_for_timeout(500)
            framed_page = page.frame(url=f"{base_url}/letters/framed")
            assert framed_page is None or "A letter worth framing" not in framed_page.content()
            # The button opens the letter in a new tab.
            with context.expect_page() as opened:
                embed.get_by_role("link", name="Sign this letter").click()
            new_tab = opened.value
            new_tab.wait_for_load_state()
            assert new_tab.url == f"{base_url}/letters/framed#sign-title"
            # The embed on its own passes axe-core's WCAG 2.2 AA rules.
            alone = context.new_page()
            alone.goto(f"{base_url}/letters/framed/embed")
            assert axe_violations(alone) == []
            context.close()
    finally:
        server.shutdown()
        server.server_close()
        database.dispose()


def test_the_embed_and_the_share_section_are_valid_html(
    client: TestClient, letter: Letter, tmp_path: Path
) -> None:
    """The Nu HTML Checker finds no error in the embed, nor in the letter page's share
    section and tags (before and after signing)."""
    command = vnu_command()  # skips (fails in CI) if vnu cannot run
    assert command
    pages = {"embed": client.get("/letters/ice-out/embed").text}
    pages["letter"] = client.get("/letters/ice-out").text
    client.cookies.set("thanks", "ice-out")
    pages["thanks"] = client.get("/letters/ice-out").text
    files = []
    for name, text in pages.items():
        files.append(tmp_path / f"{name}.html")
        files[-1].write_text(text, encoding="utf-8")
    assert [str(error) for error in vnu_errors(files)] == []
