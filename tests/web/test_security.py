"""Headers, CSRF, no third-party requests, and links that ignore the Host header."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Iterator
from email import policy
from email.parser import BytesParser
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from httpx2 import Response

from app import tokens
from app.config import STATIC_DIR, TEMPLATES_DIR, Settings
from app.letters.models import Letter
from app.mail.models import OutboxEmail
from app.main import create_app
from app.signatures.models import PendingSignature
from tests.support.config import REPO_ROOT, make_settings
from tests.web.conftest import csrf_from
from tests.web.flows import (
    BROWSER_POST,
    GOOD_FORM,
    VERIFY_LINK,
    add_letter,
    add_verified_signers,
    count,
    deliver,
    outbox,
    pending_signature,
    post_sign_form,
    signatures,
)

URL_ATTRIBUTE = re.compile(
    r"""\b(src|href|action|srcset|poster|data|formaction|content)\s*=\s*["']([^"']*)["']""", re.I
)


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    letter = add_letter(app, slug="ice-out", title="Cancel the contracts", goal=10)
    add_verified_signers(app, letter, {"name": "Grace Hopper"}, {"display": "anonymous"})
    return letter


@pytest.fixture
def verify_path(app: FastAPI, app_settings: Settings, letter: Letter) -> str:
    signature = pending_signature(app, letter, name="Pending Person")
    token = tokens.issue(app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)
    return f"/verify/{token}"


def _html_responses(
    app: FastAPI, client: TestClient, letter: Letter, verify_path: str
) -> Iterator[tuple[str, Response]]:
    """One response of every kind of HTML page the app renders."""
    slug = letter.slug
    page = client.get(f"/letters/{slug}")
    post_sign_form(client, slug, email="someone@example.org")
    deliver(app)

    @app.get("/test-only-crash")
    def crash() -> None:
        raise RuntimeError("a bug")

    crashing = TestClient(app, raise_server_exceptions=False)
    yield "home", client.get("/")
    yield "letter", page
    client.cookies.set("thanks", slug)  # what confirming leaves in this browser
    yield "thanks", client.get(f"/letters/{slug}")
    client.cookies.delete("thanks")
    yield "signers", client.get(f"/letters/{slug}/signers")
    yield "search", client.get(f"/letters/{slug}/signers?q=grace")
    yield "check email", client.get(f"/letters/{slug}/check-email")
    yield "confirm", client.get(verify_path)
    yield "dev mail", client.get("/dev/mail")
    yield "bad link", client.get("/verify/nonsense")
    yield "form errors", client.post(f"/letters/{slug}/sign", headers=BROWSER_POST)
    yield "csrf", client.post(f"/letters/{slug}/sign", data=GOOD_FORM, headers=CROSS_SITE)
    yield "not found", client.get("/letters/nope")
    yield "method", client.delete(f"/letters/{slug}")
    yield (
        "too large",
        client.post(
            f"/letters/{slug}/sign",
            content=b"x" * 70_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
    )
    yield "server error", crashing.get("/test-only-crash")


@pytest.fixture
def html_pages(
    app: FastAPI, client: TestClient, letter: Letter, verify_path: str
) -> dict[str, Response]:
    pages = dict(_html_responses(app, client, letter, verify_path))
    expected = {
        "form errors": 422,
        "csrf": 403,
        "not found": 404,
        "method": 405,
        "too large": 413,
        "server error": 500,
        "bad link": 400,
    }
    for name, response in pages.items():
        assert response.status_code == expected.get(name, 200), name
        assert response.headers["content-type"].startswith("text/html"), name
    return pages


def _csp(response: Response) -> dict[str, list[str]]:
    directives = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


# --- headers ---


def test_every_html_response_carries_the_security_headers(html_pages: dict[str, Response]) -> None:
    for name, response in html_pages.items():
        csp = _csp(response)
        assert csp["default-src"] == ["'self'"], name
        assert csp["frame-ancestors"] == ["'none'"], name
        everything = " ".join(value for values in csp.values() for value in values)
        for loose in ("'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:", "data:  "):
            assert loose not in everything.split(), (name, loose)
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["x-frame-options"] == "DENY", name
        assert response.headers["referrer-policy"] == "no-referrer", name


def test_json_responses_carry_them_too(client: TestClient, letter: Letter) -> None:
    for response in (
        client.get("/api/v1/letters"),
        client.get("/api/v1/letters/nope"),
        client.get("/healthz"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in response.headers["content-security-policy"]


def test_pages_need_nothing_the_policy_forbids(html_pages: dict[str, Response]) -> None:
    """No inline script, inline style or event handler: the CSP would block them."""
    for name, response in html_pages.items():
        for script in re.findall(r"<script\b[^>]*>", response.text, re.I):
            assert re.search(r'\bsrc="/static/[^"]+\.[0-9a-f]{12}\.js"', script), (name, script)
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", response.text), name
        assert not re.search(r"<style\b", response.text, re.I), name
        assert not re.search(r"\sstyle\s*=", response.text, re.I), name
        assert not re.search(r"\son[a-z]+\s*=", response.text, re.I), name


def test_token_pages_do_not_leak_the_token_by_referrer(
    client: TestClient, verify_path: str
) -> None:
    response = client.get(verify_path)
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<meta name="referrer" content="no-referrer">' in response.text


def test_static_files_carry_nosniff(client: TestClient) -> None:
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"


# --- CSRF ---


def _csrf_cookie(response: Response) -> SimpleCookie:
    cookies = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        cookies.load(header)
    return cookies


def test_the_csrf_cookie_is_httponly_and_samesite_lax(client: TestClient, verify_path: str) -> None:
    response = client.get(verify_path)  # a page whose form carries a token
    [raw] = response.headers.get_list("set-cookie")
    morsel = _csrf_cookie(response)["csrf"]
    assert morsel.value == csrf_from(response.text)
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert not morsel["domain"]
    assert "secure" not in raw.lower()  # http base URL: a Secure cookie would never come back

    again = client.get(verify_path)
    assert "set-cookie" not in again.headers  # a known cookie is reused, not rotated
    assert csrf_from(again.text) == morsel.value


def test_the_public_letter_page_carries_no_token_and_sets_no_cookie(
    client: TestClient, letter: Letter
) -> None:
    page = client.get(f"/letters/{letter.slug}")
    assert 'name="csrf_token"' not in page.text
    assert "set-cookie" not in page.headers
    assert page.headers["cache-control"].startswith("public")


def test_under_https_the_cookie_is_host_prefixed_and_secure(
    tmp_path: Path, app_settings: Settings
) -> None:
    settings = make_settings(tmp_path, app_settings.database_url, base_url="https://letters.test")
    app = create_app(settings)
    letter = add_letter(app)
    with TestClient(app, base_url="https://letters.test") as client:
        # A browser that says nothing of where its POST comes from gets the form back
        # with a token (nothing stored), and the token works.
        before = count(app, PendingSignature)
        refused = client.post(f"/letters/{letter.slug}/sign", data=GOOD_FORM)
        assert refused.status_code == 422
        morsel = _csrf_cookie(refused)["__Host-csrf"]
        assert morsel["secure"] is True and morsel["httponly"] is True
        assert morsel["samesite"] == "Lax" and morsel["path"] == "/" and not morsel["domain"]
        assert morsel.value == csrf_from(refused.text)
        assert "max-age=" in refused.headers["strict-transport-security"]
        assert count(app, PendingSignature) == before
        signed = client.post(
            f"/letters/{letter.slug}/sign",
            data={**GOOD_FORM, "csrf_token": morsel.value},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        assert count(app, PendingSignature) == before + 1


def test_pages_without_a_form_set_no_cookie(client: TestClient, letter: Letter) -> None:
    for path in ("/", f"/letters/{letter.slug}/signers", "/api/v1/letters", "/healthz"):
        assert "set-cookie" not in client.get(path).headers, path


CROSS_SITE = {"sec-fetch-site": "cross-site"}
FORGED_ORIGINS: dict[str, dict[str, str]] = {
    "cross-site": CROSS_SITE,
    "same-site (a sibling subdomain)": {"sec-fetch-site": "same-site"},
    "typed or bookmarked": {"sec-fetch-site": "none"},
    "another site's origin": {"origin": "https://evil.example"},
    "a sibling's origin": {"origin": "http://evil.testserver"},
    "our host on another port": {"origin": "http://testserver:8443"},
    "cross-site, with our origin too": {**CROSS_SITE, "origin": "http://testserver"},
}


@pytest.mark.parametrize("headers", FORGED_ORIGINS.values(), ids=FORGED_ORIGINS.keys())
def test_a_post_from_another_site_is_403_and_stores_nothing_whatever_its_token(
    app: FastAPI, client: TestClient, letter: Letter, headers: dict[str, str]
) -> None:
    refused = client.post(f"/letters/{letter.slug}/sign", data=GOOD_FORM)  # gets a token
    token = csrf_from(refused.text)
    before = count(app, PendingSignature), count(app, OutboxEmail)
    for data in (GOOD_FORM, {**GOOD_FORM, "csrf_token": token}):  # a right token too
        response = client.post(
            f"/letters/{letter.slug}/sign", data=data, headers=headers, follow_redirects=False
        )
        assert response.status_code == 403
        assert "This form has expired" in response.text
    assert (count(app, PendingSignature), count(app, OutboxEmail)) == before


OWN_ORIGINS: dict[str, dict[str, str]] = {
    "fetch metadata": BROWSER_POST,
    "the base URL's origin": {"origin": "http://testserver"},
    "fetch metadata and origin": {**BROWSER_POST, "origin": "http://testserver"},
}


@pytest.mark.parametrize("headers", OWN_ORIGINS.values(), ids=OWN_ORIGINS.keys())
def test_a_post_that_says_it_comes_from_this_site_needs_no_token(
    app: FastAPI, letter: Letter, headers: dict[str, str]
) -> None:
    before = count(app, PendingSignature)
    with TestClient(app) as fresh:  # no cookie at all
        response = fresh.post(
            f"/letters/{letter.slug}/sign", data=GOOD_FORM, headers=headers, follow_redirects=False
        )
    assert response.status_code == 303
    assert count(app, PendingSignature) == before + 1


@pytest.fixture
def forged_sign_posts(client: TestClient, letter: Letter) -> dict[str, Callable[[], Response]]:
    """POSTs from a browser that sends neither Sec-Fetch-Site nor Origin: the fallback."""
    url = f"/letters/{letter.slug}/sign"
    token = csrf_from(client.post(url, data=GOOD_FORM).text)
    other = TestClient(client.app)
    other_token = csrf_from(other.post(url, data=GOOD_FORM).text)

    def post(data: dict[str, str], *, cookies: bool = True, **headers: str) -> Response:
        if not cookies:
            return TestClient(client.app).post(url, data=data, follow_redirects=False)
        return client.post(url, data=data, headers=headers, follow_redirects=False)

    return {
        "no token": lambda: post(GOOD_FORM),
        "empty token": lambda: post({**GOOD_FORM, "csrf_token": ""}),
        "wrong token": lambda: post(
            {
                **GOOD_FORM,
                "csrf_token": token[:-1] + "A" if not token.endswith("A") else token[:-1] + "B",
            }
        ),
        "someone else's token": lambda: post({**GOOD_FORM, "csrf_token": other_token}),
        "no cookie": lambda: post({**GOOD_FORM, "csrf_token": token}, cookies=False),
        "Origin: null": lambda: post({**GOOD_FORM, "csrf_token": other_token}, origin="null"),
    }


def test_without_origin_headers_or_the_right_token_the_form_comes_back_and_nothing_is_stored(
    app: FastAPI, forged_sign_posts: dict[str, Callable[[], Response]]
) -> None:
    before = count(app, PendingSignature), count(app, OutboxEmail)
    for name, post in forged_sign_posts.items():
        response = post()
        assert response.status_code == 422, name
        assert "did not say this form came from this site" in response.text, name
        assert 'value="Ada Lovelace"' in response.text, name  # nothing to type again
        assert 'name="csrf_token"' in response.text, name
        assert "public" not in response.headers.get("cache-control", ""), name
    assert (count(app, PendingSignature), count(app, OutboxEmail)) == before


def test_a_planted_cookie_of_the_wrong_shape_is_not_trusted(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    before = count(app, OutboxEmail), count(app, PendingSignature)
    client.cookies.set("csrf", "attacker")
    response = client.post(
        f"/letters/{letter.slug}/sign", data={**GOOD_FORM, "csrf_token": "attacker"}
    )
    assert response.status_code == 422
    assert csrf_from(response.text) != "attacker"
    assert (count(app, OutboxEmail), count(app, PendingSignature)) == before


def test_confirming_without_the_right_csrf_token_is_403_and_changes_nothing(
    app: FastAPI, client: TestClient, letter: Letter, verify_path: str
) -> None:
    token = csrf_from(client.get(verify_path).text)
    for data in ({}, {"csrf_token": ""}, {"csrf_token": token[::-1]}):
        response = client.post(verify_path, data=data, follow_redirects=False)
        assert response.status_code == 403
    response = TestClient(app).post(verify_path, data={"csrf_token": token})
    assert response.status_code == 403
    for headers in FORGED_ORIGINS.values():  # the right pair, from another site
        forged = client.post(
            verify_path, data={"csrf_token": token}, headers=headers, follow_redirects=False
        )
        assert forged.status_code == 403
    assert [s for s in signatures(app) if s.name == "Pending Person"] == []
    assert client.get("/api/v1/letters/ice-out").json()["signature_count"] == 2

    ok = client.post(verify_path, data={"csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303  # the same request with the right token works


def test_confirming_from_this_site_needs_no_token(
    app: FastAPI, letter: Letter, verify_path: str
) -> None:
    with TestClient(app) as fresh:
        ok = fresh.post(verify_path, headers=BROWSER_POST, follow_redirects=False)
    assert ok.status_code == 303
    assert [s.name for s in signatures(app) if s.name == "Pending Person"] == ["Pending Person"]


# --- no third parties ---


def _external(url: str, own_host: str) -> bool:
    """True for anything that would reach past this site: another host, or a scheme
    other than http(s) to this host (javascript:, data:, ...). mailto: stays local."""
    parts = urlsplit(url.strip())
    if parts.scheme == "mailto":
        return False
    if parts.scheme == "":
        return bool(parts.netloc) and parts.netloc != own_host  # //host/...
    return parts.scheme not in ("http", "https") or parts.netloc != own_host


SHARE_HOSTS = {"s2f.kytta.dev", "bsky.app", "x.com", "wa.me"}
"""The share links' hosts (templates/letters/_share.html, D103): links only."""


