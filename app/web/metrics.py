"""`/metrics` (Prometheus text format) and the middleware that measures each request and
gives it its id (D88, D89).

- Each request: counted and timed under its route's *template* (`/verify/{token}`,
  never the path, which may hold a token; a path no route matches is `<unmatched>`),
  and its method (`other` for one that is not a standard one) and status. Its id (a
  client's `X-Request-ID` only in the strict form app.logs accepts, else a new one) is
  on every log record written while it runs, and in the answer's `X-Request-ID`.
- `/metrics` answers a client on this machine that did not come through a proxy
  (app.web.dev.from_this_machine), or one with `Authorization: Bearer METRICS_TOKEN`
  (compared in constant time); anyone else gets the 404 of a page that does not exist.
  It is left out of the OpenAPI schema.
- The outbox's depth, the age of its oldest due email and the worker's lag are read
  from the database at each scrape (`probe`, app.jobs.backlog in the app): every
  process sees the same rows, so there is nothing to add up across processes.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.logs import REQUEST_ID, request_id_from
from app.metrics import LATENCY, REQUESTS, multiprocess
from app.web.dev import from_this_machine

log = logging.getLogger("undersigned.web")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"


class Backlog(Protocol):
    outbox_depth: int
    oldest_due_email_seconds: float
    worker_lag_seconds: float


Probe = Callable[[], Backlog]


class RequestMetricsMiddleware:
    """Outermost: it times the whole answer, error pages and 429s included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                header = value.decode("latin-1")
                break
        request_id = request_id_from(header)
        reset = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
            REQUEST_ID.reset(reset)


class _BacklogCollector:
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def collect(self) -> Iterator[Metric]:
        try:
            backlog = self.probe()
        except Exception as exc:  # a scrape still reports the requests
            log.warning("metrics: could not read the backlog (%s)", type(exc).__name__)
            yield GaugeMetricFamily(
                "undersigned_backlog_up", "Whether the backlog could be read.", value=0
            )
            return
        yield GaugeMetricFamily(
            "undersigned_backlog_up", "Whether the backlog could be read.", value=1
        )
        yield GaugeMetricFamily(
            "undersigned_outbox_depth",
            "Emails waiting for their first or next attempt (counted up to 100,000).",
            value=backlog.outbox_depth,
        )
        yield GaugeMetricFamily(
            "undersigned_outbox_oldest_due_seconds",
            "How long the oldest due email has been waiting (0: none is due).",
            value=backlog.oldest_due_email_seconds,
        )
        yield GaugeMetricFamily(
            "undersigned_worker_lag_seconds",
            "How long the oldest due submission has waited for the worker (0: none).",
            value=backlog.worker_lag_seconds,
        )


class _Scrape:
    """What one scrape reports: this process's metrics (or, in multi-process mode, every
    server process's, summed from PROMETHEUS_MULTIPROC_DIR) and the backlog."""

    def __init__(self, probe: Probe | None) -> None:
        self.sources: list[Any] = []
        if multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            self.sources.append(registry)
        else:
            self.sources.append(REGISTRY)
        if probe is not None:
            self.sources.append(_BacklogCollector(probe))

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source.collect()


def allowed(request: Request, settings: Settings) -> bool:
    if from_this_machine(request.scope):
        return True
    if settings.metrics_token is None:
        return False
    given = request.headers.get("authorization", "")
    scheme, _, credentials = given.partition(" ")
    expected = settings.metrics_token.get_secret_value()
    return (
        scheme.lower() == "bearer"
        and bool(expected)
        and hmac.compare_digest(credentials.strip().encode(), expected.encode())
    )


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not allowed(request, settings):
        raise HTTPException(404)
    probe: Probe | None = getattr(request.app.state, "backlog_probe", None)
    body = generate_latest(_Scrape(probe))
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})
