"""Where the rate-limit dependencies count: on the event loop with the memory storage
(no I/O, and a thread hop cost more than the check), in a worker thread with Redis (its
calls block and must never stall the event loop)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from starlette.requests import Request

from app.web import ratelimit
from tests.support.config import make_settings
from tests.web.test_rate_limits import storage  # noqa: F401 (the fixture)


def _request(limits: ratelimit.RateLimits) -> Request:
    app = SimpleNamespace(state=SimpleNamespace(rate_limits=limits))
    return Request({"type": "http", "app": app, "headers": [], "path": "/", "state": {}})


def test_the_limits_count_on_the_loop_only_without_io(
    tmp_path: Path,
    storage: dict[str, str],  # noqa: F811 (the fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", rate_limits=True, **storage
    )
    limits = ratelimit.RateLimits(settings)
    counted: list[tuple[str, int]] = []

    def check(request: Request, limit: str, **_: Any) -> None:
        counted.append((limit, threading.get_ident()))

    monkeypatch.setattr(ratelimit, "check", check)
    request = _request(limits)

    async def both() -> int:
        await ratelimit.limit_api(request)
        await ratelimit.limit_signing(request, "a-letter")
        return threading.get_ident()

    loop_thread = anyio.run(both)
    assert [limit for limit, _ in counted] == [ratelimit.API, ratelimit.SIGN]
    on_loop = {thread == loop_thread for _, thread in counted}
    redis = storage["rate_limit_storage"].startswith("redis")
    assert limits.blocking is redis
    assert on_loop == {not redis}


def test_limits_off_count_on_the_loop(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", rate_limits=False,
        rate_limit_storage="redis://127.0.0.1:1",
    )  # fmt: skip
    assert ratelimit.RateLimits(settings).blocking is False