def test_no_page_refers_to_another_host(html_pages: dict[str, Response]) -> None:
    shares: dict[str, set[str]] = {}
    for name, response in html_pages.items():
        text = response.text
        share = re.search(r'<(section|div) id="share".*?</\1>', text, re.S)
        if share:
            text = text.replace(share.group(0), "")
            for attribute, url in URL_ATTRIBUTE.findall(share.group(0)):
                if _external(url, "testserver"):
                    assert attribute.lower() == "href", url  # a link, never a resource
                    shares.setdefault(name, set()).add(urlsplit(url).netloc)
        for attribute, url in URL_ATTRIBUTE.findall(text):
            assert not _external(url, "testserver"), (name, attribute, url)
    # Only in the share links, on a letter's page (and in the thanks after signing).
    assert {"letter", "thanks"} <= set(shares)
    assert all(hosts == SHARE_HOSTS for hosts in shares.values()), shares


VENDORED_URLS = (
    # In the vendored ALTCHA widget (static/vendor/altcha/), never fetched: XML
    # namespaces, links in Svelte's error messages, the ALTCHA footer link (hidden by
    # the page's configuration), and the tarball its README names. The browser test
    # (tests/web/test_altcha.py) shows the page asks no other origin for anything.
    "http://www.w3.org/",
    "https://svelte.dev/e/",
    "https://altcha.org",
    "https://registry.npmjs.org/altcha/",
)


