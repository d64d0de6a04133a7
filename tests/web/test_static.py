"""Static files under content-hashed names with a one-year immutable cache, plain names
still served with a short one, and gzip on text responses that carry no secret
(app/web/static.py, app/web/compression.py; D86, D87)."""

from __future__ import annotations

import gzip
import os
import re
import shutil
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response

from app.config import STATIC_DIR, TEMPLATES_DIR
from app.main import create_app
from app.organizers.models import Role
from app.web.static import IMMUTABLE, REVALIDATE, SHORT, HashedStaticFiles, StaticManifest
from tests.support.config import make_settings
from tests.support.organizers import sign_in_as
from tests.web.flows import add_letter, add_verified_signers

HASHED = re.compile(r"^/static/(?:[\w-]+/)*[\w.-]+\.[0-9a-f]{12}\.[a-z]+$")
STATIC_REFERENCE = re.compile(r'(?:href|src|data-worker)="(/static/[^"]+)"')
GZIP = {"accept-encoding": "gzip"}
PLAIN = {"accept-encoding": "identity"}


def _raw(client: TestClient, url: str, headers: dict[str, str]) -> tuple[Response, bytes]:
    """The response and its body as sent (`.content` would be decompressed)."""
    with client.stream("GET", url, headers=headers) as response:
        return response, b"".join(response.iter_raw())


def _assert_security_headers(response: Response) -> None:
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


