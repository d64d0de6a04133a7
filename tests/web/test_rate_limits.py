"""Rate limits through the real app, on memory and on this machine's Redis: each limit at
its edge, the 429 page and JSON with Retry-After, one AbuseEvent per client and window,
no database work for a refused request, the client from the socket or a trusted proxy,
and a flood held to the limit while other people's signatures keep flowing.

Redis tests use the server at UNDERSIGNED_TEST_REDIS_URL (default redis://127.0.0.1:6379)
with a key prefix of their own, deleted afterwards; without a server they are skipped
(failed under UNDERSIGNED_TEST_REQUIRE_ALL).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count as counter
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import event, func, select
from starlette.requests import Request
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.abuse.models import AbuseEvent
from app.abuse.service import source_hash
from app.db import Database
from app.mail.backends import DevMailbox
from app.mail.models import OutboxEmail
from app.main import create_app
from app.organizers.models import LoginLink, Organizer, Role
from app.signatures.models import PendingSignature
from app.signlog.well_known import KEY_PATH
from app.web.client import client_ip, limit_subject
from app.web.ratelimit import DETAIL
from tests.support.browser import axe_violations, chromium
from tests.support.config import make_settings, skip_or_fail
from tests.support.factories import make_letter
from tests.support.live import serve
from tests.support.organizers import make_organizer, post_form, sign_in_as
from tests.support.ports import free_socket
from tests.web.flows import GOOD_FORM, add_letter, count, deliver, post_sign_form
from tests.web.test_openapi import OPERATIONS

REDIS_URL = os.environ.get("UNDERSIGNED_TEST_REDIS_URL", "redis://127.0.0.1:6379")
_apps = counter()


# --- Fixtures --------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The settings of one storage; for Redis a key prefix of this test's own."""
    if request.param == "memory":
        yield {"rate_limit_storage": "memory://"}
        return
    server = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        server.ping()
    except redis.RedisError:
        skip_or_fail(f"no Redis at {REDIS_URL}")
    prefix = f"undersigned-test-{uuid.uuid4().hex}"
    try:
        yield {"rate_limit_storage": REDIS_URL, "rate_limit_key_prefix": prefix}
    finally:
        for key in server.scan_iter(f"{prefix}:*"):
            server.delete(key)
        server.close()


MakeApp = Callable[..., FastAPI]


@pytest.fixture
def make_app(tmp_path: Path, sqlite_template: Path, storage: dict[str, str]) -> MakeApp:
    """An app with rate limits on (and the given settings), on a database of its own."""

    def make(**overrides: Any) -> FastAPI:
        path = tmp_path / f"limits-{next(_apps)}.db"
        shutil.copy(sqlite_template, path)
        values = {"rate_limits": True, **storage, **overrides}
        return create_app(make_settings(tmp_path, f"sqlite:///{path}", **values))

    return make


def at(app: FastAPI, ip: str) -> TestClient:
    """A client of `app` connecting from `ip` (its own cookies)."""
    return TestClient(app, base_url="http://testserver", client=(ip, 40000))


def _sign_api(client: TestClient, slug: str, **fields: Any) -> Response:
    return client.post(f"/api/v1/letters/{slug}/signatures", json={**GOOD_FORM, **fields})


def _login(client: TestClient, email: str) -> Response:
    return post_form(client, "/login", {"email": email})


def _retry_after(response: Response, most: int) -> int:
    seconds = int(response.headers["retry-after"])
    assert 1 <= seconds <= most, seconds
    return seconds


def assert_429_page(response: Response, most: int = 60) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    _retry_after(response, most)
    assert "<h1>Too many tries</h1>" in response.text
    assert "too many tries from your connection" in response.text
    assert "Nothing you sent was kept." in response.text
    assert "wait a minute" in response.text or "minutes, then try again" in response.text
    assert "content-security-policy" in response.headers  # the app's page, its headers


def assert_429_json(response: Response, most: int = 60) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "rate_limited", "detail": DETAIL}
    _retry_after(response, most)


