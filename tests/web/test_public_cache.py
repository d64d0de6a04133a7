"""Public answers kept for a few seconds in each process (app/web/cache.py): what is kept,
for how long, for whom it is bypassed, ETags and 304s, and that nothing personal is."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.config import Settings
from app.letters.models import Letter
from app.main import create_app
from app.web import cache
from app.web.cache import public
from tests.support.config import make_settings
from tests.support.organizers import sign_in_as
from tests.web.flows import BROWSER_POST, add_letter, add_verified_signers, tally_on

SECONDS = 5
PUBLIC_PATHS = (
    "/",
    "/letters/ice-out",
    "/letters/ice-out/signers",
    "/api/v1/letters",
    "/api/v1/letters/ice-out",
    "/api/v1/letters/ice-out/signatures",
    "/api/v1/letters/ice-out/breakdown",
)


class Clock:
    """Stands in for app.web.cache.monotonic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(cache, "monotonic", clock)
    return clock


@pytest.fixture
def cached_settings(tmp_path: Path, app_settings: Settings) -> Settings:
    return make_settings(tmp_path, app_settings.database_url, public_cache_seconds=SECONDS)


@pytest.fixture
def cached_app(cached_settings: Settings) -> FastAPI:
    return create_app(cached_settings)


@pytest.fixture
def letter(cached_app: FastAPI) -> Letter:
    letter = add_letter(cached_app, slug="ice-out", goal=100)
    add_verified_signers(cached_app, letter, {"name": "Grace Hopper"})
    return letter