def test_templates_and_static_files_load_nothing_from_the_network() -> None:
    allowed = {
        # Share links a reader may click (templates/letters/_share.html, D103).
        "https://bsky.app/intent/compose",
        "https://s2f.kytta.dev/",
        "https://x.com/intent/post",
        "https://wa.me/",
        "http://www.w3.org/2000/svg",  # an XML namespace, never fetched
    }
    vendored = STATIC_DIR / "vendor"
    found: dict[str, list[str]] = {}
    for folder in (TEMPLATES_DIR, STATIC_DIR):
        for path in folder.rglob("*"):
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                for url in re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}[^\s\"'<>)]*", text):
                    base = url.split("?")[0]
                    if base in allowed:
                        continue
                    if path.is_relative_to(vendored) and base.startswith(VENDORED_URLS):
                        continue
                    found.setdefault(str(path.relative_to(REPO_ROOT)), []).append(url)
                assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text), path
    assert found == {}


# --- links come from BASE_URL, never from the request ---


def test_email_links_use_base_url_whatever_the_host_header(
    tmp_path: Path, app_settings: Settings
) -> None:
    settings = make_settings(
        tmp_path, app_settings.database_url, base_url="http://letters.example.org"
    )
    app = create_app(settings)

    @app.get("/test-only-host")
    def seen_host(request: Request) -> str:
        return str(request.base_url)

    add_letter(app, slug="ice-out")
    evil = {
        "host": "evil.example",
        "x-forwarded-host": "evil.example",
        "x-forwarded-proto": "https",
    }
    with TestClient(app, headers=evil) as client:
        assert client.get("/test-only-host").json() == "http://evil.example/"  # it does arrive
        signed = client.post(
            "/letters/ice-out/sign", data=GOOD_FORM, headers=BROWSER_POST, follow_redirects=False
        )
        assert signed.status_code == 303
        assert (
            client.post(
                "/api/v1/letters/ice-out/signatures", json={**GOOD_FORM, "email": "b@example.org"}
            ).status_code
            == 202
        )
        listed = client.get("/api/v1/letters").json()["items"][0]["url"]
        client.cookies.set("thanks", "ice-out")  # what confirming leaves in this browser
        thanks = client.get("/letters/ice-out").text
    assert listed == "http://letters.example.org/letters/ice-out"
    assert "http://letters.example.org/letters/ice-out" in thanks
    assert "evil.example" not in thanks

    assert deliver(app) == 2
    mailbox = settings.data_dir / "dev-mail"
    parser = BytesParser(policy=policy.default)
    messages = [parser.parsebytes(path.read_bytes()) for path in sorted(mailbox.glob("*.eml"))]
    assert len(messages) == 2
    for message in messages:
        raw = message.as_string()
        assert "evil.example" not in raw
        assert message["Message-ID"].endswith("@letters.example.org>")
        for part in ("plain", "html"):
            body = message.get_body(preferencelist=(part,))
            assert body is not None
            hosts = {host for host, _ in VERIFY_LINK.findall(body.get_content())}
            assert hosts == {"http://letters.example.org"}, part
    assert {email.kind for email in outbox(app)} == {"verify"}