def _events(app: FastAPI) -> list[tuple[str, int | None, str]]:
    with app.state.database.read() as session:
        rows = session.scalars(select(AbuseEvent).order_by(AbuseEvent.id))
        return [(row.kind, row.letter_id, row.source_hash) for row in rows]


def _source(app: FastAPI, ip: str) -> str:
    return source_hash(app.state.settings.secret, ip)


# --- Signing ---------------------------------------------------------------------------


def test_signing_is_limited_per_client_per_letter(make_app: MakeApp) -> None:
    app = make_app(rate_limit_sign="3/minute")
    first, second = add_letter(app), add_letter(app)
    person = at(app, "198.51.100.7")
    for n in range(3):
        response = post_sign_form(person, first.slug, email=f"p{n}@example.org")
        assert response.status_code == 303, n
    refused = post_sign_form(person, first.slug, email="p3@example.org")
    assert_429_page(refused)
    assert count(app, PendingSignature) == 3  # the refused one stored nothing
    # Another letter, or another client, has its own allowance.
    assert post_sign_form(person, second.slug).status_code == 303
    assert post_sign_form(at(app, "198.51.100.8"), first.slug).status_code == 303
    assert count(app, PendingSignature) == 5


def test_the_form_and_the_api_count_together(make_app: MakeApp) -> None:
    app = make_app(rate_limit_sign="3/minute")
    letter = add_letter(app)
    client = at(app, "2001:db8:7:1::5")
    assert post_sign_form(client, letter.slug).status_code == 303
    assert post_sign_form(client, letter.slug).status_code == 303
    assert _sign_api(client, letter.slug).status_code == 202
    assert_429_json(_sign_api(client, letter.slug))
    assert_429_page(post_sign_form(client, letter.slug))
    # An IPv6 client is its /64: another address in it is the same client...
    assert_429_json(_sign_api(at(app, "2001:db8:7:1:ffff::9"), letter.slug))
    # ...and the next /64 is another one.
    assert _sign_api(at(app, "2001:db8:7:2::5"), letter.slug).status_code == 202


def test_a_refusal_by_a_short_window_does_not_use_up_the_long_one(make_app: MakeApp) -> None:
    app = make_app(rate_limit_sign="2 per 2 seconds;3/minute")
    letter = add_letter(app)
    client = at(app, "198.51.100.9")
    assert [_sign_api(client, letter.slug).status_code for _ in range(3)] == [202, 202, 429]
    time.sleep(2.1)
    # The refused third did not count in the minute: one more goes through, then the
    # minute's limit holds, with a Retry-After that says so.
    assert _sign_api(client, letter.slug).status_code == 202
    refused = _sign_api(client, letter.slug)
    assert_429_json(refused)
    assert int(refused.headers["retry-after"]) > 50
    assert count(app, PendingSignature) == 3


def test_the_limit_is_checked_before_any_database_work(make_app: MakeApp) -> None:
    app = make_app(rate_limit_sign="1/minute")
    letter = add_letter(app)
    client = at(app, "198.51.100.10")
    assert _sign_api(client, letter.slug).status_code == 202
    assert _sign_api(client, letter.slug).status_code == 429  # the first refusal: recorded
    with _statements(app) as seen:
        assert _sign_api(client, letter.slug).status_code == 429
        assert post_form(client, f"/letters/{letter.slug}/sign", GOOD_FORM).status_code == 429
    assert seen == []


@contextmanager
def _statements(app: FastAPI) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = app.state.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_refusal_is_recorded_once_per_client_and_window(make_app: MakeApp) -> None:
    app = make_app(rate_limit_sign="2/minute", rate_limit_api="8/minute")
    letter = add_letter(app)
    noisy, other = "203.0.113.50", "203.0.113.51"
    client = at(app, noisy)
    statuses = [_sign_api(client, letter.slug).status_code for _ in range(10)]
    assert statuses == [202, 202] + [429] * 8  # the last two refused by the API's limit
    assert [_sign_api(at(app, other), letter.slug).status_code for _ in range(3)] == [
        202,
        202,
        429,
    ]
    assert _events(app) == [
        ("rate_limited", letter.id, _source(app, noisy)),  # signing: the letter's
        ("rate_limited", None, _source(app, noisy)),  # the API's: no letter
        ("rate_limited", letter.id, _source(app, other)),
    ]