@pytest.fixture
def browser(cached_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(cached_app, client=("127.0.0.1", 50000)) as client:
        yield client


@pytest.fixture
def counted(cached_app: FastAPI) -> dict[str, int]:
    """Test-only routes that count how often they really ran."""
    runs = {"public": 0, "cookie": 0, "no-store": 0, "slow": 0, "big": 0}
    settings: Settings = cached_app.state.settings

    @cached_app.get("/test-only/public")
    def public_route(request: Request, q: str = "") -> Response:
        runs["public"] += 1
        return public(Response(f"run {runs['public']}", media_type="text/plain"), settings)

    @cached_app.get("/test-only/cookie")
    def cookie_route() -> Response:
        runs["cookie"] += 1
        response = public(Response("with a cookie", media_type="text/plain"), settings)
        response.set_cookie("someone", "personal")
        return response

    @cached_app.get("/test-only/no-store")
    def no_store_route() -> Response:
        runs["no-store"] += 1
        return Response("personal", headers={"cache-control": "no-store"})

    @cached_app.get("/test-only/slow")
    async def slow_route() -> Response:
        runs["slow"] += 1
        await asyncio.sleep(0.2)
        return public(Response("slow", media_type="text/plain"), settings)

    @cached_app.get("/test-only/big")
    def big_route() -> Response:
        runs["big"] += 1
        body = os.urandom(cache.MAX_BODY_BYTES + 1)  # gzip cannot make it smaller
        return public(Response(body, media_type="application/octet-stream"), settings)

    return runs


def _signed_count(browser: TestClient, path: str = "/letters/ice-out") -> int:
    return tally_on(browser.get(path).text)


def test_public_answers_say_how_proxies_may_keep_them(browser: TestClient, letter: Letter) -> None:
    for path in PUBLIC_PATHS:
        response = browser.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == (
            "public, max-age=0, s-maxage=5, stale-while-revalidate=30"
        ), path
        assert re.fullmatch(r'(W/)?"[A-Za-z0-9_-]{22}"', response.headers["etag"]), path
        assert "accept-encoding" in response.headers["vary"].lower(), path
        assert "set-cookie" not in response.headers, path


def test_a_public_page_is_kept_for_its_seconds_then_made_again(
    cached_app: FastAPI, browser: TestClient, letter: Letter, clock: Clock
) -> None:
    assert _signed_count(browser) == 1
    assert browser.get("/api/v1/letters/ice-out").json()["signature_count"] == 1
    add_verified_signers(cached_app, letter, {"name": "Alan Turing"})

    clock.now += SECONDS - 0.5
    assert _signed_count(browser) == 1  # from memory: no database read
    assert browser.get("/api/v1/letters/ice-out").json()["signature_count"] == 1

    clock.now += 1
    assert _signed_count(browser) == 2
    assert browser.get("/api/v1/letters/ice-out").json()["signature_count"] == 2


def test_an_organizer_and_a_new_signer_see_the_page_as_it_is_now(
    cached_app: FastAPI, browser: TestClient, letter: Letter, clock: Clock
) -> None:
    assert _signed_count(browser) == 1
    add_verified_signers(cached_app, letter, {"name": "Alan Turing"})
    assert _signed_count(browser) == 1  # a reader: the kept page

    browser.cookies.set("thanks", "ice-out")  # what confirming leaves in this browser
    thanks = browser.get("/letters/ice-out")
    assert tally_on(thanks.text) == 2
    assert thanks.headers["cache-control"] == "no-store"
    browser.cookies.delete("thanks")

    with TestClient(cached_app) as organizer:
        sign_in_as(organizer, cached_app, "owner@example.org")
        assert _signed_count(organizer) == 2
    assert _signed_count(browser) == 1  # the thank-you page replaced nothing kept


def test_if_none_match_gets_a_304_from_memory_and_from_the_app(
    cached_app: FastAPI, browser: TestClient, letter: Letter, clock: Clock
) -> None:
    for path in ("/letters/ice-out", "/api/v1/letters/ice-out"):
        first = browser.get(path)
        etag = first.headers["etag"]
        kept = browser.get(path, headers={"if-none-match": etag})
        assert kept.status_code == 304, path
        assert kept.content == b""
        assert kept.headers["etag"] == etag
        assert kept.headers["cache-control"] == first.headers["cache-control"]
        assert "content-type" not in kept.headers and "set-cookie" not in kept.headers
        weak = browser.get(path, headers={"if-none-match": f'"other", W/{etag.removeprefix("W/")}'})
        assert weak.status_code == 304, path
        assert browser.get(path, headers={"if-none-match": '"other"'}).status_code == 200

    add_verified_signers(cached_app, letter, {"name": "Alan Turing"})
    clock.now += SECONDS + 1
    changed = browser.get("/letters/ice-out", headers={"if-none-match": first.headers["etag"]})
    assert changed.status_code == 200  # the count changed, so did the ETag
    assert tally_on(changed.text) == 2


def test_without_the_in_process_cache_etags_still_save_the_body(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, slug="ice-out")
    first = client.get(f"/letters/{letter.slug}")
    assert first.headers["cache-control"] == "public, no-cache"
    again = client.get(f"/letters/{letter.slug}", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    add_verified_signers(app, letter, {"name": "Alan Turing"})
    fresh = client.get(f"/letters/{letter.slug}", headers={"if-none-match": first.headers["etag"]})
    assert fresh.status_code == 200 and tally_on(fresh.text) == 1


def _without_render_time(body: bytes) -> bytes:
    return re.sub(rb'name="form_rendered" value="[^"]+"', b"", body)


def test_gzip_and_plain_are_kept_apart(browser: TestClient, letter: Letter) -> None:
    for _ in range(2):
        with browser.stream("GET", "/letters/ice-out", headers={"accept-encoding": "gzip"}) as r:
            zipped = b"".join(r.iter_raw())
            assert r.headers["content-encoding"] == "gzip"
            zipped_etag = r.headers["etag"]
        with browser.stream(
            "GET", "/letters/ice-out", headers={"accept-encoding": "identity"}
        ) as r:
            plain = b"".join(r.iter_raw())
            assert "content-encoding" not in r.headers
            assert r.headers["etag"] == zipped_etag  # weak: the same page either way
        assert _without_render_time(gzip.decompress(zipped)) == _without_render_time(plain)


def test_only_public_answers_without_cookies_are_kept(
    browser: TestClient, counted: dict[str, int]
) -> None:
    for _ in range(3):
        assert browser.get("/test-only/public").text == "run 1"
        browser.get("/test-only/cookie")
        browser.get("/test-only/no-store")
        assert browser.get("/test-only/big").status_code == 200
    assert counted == {"public": 1, "cookie": 3, "no-store": 3, "slow": 0, "big": 3}
    assert browser.get("/test-only/public?q=2").text == "run 2"  # the query it reads is the key


def test_a_refused_form_or_an_error_is_never_kept(
    cached_app: FastAPI, browser: TestClient, letter: Letter
) -> None:
    assert browser.get("/letters/nope").status_code == 404
    add_letter(cached_app, slug="nope")
    assert browser.get("/letters/nope").status_code == 200
    short = browser.get("/letters/ice-out/signers?q=a")
    assert short.status_code == 422
    assert "public" not in short.headers.get("cache-control", "")
    refused = browser.post("/letters/ice-out/sign", data={"name": "Kept Nowhere"})
    assert refused.status_code == 422
    assert "Kept Nowhere" not in browser.get("/letters/ice-out").text


def test_many_readers_at_once_make_the_page_once(
    cached_app: FastAPI, counted: dict[str, int]
) -> None:
    async def readers() -> list[str]:
        transport = httpx2.ASGITransport(app=cached_app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
            answers = await asyncio.gather(*(c.get("/test-only/slow") for _ in range(20)))
        return [answer.text for answer in answers]

    assert asyncio.run(readers()) == ["slow"] * 20
    assert counted["slow"] == 1


def test_the_least_recently_used_entry_goes_first(
    browser: TestClient, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    for query in ("a", "b", "a", "c", "a", "b"):
        browser.get(f"/test-only/public?q={query}")
    # a, b made; a kept; c pushes b out; a kept; b made again
    assert counted["public"] == 4


def test_made_up_queries_cannot_push_the_main_pages_out(
    browser: TestClient, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    browser.get("/test-only/public")
    for n in range(10):
        browser.get(f"/test-only/public?q={n}")
    assert browser.get("/test-only/public").text == "run 1"  # still kept
    assert counted["public"] == 11


def test_parameters_no_route_reads_do_not_make_another_entry(
    browser: TestClient, counted: dict[str, int]
) -> None:
    """D192: a shared link comes back with a new `fbclid` or `utm_*` on every click."""
    assert browser.get("/test-only/public?q=x&fbclid=IwAR1").text == "run 1"
    for query in ("fbclid=IwAR2&q=x", "q=x&utm_source=mastodon&utm_medium=social", "q=x&gclid=9"):
        assert browser.get(f"/test-only/public?{query}").text == "run 1", query
    assert browser.get("/test-only/public?q=y&fbclid=IwAR3").text == "run 2"  # q is read
    assert counted["public"] == 2


def test_a_click_id_never_reaches_another_visitors_page(
    browser: TestClient, letter: Letter
) -> None:
    """The page from memory is the same whatever made-up parameters came with it, so
    it may not show them: its language links keep only what a route reads."""
    first = browser.get("/letters/ice-out/signers?q=grace&fbclid=IwAR-first-visitor")
    assert first.status_code == 200
    assert "IwAR-first-visitor" not in first.text
    assert "q=grace" in first.text  # the search is kept in the language links
    second = browser.get("/letters/ice-out/signers?q=grace&fbclid=IwAR-second-visitor")
    assert second.headers["etag"] == first.headers["etag"]
    assert "IwAR" not in second.text


def test_signing_from_a_kept_page_works(
    cached_app: FastAPI, browser: TestClient, letter: Letter
) -> None:
    page = browser.get("/letters/ice-out")
    assert 'name="csrf_token"' not in page.text
    response = browser.post(
        "/letters/ice-out/sign",
        data={"name": "Ada Lovelace", "email": "ada@example.org", "display": "public"},
        headers=BROWSER_POST,
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_an_answer_from_memory_is_counted_under_its_route(
    browser: TestClient, letter: Letter
) -> None:
    labels = {"method": "GET", "route": "/letters/{slug}"}
    name = "undersigned_http_request_duration_seconds_count"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    for _ in range(3):
        assert browser.get("/letters/ice-out").status_code == 200
    assert REGISTRY.get_sample_value(name, labels) == before + 3
