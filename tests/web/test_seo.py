"""What search engines read: sitemap.xml, robots.txt, and on every page a canonical
link, a description, and `noindex` where the page is private (D104)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import tokens
from app.config import Settings
from app.db import utcnow
from app.letters.models import Letter, LetterStatus
from app.letters.seo import PRIVATE_PREFIXES
from tests.web.flows import add_letter, pending_signature

SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
CANONICAL = re.compile(r'<link rel="canonical" href="([^"]+)">')
DESCRIPTION = re.compile(r'<meta name="description" content="([^"]+)">')
NOINDEX = re.compile(r'<meta name="robots" content="noindex[^"]*">')


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    return add_letter(app, slug="ice-out", title="Cancel the contracts", summary="End them.")


def test_the_sitemap_lists_public_letters_only(
    client: TestClient, app: FastAPI, letter: Letter
) -> None:
    add_letter(app, slug="closed-one", status=LetterStatus.CLOSED)
    add_letter(app, slug="draft-one", status=LetterStatus.DRAFT)
    archived = add_letter(app, slug="archived-one", status=LetterStatus.CLOSED)
    with app.state.database.write() as session:
        stored = session.get(Letter, archived.id)
        assert stored is not None
        stored.archived_at = utcnow() - timedelta(days=1)
    response = client.get("/sitemap.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert response.headers["cache-control"].startswith("public")
    root = ElementTree.fromstring(response.content)  # noqa: S314 (our own sitemap)
    assert root.tag == f"{SITEMAP}urlset"
    urls = {url.findtext(f"{SITEMAP}loc"): url.findtext(f"{SITEMAP}lastmod") for url in root}
    assert set(urls) == {
        "http://testserver/",
        "http://testserver/letters/ice-out",
        "http://testserver/letters/closed-one",
    }
    lastmod = urls["http://testserver/letters/ice-out"]
    assert lastmod is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", lastmod)


def test_the_sitemap_ignores_the_host_header(client: TestClient, letter: Letter) -> None:
    assert "evil" not in client.get("/sitemap.xml", headers={"host": "evil.example"}).text


def test_robots_txt_keeps_private_pages_out(client: TestClient) -> None:
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert lines[0] == "User-agent: *"
    disallowed = {line.removeprefix("Disallow: ") for line in lines if line.startswith("Disallow:")}
    for path in ("/verify/", "/signature/", "/dev/", "/dashboard", "/login", "/unsubscribe/",
                 "/receipt", "/letters/*/check-email"):  # fmt: skip
        assert path in disallowed, path
    assert "/" not in disallowed and "/letters/" not in disallowed
    assert "Sitemap: http://testserver/sitemap.xml" in lines


def _pages(
    app: FastAPI, app_settings: Settings, letter: Letter
) -> dict[str, tuple[str | None, bool]]:
    """Path -> (canonical expected, whether it must say noindex). An error page has no
    canonical address and says noindex, whatever its path."""
    signature = pending_signature(app, letter, name="Pending Person")
    token = tokens.issue(app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)
    return {
        "/": ("http://testserver/", False),
        "/letters/ice-out": ("http://testserver/letters/ice-out", False),
        "/letters/ice-out?lang=es": ("http://testserver/letters/ice-out?lang=es", False),
        "/letters/ice-out?lang=xx&q=1": ("http://testserver/letters/ice-out", False),
        "/letters/ice-out/signers": ("http://testserver/letters/ice-out/signers", False),
        "/letters/ice-out/changes": ("http://testserver/letters/ice-out/changes", False),
        "/privacy": ("http://testserver/privacy", False),
        "/letters/ice-out/check-email": ("http://testserver/letters/ice-out/check-email", True),
        f"/verify/{token}": (f"http://testserver/verify/{token}", True),
        "/verify/nonsense": ("http://testserver/verify/nonsense", True),
        "/login": ("http://testserver/login", True),
        "/dev/mail": ("http://testserver/dev/mail", True),
        "/letters/nope": (None, True),
        "/dev/nope": (None, True),
        "/letters/ice-out/embed": ("http://testserver/letters/ice-out", False),  # its letter
    }


def test_every_page_has_a_canonical_link_and_a_description(
    client: TestClient, app: FastAPI, app_settings: Settings, letter: Letter
) -> None:
    for path, (canonical, noindex) in _pages(app, app_settings, letter).items():
        response = client.get(path, headers={"host": "evil.example"})
        assert response.headers["content-type"].startswith("text/html"), path
        page = response.text
        assert bool(NOINDEX.search(page)) == noindex, path
        if canonical is None:  # an error page
            assert response.status_code == 404 and not CANONICAL.findall(page), path
            continue
        assert CANONICAL.findall(page) == [canonical], path
        descriptions = DESCRIPTION.findall(page)
        assert len(descriptions) == 1 and html.unescape(descriptions[0]).strip(), path


def test_a_letter_page_is_described_by_its_summary(client: TestClient, letter: Letter) -> None:
    assert DESCRIPTION.findall(client.get("/letters/ice-out").text) == ["End them."]
    home = DESCRIPTION.findall(client.get("/").text)
    assert home and home != ["End them."]


def test_noindex_pages_match_robots_txt() -> None:
    """The template's list (letters/_meta.html) and robots.txt's say the same."""
    from app.config import TEMPLATES_DIR

    template = (TEMPLATES_DIR / "letters" / "_meta.html").read_text(encoding="utf-8")
    for prefix in PRIVATE_PREFIXES:
        if prefix == "/signature/":  # those pages say noindex themselves
            assert "noindex" in (TEMPLATES_DIR / "signatures" / "manage.html").read_text()
            continue
        assert f'"{prefix}"' in template, prefix