# --- Signing in ------------------------------------------------------------------------


def test_sign_in_requests_are_limited_per_address_whoever_it_is(make_app: MakeApp) -> None:
    """An organizer's address and a stranger's are counted alike: the limit tells
    nothing about who has an account. Variants of one mailbox count as one."""
    app = make_app(rate_limit_login_address="3/hour", rate_limit_login_client="100/minute")
    with app.state.database.write() as session:
        make_organizer(session, "boss@example.org")
    answers = {}
    for who, address in (("organizer", "boss"), ("stranger", "nobody")):
        client = at(app, "198.51.100.20")
        variants = [
            f"{address}@example.org",
            f" {address.upper()}@Example.org",
            f"{address}+x@example.org",
        ]
        seen = [_login(client, variant) for variant in [*variants, f"{address}@example.org"]]
        answers[who] = [
            (r.status_code, r.headers.get("location"), "retry-after" in r.headers) for r in seen
        ]
        assert_429_page(seen[-1], most=3600)
    assert (
        answers["organizer"]
        == answers["stranger"]
        == [
            (303, "/login/sent", False),
            (303, "/login/sent", False),
            (303, "/login/sent", False),
            (429, None, True),
        ]
    )
    with app.state.database.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginLink)) == 6
    # Another address from the same client is not held back.
    assert _login(at(app, "198.51.100.20"), "someone@example.org").status_code == 303


def test_sign_in_requests_are_limited_per_client(make_app: MakeApp) -> None:
    app = make_app(rate_limit_login_client="3/minute", rate_limit_login_address="100/hour")
    client = at(app, "198.51.100.21")
    for n in range(3):
        assert _login(client, f"person{n}@example.org").status_code == 303
    assert_429_page(_login(client, "person3@example.org"))
    assert _login(at(app, "198.51.100.22"), "person3@example.org").status_code == 303
    with app.state.database.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginLink)) == 4


# --- The API ---------------------------------------------------------------------------


def test_the_api_is_limited_per_client_across_its_routes(make_app: MakeApp) -> None:
    app = make_app(rate_limit_api="3/minute")
    letter = add_letter(app)
    client = at(app, "198.51.100.30")
    assert client.get("/api/v1/letters").status_code == 200
    assert client.get(f"/api/v1/letters/{letter.slug}").status_code == 200
    assert client.get(f"/api/v1/letters/{letter.slug}/signatures").status_code == 200
    for path in ("/api/v1/letters", f"/api/v1/letters/{letter.slug}"):
        assert_429_json(client.get(path))
    assert_429_json(client.post("/api/v1/signatures/verify", json={"token": "x"}))
    # Pages are not the API's; other clients have their own allowance.
    assert client.get(f"/letters/{letter.slug}").status_code == 200
    assert at(app, "198.51.100.31").get("/api/v1/letters").status_code == 200


def test_the_schema_documents_429_with_retry_after_when_limits_are_on(make_app: MakeApp) -> None:
    app = make_app()
    schema = at(app, "127.0.0.1").get("/api/v1/openapi.json").json()
    limited = [key for key in OPERATIONS if key[1] != KEY_PATH]
    operations = [
        op for path, ops in schema["paths"].items() if path != KEY_PATH for op in ops.values()
    ]
    # Every operation of tests/web/test_openapi.OPERATIONS but the log key (a file, like
    # robots.txt: no database, no limit), which documents no 429:
    assert len(operations) == len(limited)
    assert "429" not in schema["paths"][KEY_PATH]["get"]["responses"]
    for operation in operations:
        documented = operation["responses"]["429"]
        assert documented["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorOut"
        }
        assert documented["headers"]["Retry-After"]["schema"] == {"type": "integer"}
        assert "rate_limited" in documented["description"]


