"""Admission control (D51): at most `request_slots` requests hold a session at once;
the next one waits on the event loop, holding nothing, then gets `503` with
`Retry-After` through the app's usual error rendering; threads are never fewer than
permits. The load behind it is in test_capacity.py."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio.to_thread
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import RESERVED_CONNECTIONS, Database
from app.main import create_app
from app.web.deps import ReadSession, WriteSession
from tests.support.config import make_settings
from tests.support.ports import free_socket


@dataclass
class Holding:
    """A request that holds its session (and so its permit) until released."""

    entered: threading.Event
    release: threading.Event


def _app(tmp_path: Path, sqlite_template: Path, pool_size: int) -> FastAPI:
    path = tmp_path / "admission.db"
    path.write_bytes(sqlite_template.read_bytes())
    settings = make_settings(tmp_path, f"sqlite:///{path}", database_pool_size=pool_size)
    return create_app(settings)


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """`app` itself (with the routes a test added) served by uvicorn in a thread."""
    sock, base_url = free_socket()
    config = uvicorn.Config(app, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _get(base_url: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def one_slot(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Holding]]:
    """A live app whose pool leaves one request slot, with a route that holds it."""
    app = _app(tmp_path, sqlite_template, pool_size=RESERVED_CONNECTIONS + 1)
    database: Database = app.state.database
    assert database.request_slots == 1
    monkeypatch.setattr("app.web.deps.ADMISSION_WAIT_SECONDS", 0.5)
    holding = Holding(threading.Event(), threading.Event())

    @app.post("/api/v1/test-hold")
    def hold(session: WriteSession) -> dict[str, bool]:
        session.execute(text("SELECT 1"))  # takes its connection
        holding.entered.set()
        return {"released": holding.release.wait(timeout=20)}

    with serve_app(app) as base_url:
        yield base_url, holding


def test_a_request_that_gets_no_slot_in_time_is_answered_503_with_retry_after(
    one_slot: tuple[str, Holding],
) -> None:
    base_url, holding = one_slot
    held: list[tuple[int, dict[str, str], bytes]] = []
    holder = threading.Thread(
        target=lambda: held.append(_get(base_url, "/api/v1/test-hold", "POST"))
    )
    holder.start()
    try:
        assert holding.entered.wait(timeout=10)

        status, headers, body = _get(base_url, "/api/v1/letters")
        assert status == 503
        assert headers["retry-after"] == "5"
        assert json.loads(body)["error"] == "unavailable"

        status, headers, body = _get(base_url, "/")  # a page: the error page
        assert status == 503
        assert headers["retry-after"] == "5"
        assert headers["content-type"].startswith("text/html")
        assert "content-security-policy" in headers
        assert b"busy" in body
    finally:
        holding.release.set()
        holder.join(timeout=30)
    assert held and held[0][0] == 200

    # The slot is free again: the same requests are served.
    assert _get(base_url, "/api/v1/letters")[0] == 200
    assert _get(base_url, "/")[0] == 200


def test_there_are_at_least_as_many_threads_as_request_slots(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """A request that holds a connection needs a thread for its endpoint and another
    to validate its answer: with fewer threads than permits they could all be taken
    by requests waiting for what the others hold."""
    app = _app(tmp_path, sqlite_template, pool_size=100)
    assert app.state.database.request_slots == 100 - RESERVED_CONNECTIONS

    @app.get("/api/v1/test-threads")
    async def threads(session: ReadSession) -> dict[str, float]:
        return {"threads": anyio.to_thread.current_default_thread_limiter().total_tokens}

    with serve_app(app) as base_url:
        status, _, body = _get(base_url, "/api/v1/test-threads")
    assert status == 200
    assert json.loads(body)["threads"] >= 100 - RESERVED_CONNECTIONS


def test_a_route_may_not_take_two_sessions(tmp_path: Path, sqlite_template: Path) -> None:
    """Two sessions would hold two connections under one permit."""
    app = _app(tmp_path, sqlite_template, pool_size=5)

    @app.get("/api/v1/test-two-sessions")
    def two(read: ReadSession, write: WriteSession) -> dict[str, bool]:
        return {"ok": True}

    with (
        TestClient(app) as client,
        pytest.raises(RuntimeError, match="one session: ReadSession or WriteSession"),
    ):
        client.get("/api/v1/test-two-sessions")
