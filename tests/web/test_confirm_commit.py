"""A confirmation commits inside its endpoint, in the thread that moved the count (D183):
the letter's counter row, locked by the confirmation's last statement, is released one
round trip later, not after the answer is validated and WriteSession's teardown gets its
turn on the event loop. Both the API and the confirm page."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio.to_thread
import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from app import tokens
from app.config import Settings
from app.letters.models import Letter
from tests.web.flows import GOOD_FORM, add_letter, deliver, pending_signatures


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    return add_letter(app, slug="ice-out", title="Cancel the contracts", goal=100)


ENDPOINTS = {("api.py", "verify_signature"), ("pages.py", "verify")}
"""The confirmation's two endpoints (app/signatures/), as (file name, function)."""


def _in_endpoint() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if (code.co_filename.rsplit("/", 1)[-1], code.co_name) in ENDPOINTS and (
            "app/signatures/" in code.co_filename
        ):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


@contextmanager
def _threads(app: FastAPI) -> Iterator[list[tuple[str, int]]]:
    """(what, thread) for each statement that moves a tally and each COMMIT; a COMMIT run
    inside one of the confirmation's endpoints is "commit in endpoint"."""
    seen: list[tuple[str, int]] = []
    engine = app.state.database.engine

    def statement(*args: Any) -> None:
        if "letter_tallies" in args[2] and args[2].lstrip().upper().startswith(("UPDATE", "WITH")):
            seen.append(("count", threading.get_ident()))

    def commit(*_: Any) -> None:
        where = "commit in endpoint" if _in_endpoint() else "commit"
        seen.append((where, threading.get_ident()))

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


def _token(app: FastAPI, client: TestClient, settings: Settings, email: str) -> str:
    signed = client.post("/api/v1/letters/ice-out/signatures", json={**GOOD_FORM, "email": email})
    assert signed.status_code == 202
    deliver(app)
    pending = pending_signatures(app)[-1]  # the newest: this one
    return tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, pending.public_id)


@pytest.mark.usefixtures("letter")
@pytest.mark.parametrize("route", ["api", "page"])
def test_the_count_and_its_commit_run_in_one_thread(
    app: FastAPI, app_settings: Settings, client: TestClient, route: str
) -> None:
    token = _token(app, client, app_settings, f"{route}@example.org")
    with _threads(app) as seen:
        if route == "api":
            answer = client.post("/api/v1/signatures/verify", json={"token": token})
            assert answer.status_code == 200
        else:
            same_site = {"Sec-Fetch-Site": "same-origin"}
            answer = client.post(f"/verify/{token}", headers=same_site, follow_redirects=False)
            assert answer.status_code == 303
    kinds = [kind for kind, _ in seen]
    assert kinds[:2] == ["count", "commit in endpoint"], kinds
    assert seen[0][1] == seen[1][1]  # the same thread


def _thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions the app sends to a worker thread from now on."""
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(function, "__name__", repr(function)))
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return hops


def _hot_write(client: TestClient, route: str, token: str, email: str) -> httpx2.Response:
    """Confirm `token` by the API (`api`), or sign ice-out as `email` by the API (`sign`)."""
    if route == "api":
        return client.post("/api/v1/signatures/verify", json={"token": token})
    return client.post("/api/v1/letters/ice-out/signatures", json={**GOOD_FORM, "email": email})


@pytest.mark.usefixtures("letter")
@pytest.mark.parametrize("route", ["api", "sign"])
def test_a_committed_endpoints_session_ends_without_a_thread(
    app: FastAPI,
    app_settings: Settings,
    client: TestClient,
    route: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the endpoint's own commit, WriteSession's teardown has no I/O left: it ends
    the session on the event loop instead of hopping to a thread (one hop per signature
    and per confirmation saved)."""
    token = _token(app, client, app_settings, f"{route}@example.org")
    hops = _thread_hops(monkeypatch)
    answer = _hot_write(client, route, token, "two@example.org")
    assert answer.status_code == (200 if route == "api" else 202)
    assert [name for name in hops if name == "__exit__"] == []  # the session's end
    # A write that fails still ends in a thread: its rollback may wait on the database.
    refused = client.post("/api/v1/signatures/verify", json={"token": tokens.issue(
        app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, "0" * 32)})  # fmt: skip
    assert refused.status_code == 400
    assert [name for name in hops if name == "__exit__"] == ["__exit__"]


@pytest.mark.usefixtures("letter")
@pytest.mark.parametrize("route", ["api", "sign"])
def test_a_hot_write_makes_one_thread_hop(
    app: FastAPI,
    app_settings: Settings,
    client: TestClient,
    route: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D193: signing and confirming by the API go to a worker thread once, for the
    endpoint. The slug check runs on the event loop, and the answer is serialized in the
    endpoint: FastAPI would validate a returned model again in a thread of its own."""
    token = _token(app, client, app_settings, f"{route}-hops@example.org")
    hops = _thread_hops(monkeypatch)
    answer = _hot_write(client, route, token, "hop@example.org")
    expected = (200, {"status": "verified"}) if route == "api" else (202, {"status": "pending"})
    assert (answer.status_code, answer.json()) == expected
    assert answer.headers["content-type"] == "application/json"
    assert len(hops) == 1, hops