def test_with_limits_off_nothing_is_limited(make_app: MakeApp) -> None:
    app = make_app(rate_limits=False, rate_limit_sign="1/hour", rate_limit_api="1/hour")
    letter = add_letter(app)
    client = at(app, "198.51.100.40")
    assert {_sign_api(client, letter.slug).status_code for _ in range(5)} == {202}
    schema = client.get("/api/v1/openapi.json").json()
    assert all(
        "429" not in op["responses"] for ops in schema["paths"].values() for op in ops.values()
    )


# --- Invitations -----------------------------------------------------------------------


def _invite_team(client: TestClient, slug: str, email: str) -> Response:
    return post_form(client, f"/dashboard/letters/{slug}/team", {"email": email, "role": "viewer"})


def _invite_organizer(client: TestClient, email: str) -> Response:
    return post_form(client, "/dashboard/organizers/invite", {"email": email})


def _invitations(app: FastAPI) -> list[str]:
    with app.state.database.read() as session:
        return list(
            session.scalars(
                select(OutboxEmail.kind)
                .where(OutboxEmail.kind.in_(("letter_invite", "organizer_invite")))
                .order_by(OutboxEmail.id)
            )
        )


def test_invitations_are_limited_per_organizer(make_app: MakeApp) -> None:
    """An admin who owns a letter: team invitations and organizer invitations count
    together, per organizer (not per client, not per letter); every invitation they may
    send counts, a refused one too. Over the limit: the 429 page, nothing sent."""
    app = make_app(rate_limit_invite="3/hour")
    letter = add_letter(app, slug="inviting")
    owner = at(app, "198.51.100.70")
    sign_in_as(owner, app, "owner@example.org", is_admin=True, letter_slug=letter.slug,
               role=Role.OWNER)  # fmt: skip
    assert _invite_team(owner, letter.slug, "one@example.org").status_code == 303
    assert _invite_team(owner, letter.slug, "one@example.org").status_code == 422  # on the team
    assert _invite_organizer(owner, "two@example.org").status_code == 303  # the third: allowed
    for refused in (
        _invite_team(owner, letter.slug, "three@example.org"),
        _invite_organizer(owner, "four@example.org"),
    ):
        assert refused.status_code == 429
        _retry_after(refused, 3600)
        assert "<h1>Too many tries</h1>" in refused.text
        # Counted per organizer, not per connection: the page says what was counted.
        assert "You have sent many invitations in a short time." in refused.text
        assert "from your connection" not in refused.text
    assert _invitations(app) == ["letter_invite", "organizer_invite"]
    with app.state.database.read() as session:
        assert (
            session.scalar(select(Organizer.id).where(Organizer.email == "three@example.org"))
            is None
        )

    # Another owner of the same letter, from the same network, has an allowance of their own.
    other = at(app, "198.51.100.70")
    sign_in_as(other, app, "co-owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    assert _invite_team(other, letter.slug, "three@example.org").status_code == 303
    assert _invitations(app) == ["letter_invite", "organizer_invite", "letter_invite"]


def test_invitations_are_not_limited_with_limits_off(make_app: MakeApp) -> None:
    app = make_app(rate_limits=False, rate_limit_invite="1/hour")
    at_admin = at(app, "198.51.100.71")
    sign_in_as(at_admin, app, "admin@example.org", is_admin=True)
    for n in range(3):
        assert _invite_organizer(at_admin, f"new{n}@example.org").status_code == 303
    assert len(_invitations(app)) == 3


@pytest.mark.parametrize("storage", ["redis"], indirect=True)  # memory keys never leave the process
def test_invitation_limit_keys_on_redis_name_no_organizer(
    make_app: MakeApp, storage: dict[str, str]
) -> None:
    app = make_app(rate_limit_invite="1/hour")
    client = at(app, "198.51.100.72")
    organizer_id = sign_in_as(client, app, "Private.Admin@example.org", is_admin=True)
    assert _invite_organizer(client, "first@example.org").status_code == 303
    refused = _invite_organizer(client, "second@example.org")
    assert refused.status_code == 429
    _retry_after(refused, 3600)
    server = redis.Redis.from_url(REDIS_URL)
    keys = [key.decode() for key in server.scan_iter(f"{storage['rate_limit_key_prefix']}:*")]
    server.close()
    invite_keys = [key for key in keys if "/invite/" in key]  # the limit's own name only
    assert invite_keys, keys
    for key in keys:
        for secret in ("198.51.100", "private", "admin@", "example", "organizer", "@"):
            assert secret not in key.lower(), key
    for key in invite_keys:
        # …/invite/{scope}/{subject}/{amount}/{multiples}/{granularity}: the organizer is
        # a keyed hash, never their id.
        subject = key.split("/")[-4]
        assert re.fullmatch("[0-9a-f]{32}", subject), key
        assert subject != str(organizer_id)


# --- Storage ---------------------------------------------------------------------------


def test_processes_share_the_counts_on_redis_only(
    make_app: MakeApp, storage: dict[str, str]
) -> None:
    first = make_app(rate_limit_sign="2/minute")
    second = make_app(rate_limit_sign="2/minute")  # another process: same settings and key
    for app in (first, second):
        add_letter(app, slug="shared-letter")
    ip = "198.51.100.50"
    assert _sign_api(at(first, ip), "shared-letter").status_code == 202
    assert _sign_api(at(second, ip), "shared-letter").status_code == 202
    third = _sign_api(at(second, ip), "shared-letter").status_code
    assert third == (429 if storage["rate_limit_storage"].startswith("redis") else 202)


@pytest.mark.parametrize("storage", ["redis"], indirect=True)  # memory keys never leave the process
def test_redis_keys_hold_no_address_and_no_slug(make_app: MakeApp, storage: dict[str, str]) -> None:
    app = make_app(rate_limit_sign="1/minute", rate_limit_login_address="1/hour")
    letter = add_letter(app, slug="a-telling-slug")
    client = at(app, "198.51.100.61")
    for _ in range(2):
        _sign_api(client, letter.slug)
        _login(client, "Private.Person@example.org")
    server = redis.Redis.from_url(REDIS_URL)
    keys = [key.decode() for key in server.scan_iter(f"{storage['rate_limit_key_prefix']}:*")]
    server.close()
    assert len(keys) >= 4  # the sign, API and two login limits, and refusal markers
    for key in keys:
        for secret in ("198.51.100", "private", "person", "example", "telling", "@"):
            assert secret not in key.lower(), key


def test_a_storage_that_fails_lets_requests_through_and_warns_once(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(rate_limit_storage="redis://127.0.0.1:1", rate_limit_sign="1/minute")
    letter = add_letter(app)
    client = at(app, "198.51.100.70")
    with caplog.at_level(logging.WARNING, logger="undersigned.web"):
        statuses = [_sign_api(client, letter.slug).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    warnings = [r.getMessage() for r in caplog.records if "rate limit storage" in r.getMessage()]
    assert len(warnings) == 1
    assert "let through" in warnings[0] and "127.0.0.1" not in warnings[0]


# --- The client's address --------------------------------------------------------------


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(make_app: MakeApp) -> None:
    app = make_app(trusted_proxies=["10.0.0.2"], rate_limit_sign="2/minute")
    letter = add_letter(app)

    def through_proxy(client_address: str) -> Response:
        proxy = at(app, "10.0.0.2")
        headers = {"x-forwarded-for": f"{client_address}"}
        return proxy.post(
            f"/api/v1/letters/{letter.slug}/signatures", json=GOOD_FORM, headers=headers
        )

    assert [through_proxy("198.51.100.1").status_code for _ in range(3)] == [202, 202, 429]
    assert through_proxy("198.51.100.2").status_code == 202  # another person behind it
    # A client that is not a trusted proxy cannot pick its address with the header.
    direct = at(app, "203.0.113.5")
    statuses = [
        direct.post(
            f"/api/v1/letters/{letter.slug}/signatures",
            json=GOOD_FORM,
            headers={"x-forwarded-for": f"192.0.2.{n}"},
        ).status_code
        for n in range(3)
    ]
    assert statuses == [202, 202, 429]
    with app.state.database.read() as session:
        sources = list(
            session.scalars(select(PendingSignature.source_hash).order_by(PendingSignature.id))
        )
    secret = app.state.settings.secret
    assert sources == [
        source_hash(secret, "198.51.100.1"),
        source_hash(secret, "198.51.100.1"),
        source_hash(secret, "198.51.100.2"),
        source_hash(secret, "203.0.113.5"),
        source_hash(secret, "203.0.113.5"),
    ]


# (peer, X-Forwarded-For headers, TRUSTED_PROXIES, the client)
CLIENT_CASES = [
    ("198.51.100.1", [], [], "198.51.100.1"),
    ("198.51.100.1", ["6.6.6.6"], [], "198.51.100.1"),  # nobody trusted: header ignored
    ("198.51.100.1", ["6.6.6.6"], ["10.0.0.2"], "198.51.100.1"),  # peer not trusted
    ("10.0.0.2", ["198.51.100.9"], ["10.0.0.2"], "198.51.100.9"),
    ("10.0.0.2", [], ["10.0.0.2"], "10.0.0.2"),  # a trusted proxy's own request
    ("10.0.0.2", ["6.6.6.6, 198.51.100.9"], ["10.0.0.2"], "198.51.100.9"),  # spoofed left
    ("10.0.0.2", ["6.6.6.6, 198.51.100.9, 10.0.0.3"], ["10.0.0.0/24"], "198.51.100.9"),
    ("10.0.0.2", ["6.6.6.6", "198.51.100.9, 10.0.0.3"], ["10.0.0.0/24"], "198.51.100.9"),
    ("10.0.0.2", ["10.0.0.5, 10.0.0.3"], ["10.0.0.0/24"], "10.0.0.5"),  # all trusted
    ("10.0.0.2", ["198.51.100.9:4711"], ["10.0.0.2"], "198.51.100.9"),
    ("10.0.0.2", ["[2001:db8::9]:4711"], ["10.0.0.2"], "2001:db8::9"),
    ("10.0.0.2", ["2001:DB8::9"], ["10.0.0.2"], "2001:db8::9"),
    ("10.0.0.2", ["::ffff:198.51.100.9"], ["10.0.0.2"], "198.51.100.9"),
    ("10.0.0.2", ["unknown"], ["10.0.0.2"], "unknown"),
    ("10.0.0.2", [" , "], ["10.0.0.2"], "10.0.0.2"),  # empty: the peer
    ("::1", ["198.51.100.9"], ["::1"], "198.51.100.9"),
    ("172.16.0.1", ["198.51.100.9"], ["*"], "198.51.100.9"),
    ("::ffff:10.0.0.2", [], [], "10.0.0.2"),
]


def _scope(peer: str, forwarded: list[str]) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"type": "http", "client": (peer, 5555), "headers": headers, "scheme": "http"}


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), CLIENT_CASES)
def test_the_client_is_the_socket_or_what_a_trusted_proxy_says(
    peer: str, forwarded: list[str], trusted: list[str], expected: str
) -> None:
    assert client_ip(Request(_scope(peer, forwarded)), trusted) == expected


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"), [case for case in CLIENT_CASES if case[2]]
)
def test_under_serve_uvicorns_proxy_headers_lead_to_the_same_client(
    peer: str, forwarded: list[str], trusted: list[str], expected: str
) -> None:
    """`undersigned serve` with TRUSTED_PROXIES runs uvicorn's ProxyHeadersMiddleware
    (app/cli.py): it rewrites the scope's client first; reading the rewritten scope
    gives the same client (without TRUSTED_PROXIES it is not installed at all)."""
    seen: list[str] = []

    async def app(scope: Any, _receive: Any, _send: Any) -> None:
        seen.append(client_ip(Request(scope), trusted))

    async def nothing() -> Any:
        return {}

    middleware: Any = ProxyHeadersMiddleware(app, trusted_hosts=",".join(trusted))  # as serve

    async def request() -> None:
        await middleware(_scope(peer, forwarded), nothing, nothing)

    anyio.run(request)
    assert seen == [expected]


