"""Proof of work on the sign form and the API, through the real app: off, always, and
automatic above a letter's signing rate; a good solution signs, a bad or replayed one
is refused (and counted), and a request without one (no JavaScript) is held to the
tighter limits, on memory and on Redis. The last test solves it in Chromium with the
vendored widget, under the site's CSP."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from itertools import count as counter
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.abuse.models import AbuseEvent, SpentChallenge
from app.main import create_app
from app.signatures.models import PendingSignature
from tests.abuse.test_proof import edit, solve
from tests.support.browser import axe_violations, chromium
from tests.support.config import make_settings
from tests.support.live import serve
from tests.support.ports import free_socket
from tests.web.flows import GOOD_FORM, add_letter, post_sign_form
from tests.web.test_rate_limits import storage  # noqa: F401 - the memory/Redis fixture

_apps = counter()
WIDGET = "<altcha-widget"
MakeApp = Callable[..., FastAPI]


@pytest.fixture
def make_app(tmp_path: Path, sqlite_template: Path) -> MakeApp:
    def make(**overrides: Any) -> FastAPI:
        path = tmp_path / f"pow-{next(_apps)}.db"
        shutil.copy(sqlite_template, path)
        values = {"proof_of_work_cost": 10, **overrides}
        return create_app(make_settings(tmp_path, f"sqlite:///{path}", **values))

    return make


def _client(app: FastAPI, ip: str = "198.51.100.7") -> TestClient:
    return TestClient(app, base_url="http://testserver", client=(ip, 40000))


def _challenge(client: TestClient, slug: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/letters/{slug}/challenge")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def _pending(app: FastAPI) -> int:
    with app.state.database.read() as session:
        return len(session.scalars(select(PendingSignature.id)).all())


def _events(app: FastAPI) -> list[str]:
    with app.state.database.read() as session:
        return list(session.scalars(select(AbuseEvent.kind).order_by(AbuseEvent.id)))


def test_off_shows_no_widget_and_signs_without_proof(make_app: MakeApp) -> None:
    app = make_app(proof_of_work="off", rate_limits=True, rate_limit_sign_unproven="1/hour")
    letter = add_letter(app)
    with _client(app) as client:
        assert WIDGET not in client.get(f"/letters/{letter.slug}").text
        for n in range(3):  # the unproven limit is not in force
            response = post_sign_form(client, letter.slug, email=f"p{n}@example.org")
            assert response.status_code == 303
    assert _pending(app) == 3


def test_always_shows_the_vendored_widget(make_app: MakeApp) -> None:
    app = make_app(proof_of_work="always")
    letter = add_letter(app)
    with _client(app) as client:
        page = client.get(f"/letters/{letter.slug}").text
        assert WIDGET in page
        assert f'challenge="/api/v1/letters/{letter.slug}/challenge"' in page
        # Named by the page under their content-hashed names (the worker's in data-worker
        # for altcha-setup.js); the plain names still answer, for cached pages.
        named = set(re.findall(r'(?:src|href|data-worker)="(/static/[^"]+)"', page))
        assets = ["vendor/altcha/altcha.min.js", "vendor/altcha/altcha.css",
                  "vendor/altcha/pbkdf2.js", "altcha-setup.js"]  # fmt: skip
        for asset in assets:
            hashed = app.state.static_manifest.url(asset)
            assert hashed in named, asset
            for url in (hashed, f"/static/{asset}"):
                served = client.get(url)
                assert served.status_code == 200, url
        assert "<noscript>" in page
        # Every asset comes from this site: no other origin is named on the page.
        # (The share links are links to other sites, never fetched: D103.)
        share = re.search(r'<section id="share".*?</section>', page, re.S)
        assert share
        assert "https://" not in page.replace(share.group(0), "")


def test_a_solved_form_signs_and_a_replay_is_refused(make_app: MakeApp) -> None:
    app = make_app(proof_of_work="always")
    letter = add_letter(app)
    with _client(app) as client:
        payload = solve(_challenge(client, letter.slug))
        first = post_sign_form(client, letter.slug, altcha=payload)
        assert first.status_code == 303
        assert _pending(app) == 1
        again = post_sign_form(client, letter.slug, altcha=payload, email="bob@example.org")
    assert again.status_code == 422
    assert "The check that you are a person did not work" in again.text
    assert 'href="#f-altcha"' in again.text  # the error summary links to the widget
    assert WIDGET in again.text  # the form again, with a fresh widget
    assert _pending(app) == 1
    assert _events(app) == ["proof_replayed"]


def test_a_wrong_solution_is_refused_and_counted(make_app: MakeApp) -> None:
    app = make_app(proof_of_work="always")
    letter = add_letter(app)
    with _client(app) as client:
        payload = solve(_challenge(client, letter.slug))

        def wrong(data: dict[str, Any]) -> None:
            data["solution"]["counter"] += 1

        response = post_sign_form(client, letter.slug, altcha=edit(payload, wrong))
    assert response.status_code == 422
    assert _pending(app) == 0
    assert _events(app) == ["proof_failed"]
    with app.state.database.read() as session:  # a refused solution is not spent
        assert session.scalars(select(SpentChallenge)).all() == []


def test_a_solution_for_another_letter_is_refused(make_app: MakeApp) -> None:
    app = make_app(proof_of_work="always")
    letter = add_letter(app)
    other = add_letter(app, slug="another-letter", title="Another letter")
    with _client(app) as client:
        payload = solve(_challenge(client, other.slug))
        response = post_sign_form(client, letter.slug, altcha=payload)
    assert response.status_code == 422
    assert _pending(app) == 0


def test_the_api_takes_a_solution_and_refuses_a_replay(make_app: MakeApp) -> None:
    app = make_app(proof_of_work="always")
    letter = add_letter(app)
    body = {key: value for key, value in GOOD_FORM.items()}
    with _client(app) as client:
        payload = solve(_challenge(client, letter.slug))
        url = f"/api/v1/letters/{letter.slug}/signatures"
        accepted = client.post(url, json={**body, "altcha": payload})
        assert accepted.status_code == 202
        replay = client.post(url, json={**body, "altcha": payload})
        garbage = client.post(url, json={**body, "altcha": "x" * 5000})
    assert replay.status_code == 422
    assert replay.json()["error"] == "invalid_input"
    assert "altcha" in replay.json()["fields"]
    assert garbage.status_code == 422  # over the field's length: the schema refuses it
    assert _pending(app) == 1
    assert _events(app) == ["proof_replayed"]


def test_the_challenge_of_an_unknown_letter_is_404(make_app: MakeApp) -> None:
    app = make_app(proof_of_work="always")
    with _client(app) as client:
        assert client.get("/api/v1/letters/no-such-letter/challenge").status_code == 404


def test_without_proof_the_tighter_limits_hold_at_their_edge(
    make_app: MakeApp,
    storage: dict[str, str],  # noqa: F811
) -> None:
    """No JavaScript: 2 unproven requests per client go through, the 3rd is 429; a
    solved request from the same client still goes through; and another client has its
    own allowance until the letter-wide one (3) is used up."""
    app = make_app(
        proof_of_work="always",
        rate_limits=True,
        rate_limit_sign_unproven="2/minute",
        rate_limit_sign_unproven_letter="3/minute",
        **storage,
    )
    letter = add_letter(app)
    with _client(app) as client, _client(app, ip="203.0.113.9") as other:
        for n in range(2):
            assert post_sign_form(client, letter.slug, email=f"a{n}@example.org").status_code == 303
        refused = post_sign_form(client, letter.slug, email="a2@example.org")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        proven = post_sign_form(
            client,
            letter.slug,
            email="a3@example.org",
            altcha=solve(_challenge(client, letter.slug)),
        )
        assert proven.status_code == 303
        assert post_sign_form(other, letter.slug, email="b0@example.org").status_code == 303
        # The letter-wide allowance (3) is now used up: the other client is held too.
        assert post_sign_form(other, letter.slug, email="b1@example.org").status_code == 429
    assert _pending(app) == 4


def test_auto_asks_for_proof_only_while_a_letter_is_busy(
    make_app: MakeApp,
    storage: dict[str, str],  # noqa: F811
) -> None:
    app = make_app(
        proof_of_work="auto",
        rate_limits=True,
        proof_of_work_above="3/minute",
        rate_limit_sign_unproven="1/minute",
        **storage,
    )
    letter = add_letter(app)
    quiet = add_letter(app, slug="quiet-letter", title="A quiet letter")
    with _client(app) as client:
        assert WIDGET not in client.get(f"/letters/{letter.slug}").text
        for n in range(3):  # no proof asked for yet: the unproven limit (1) is not in force
            assert post_sign_form(client, letter.slug, email=f"c{n}@example.org").status_code == 303
        busy_page = client.get(f"/letters/{letter.slug}").text
        assert WIDGET in busy_page
        # Now it is: one unproven request, then 429; a solved one goes through.
        assert post_sign_form(client, letter.slug, email="c3@example.org").status_code == 303
        assert post_sign_form(client, letter.slug, email="c4@example.org").status_code == 429
        solved = solve(_challenge(client, letter.slug))
        assert (
            post_sign_form(client, letter.slug, email="c5@example.org", altcha=solved).status_code
            == 303
        )
        # Another letter is not busy.
        assert WIDGET not in client.get(f"/letters/{quiet.slug}").text
    assert _pending(app) == 5


@pytest.mark.browser
def test_the_widget_solves_and_signs_in_chromium(tmp_path: Path, sqlite_template: Path) -> None:
    """The vendored widget fetches a challenge, solves it in a worker from this site
    and signs; the page logs no error (a CSP violation would be one) and asks no other
    origin for anything."""
    path = tmp_path / "browser.db"
    shutil.copy(sqlite_template, path)
    settings = make_settings(
        tmp_path, f"sqlite:///{path}", proof_of_work="always", proof_of_work_cost=1000
    )
    app = create_app(settings)
    letter = add_letter(app)
    sock, base_url = free_socket()
    with serve(sock, settings), chromium() as browser:
        page = browser.new_page()
        problems: list[str] = []
        page.on(
            "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        origins: set[str] = set()
        page.on("request", lambda r: origins.add(r.url.split("/")[2]))
        page.goto(f"{base_url}/letters/{letter.slug}")
        page.wait_for_selector("altcha-widget input[type=checkbox]")
        assert axe_violations(page) == []  # the widget as drawn, before it starts
        page.fill("#f-name", "Ada Lovelace")
        page.fill("#f-email", "ada@example.org")
        solution = page.locator("input[name=altcha]")
        deadline = time.monotonic() + 30
        while not solution.count() or len(solution.input_value()) < 10:
            assert time.monotonic() < deadline, "the widget did not solve within 30 s"
            page.wait_for_timeout(100)
        page.click("button[type=submit]")
        page.wait_for_url(f"**/letters/{letter.slug}/check-email")
        assert problems == []
        assert origins == {base_url.split("/")[2]}
    assert _pending(app) == 1
    with app.state.database.read() as session:
        assert len(session.scalars(select(SpentChallenge)).all()) == 1
