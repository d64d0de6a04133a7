"""The hot JSON routes are found after a few tries (D190). FastAPI tries the included
routers in order, each one's routes in turn, and matches twice per request; with the
API's routers after the pages', a confirmation tried forty routes to find its own."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

HOT = [
    ("POST", "/api/v1/signatures/verify", {"json": {"token": "not-a-token"}}),
    ("POST", "/api/v1/letters/ice-out/signatures", {"json": {}}),
    ("GET", "/api/v1/letters/ice-out", {}),
]
MOST_TRIES = 16
"""Route checks per hot request, both matching passes together (measured: 4 to 12; with
the API's routers after the pages', 32 to 40)."""


@pytest.mark.parametrize(("method", "path", "options"), HOT, ids=[p for _, p, _ in HOT])
def test_a_hot_api_request_tries_few_routes(
    app: FastAPI,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    options: dict[str, Any],
) -> None:
    tried: list[str] = []
    matches = APIRoute.matches

    def counting(route: APIRoute, scope: Any) -> Any:
        tried.append(route.path)
        return matches(route, scope)

    monkeypatch.setattr(APIRoute, "matches", counting)
    answer = client.request(method, path, **options)
    assert answer.status_code in (200, 400, 404, 422)  # answered by its route, not routing
    assert tried, "no route was tried: the counter is not in the path"
    assert len(tried) <= MOST_TRIES, tried