def test_a_dev_mailbox_on_a_public_address_is_warned_about(
    tmp_path: Path, sqlite_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/dev/mail shows every confirmation link: running it on a public host is a leak."""
    path = tmp_path / "db.sqlite"
    shutil.copy(sqlite_template, path)
    with caplog.at_level(logging.WARNING, logger="undersigned"):
        create_app(make_settings(tmp_path, f"sqlite:///{path}", base_url="http://127.0.0.1:8000"))
    assert "readable by anyone at" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="undersigned"):
        create_app(
            make_settings(tmp_path, f"sqlite:///{path}", base_url="https://letters.example.org")
        )
    assert "readable by anyone at" in caplog.text


# --- request headers: at most 16 KB ---


def _filler(total: int) -> dict[str, str]:
    """Headers adding up to about `total` bytes on the wire."""
    return {f"x-filler-{i}": "a" * 980 for i in range(total // 1000)}


def test_more_than_16_kb_of_headers_is_431_with_the_page_and_headers(
    client: TestClient, letter: Letter
) -> None:
    assert client.get("/letters/ice-out", headers=_filler(15_000)).status_code == 200

    page = client.get("/letters/ice-out", headers=_filler(17_000))
    assert page.status_code == 431
    assert page.headers["content-type"].startswith("text/html")
    assert "headers are too large" in page.text
    assert _csp(page)["default-src"] == ["'self'"]
    assert page.headers["x-frame-options"] == "DENY"

    api = client.get("/api/v1/letters/ice-out", headers=_filler(17_000))
    assert api.status_code == 431
    assert api.json() == {
        "error": "headers_too_large",
        "detail": "The request's headers are too large.",
    }
    assert api.headers["x-content-type-options"] == "nosniff"


def test_one_huge_header_counts_too(client: TestClient, letter: Letter) -> None:
    response = client.get("/", headers={"cookie": "x=" + "a" * 20_000})
    assert response.status_code == 431


# --- redirects never go to a host the client chose ---


def test_the_trailing_slash_redirect_is_relative(client: TestClient, letter: Letter) -> None:
    evil = {"host": "evil.example", "x-forwarded-host": "evil.example"}
    response = client.get("/letters/ice-out/?q=1", headers=evil, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/letters/ice-out?q=1"
    assert client.get("/letters/ice-out/").status_code == 200  # followed: the letter
    assert client.get("/no-such-page/", follow_redirects=False).status_code == 404


@pytest.mark.parametrize(
    ("path", "location"),
    [("//evil.example", "/evil.example/"), ("/\\evil.example", "/evil.example/"),
     ("///evil.example/x", "/evil.example/x/")],
)  # fmt: skip
def test_a_redirect_is_never_protocol_relative(
    app: FastAPI, letter: Letter, path: str, location: str
) -> None:
    """`Location: //evil.example/` would leave the site as surely as an absolute URL.
    A catch-all route (none exists yet) is what would let such a path redirect."""

    @app.get("/{rest:path}/")
    def catch_all(rest: str) -> str:
        return rest

    with TestClient(app, base_url="http://evil.example") as client:
        response = client.get(f"http://evil.example{path}", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == location