def test_limits_count_an_ipv4_address_or_an_ipv6_64() -> None:
    assert limit_subject("198.51.100.7") == "198.51.100.7"
    assert limit_subject("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert limit_subject("testclient") == "literal:testclient"


# --- A flood ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_flood_is_held_to_the_limit_while_everyone_else_signs(make_app: MakeApp) -> None:
    """2,000 sign requests from one address, with the default limits, while 40 people
    on other addresses sign through the form: the flood gets its limit's worth, every
    person is recorded and gets their link."""
    app = make_app()  # the defaults
    letter = add_letter(app)
    limit = 30  # RATE_LIMIT_SIGN's default per minute
    accepted = 0
    honest: list[str] = []
    with at(app, "203.0.113.66") as bot:
        for n in range(2000):
            body = {**GOOD_FORM, "email": f"victim{n}@example.net"}
            answer = bot.post(f"/api/v1/letters/{letter.slug}/signatures", json=body)
            assert answer.status_code in (202, 429)
            accepted += answer.status_code == 202
            if n % 50 == 0:
                address = f"person{len(honest)}@example.org"
                person = at(app, f"198.51.{100 + len(honest) % 3}.{len(honest) + 1}")
                assert post_sign_form(person, letter.slug, email=address).status_code == 303
                honest.append(address)
    assert accepted == limit
    assert len(honest) == 40
    assert count(app, PendingSignature) == limit + len(honest)
    while deliver(app):
        pass
    mailbox = DevMailbox(app.state.settings.data_dir / "dev-mail")
    delivered = {str(message["To"]) for message in mailbox.messages(limit=1000)}
    assert set(honest) <= delivered  # nobody honest lost
    assert len([to for to in delivered if to.startswith("victim")]) == limit
    # The flood left one record per limit and window, not 1,970.
    flood = [e for e in _events(app) if e[2] == _source(app, "203.0.113.66")]
    assert flood == [
        ("rate_limited", letter.id, _source(app, "203.0.113.66")),
        ("rate_limited", None, _source(app, "203.0.113.66")),  # past the API's 600/minute
    ]
    assert len(_events(app)) == 2


# --- In a browser ----------------------------------------------------------------------


HIDDEN_BOX = """(selector) => {
  const box = document.querySelector(selector).parentElement;
  const rect = box.getBoundingClientRect();
  return {width: rect.width, height: rect.height, clip: getComputedStyle(box).clip};
}"""


@pytest.mark.browser
def test_the_too_many_tries_page_passes_axe_and_the_honeypot_stays_unseen(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """A person signs in Chromium, signs again past the limit and gets the page; axe
    finds nothing there. The honeypot is on the form, and no person can see it."""
    path = tmp_path / "browser.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    with database.write() as session:
        slug = make_letter(session).slug
    database.dispose()
    sock, base_url = free_socket()
    settings = make_settings(
        tmp_path, f"sqlite:///{path}", base_url=base_url, rate_limits=True,
        rate_limit_sign="1/minute", form_min_seconds=0.5,
    )  # fmt: skip
    with serve(sock, settings), chromium() as browser:
        page = browser.new_page()
        for attempt in range(2):
            page.goto(f"{base_url}/letters/{slug}")
            # On the form, clipped to nothing (a 1 px box with `clip`), out of reach.
            assert page.locator("#f-homepage").count() == 1
            hidden = page.evaluate(HIDDEN_BOX, "#f-homepage")
            assert hidden == {"width": 1, "height": 1, "clip": "rect(0px, 0px, 0px, 0px)"}
            page.locator("#f-name").fill("Ada Lovelace")
            page.locator("#f-email").fill(f"ada{attempt}@example.org")
            page.wait_for_timeout(600)  # a person takes longer than form_min_seconds
            with page.expect_response(lambda r: r.url.endswith("/sign")) as answer:
                page.locator("form[action$='/sign'] button[type=submit]").click()
            page.wait_for_load_state()
            if attempt == 0:
                assert answer.value.status == 303
                assert page.url.endswith("/check-email")
        assert answer.value.status == 429
        assert page.locator("h1").inner_text() == "Too many tries"
        violations = axe_violations(page)
        assert violations == [], violations