# --- hashed names ---


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("style.css", "text/css; charset=utf-8"),
        ("live.js", "text/javascript; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
        ("vendor/altcha/altcha.min.js", "text/javascript; charset=utf-8"),
    ],
)
def test_a_hashed_url_is_served_with_an_immutable_year(
    app: FastAPI, client: TestClient, name: str, content_type: str
) -> None:
    url = app.state.static_manifest.url(name)
    assert HASHED.match(url), url
    assert url != f"/static/{name}"
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.content == (STATIC_DIR / name).read_bytes()
    _assert_security_headers(response)
    # A browser revalidating anyway (a forced reload) gets a 304 with the same promise.
    again = client.get(url, headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["cache-control"] == IMMUTABLE


def test_the_plain_url_still_works_with_a_short_cache(client: TestClient) -> None:
    for name in ("style.css", "vendor/altcha/pbkdf2.js", "altcha-setup.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.content == (STATIC_DIR / name).read_bytes()
        assert response.headers["cache-control"] == "public, max-age=300, must-revalidate"
        assert response.headers["etag"] and response.headers["last-modified"]
        _assert_security_headers(response)
        again = client.get(f"/static/{name}", headers={"if-none-match": response.headers["etag"]})
        assert again.status_code == 304, name
        assert again.headers["cache-control"] == SHORT


def test_unknown_and_escaping_paths_are_404(client: TestClient) -> None:
    for url in (
        "/static/nope.css",
        "/static/nope.0123456789ab.css",
        "/static/../app/config.py",
        "/static/%2e%2e/pyproject.toml",
    ):
        assert client.get(url).status_code == 404, url


def _static_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "static"
    (directory / "vendor").mkdir(parents=True)
    (directory / "style.css").write_text("body { color: black; }\n")
    (directory / "vendor" / "lib.min.js").write_text("export const a = 1;\n")
    (directory / "LICENSE").write_text("MIT\n")
    return directory


def test_a_changed_file_gets_a_new_hash(tmp_path: Path) -> None:
    directory = _static_dir(tmp_path)
    before = StaticManifest(directory)
    assert re.fullmatch(r"/static/style\.[0-9a-f]{12}\.css", before.url("style.css"))
    assert re.fullmatch(
        r"/static/vendor/lib\.min\.[0-9a-f]{12}\.js", before.url("vendor/lib.min.js")
    )
    assert re.fullmatch(r"/static/LICENSE\.[0-9a-f]{12}", before.url("LICENSE"))
    assert StaticManifest(directory).url("style.css") == before.url("style.css")  # stable

    (directory / "style.css").write_text("body { color: navy; }\n")
    after = StaticManifest(directory)
    assert after.url("style.css") != before.url("style.css")
    assert after.url("vendor/lib.min.js") == before.url("vendor/lib.min.js")
    with pytest.raises(LookupError, match=r"static/nope\.css"):
        after.url("nope.css")


def _serve(directory: Path) -> tuple[StaticManifest, TestClient]:
    manifest = StaticManifest(directory)
    app = FastAPI()
    app.mount("/static", HashedStaticFiles(manifest), name="static")
    return manifest, TestClient(app)


def test_a_hash_that_is_not_the_files_own_is_never_promised_for_a_year(tmp_path: Path) -> None:
    directory = _static_dir(tmp_path)
    manifest, client = _serve(directory)
    current = manifest.url("style.css")
    assert client.get(current).headers["cache-control"] == IMMUTABLE

    # Another release's hash (a page from a process with other files): today's bytes,
    # revalidated every time.
    other = client.get("/static/style.0123456789ab.css")
    assert other.status_code == 200
    assert other.text == "body { color: black; }\n"
    assert other.headers["cache-control"] == REVALIDATE

    # Edited after startup (a developer at work): the URL still answers, but no longer
    # with a year-long promise about bytes it was not computed from.
    (directory / "style.css").write_text("body { color: navy; }\n")
    os.utime(directory / "style.css", ns=(1, 1))
    edited = client.get(current)
    assert edited.status_code == 200
    assert edited.text == "body { color: navy; }\n"
    assert edited.headers["cache-control"] == REVALIDATE


# --- every reference resolves ---


def test_templates_name_static_files_only_through_static_url() -> None:
    names = []
    for path in TEMPLATES_DIR.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""["']/static/""", text), path  # a literal URL: never hashed
        names += re.findall(r"""static_url\(\s*['"]([^'"]+)['"]\s*\)""", text)
    assert "style.css" in names
    for name in names:
        assert (STATIC_DIR / name).is_file(), name


@pytest.fixture
def pow_app(tmp_path: Path, sqlite_template: Path) -> FastAPI:
    path = tmp_path / "static.db"
    shutil.copy(sqlite_template, path)
    settings = make_settings(
        tmp_path, f"sqlite:///{path}", proof_of_work="always", proof_of_work_cost=10
    )
    return create_app(settings)


def test_every_static_url_a_page_names_is_served(pow_app: FastAPI) -> None:
    letter = add_letter(pow_app)
    add_verified_signers(pow_app, letter, {"name": "Grace Hopper"})
    with TestClient(pow_app, base_url="http://testserver", client=("127.0.0.1", 50000)) as client:
        pages = [
            "/",
            f"/letters/{letter.slug}",
            f"/letters/{letter.slug}/signers",
            "/letters/nope",  # the error page
        ]
        urls: set[str] = set()
        for page in pages:
            urls |= set(STATIC_REFERENCE.findall(client.get(page).text))
        sign_in_as(client, pow_app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
        for page in (
            "/dashboard",
            f"/dashboard/letters/{letter.slug}",
            f"/dashboard/letters/{letter.slug}/packet",
        ):
            response = client.get(page)
            assert response.status_code == 200, page
            urls |= set(STATIC_REFERENCE.findall(response.text))

        expected = {
            "style.css", "favicon.svg", "live.js", "altcha-setup.js", "dashboard.css",
            "delivery.css", "vendor/altcha/altcha.min.js", "vendor/altcha/altcha.css",
            "vendor/altcha/pbkdf2.js",
        }  # fmt: skip
        manifest: StaticManifest = pow_app.state.static_manifest
        assert urls == {manifest.url(name) for name in expected}
        for url in urls:
            assert HASHED.match(url), url
            response = client.get(url)
            assert response.status_code == 200, url
            assert response.headers["cache-control"] == IMMUTABLE, url


# --- compression ---


def test_html_json_and_css_are_gzipped_when_the_client_accepts_it(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app)
    for n in range(5):  # a list long enough to be worth compressing
        add_letter(app, slug=f"more-{n}", title=f"Letter number {n}")
    add_verified_signers(
        app, letter, *({"name": f"Signer {n}", "email": f"s{n}@example.org"} for n in range(12))
    )
    for url in (
        "/",  # HTML, no form
        f"/letters/{letter.slug}/signers",
        "/api/v1/letters",  # JSON
        f"/api/v1/letters/{letter.slug}/signatures",
        "/static/style.css",  # CSS, plain and hashed
        app.state.static_manifest.url("style.css"),
    ):
        compressed, compressed_body = _raw(client, url, GZIP)
        assert compressed.status_code == 200, url
        assert compressed.headers["content-encoding"] == "gzip", url
        assert "accept-encoding" in compressed.headers["vary"].lower(), url
        _assert_security_headers(compressed)

        plain, plain_body = _raw(client, url, PLAIN)
        assert "content-encoding" not in plain.headers, url
        assert "accept-encoding" in plain.headers["vary"].lower(), url  # for a shared cache
        for response in (compressed, plain):  # each name once, whoever added it
            names = [name.strip().lower() for name in response.headers["vary"].split(",")]
            assert len(names) == len(set(names)), (url, response.headers["vary"])
        _assert_security_headers(plain)
        assert gzip.decompress(compressed_body) == plain_body, url
        assert len(compressed_body) < len(plain_body) / 2, url


def test_small_responses_stay_plain(client: TestClient) -> None:
    response, _ = _raw(client, "/healthz", GZIP)
    assert response.status_code == 200
    assert "content-encoding" not in response.headers


def test_no_secret_is_compressed_beside_attacker_text(app: FastAPI, client: TestClient) -> None:
    """BREACH: the public letter page holds no token and is compressed; a page with the
    CSRF token (the form sent back with its errors: attacker-chosen text beside the
    token; the confirm page) and the per-person dashboard go out uncompressed."""
    letter = add_letter(app)
    first, body = _raw(client, f"/letters/{letter.slug}", GZIP)
    assert first.headers["content-encoding"] == "gzip"
    assert b'name="csrf_token"' not in gzip.decompress(body)
    assert "set-cookie" not in first.headers
    _assert_security_headers(first)

    # A browser that sends no Origin nor Sec-Fetch-Site gets the form back with a token.
    errors = client.post(
        f"/letters/{letter.slug}/sign",
        data={"name": "csrf_token=" + "A" * 40, "email": "x" * 600},
        headers=GZIP,
    )
    assert errors.status_code == 422
    assert 'name="csrf_token"' in errors.text and "A" * 40 in errors.text
    assert "content-encoding" not in errors.headers
    again = client.post(
        f"/letters/{letter.slug}/sign",
        data={"name": "csrf_token=" + "A" * 40, "csrf_token": client.cookies["csrf"]},
        headers=GZIP,
    )
    assert again.status_code == 422  # the cookie already set: the token is still there
    assert "set-cookie" not in again.headers
    assert "content-encoding" not in again.headers

    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    dashboard, body = _raw(client, f"/dashboard/letters/{letter.slug}", GZIP)
    assert dashboard.status_code == 200
    assert len(body) > 500  # big enough to be compressed
    assert "content-encoding" not in dashboard.headers
