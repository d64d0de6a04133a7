"""Rate limits: how often one client may sign a letter, ask for sign-in links, or call
the API, counted with the `limits` library in memory (one process) or in Redis (every
process shares the counts).

- Moving windows: a limit of 30 a minute allows 30 in *any* minute, never 60 across a
  window's edge as fixed windows would. A limit written "30/minute;300/hour" is both;
  the shortest window is counted first, so a request it refuses does not use up the
  longer window's allowance.
- Keys are keyed hashes (HMAC-SHA256 under a key derived from SECRET_KEY): no IP
  address, email address or slug is written to the storage. An IPv4 client is its full
  address, an IPv6 client its /64 (`app.web.client.limit_subject`): a shared office is
  one client, which the defaults leave room for, but never a whole network.
- Checks run as route dependencies before the request takes a database session, so a
  refused request costs no database work at all. Over a limit: `429` with `Retry-After`
  (the seconds until the window lets one more through), the app's "Too many tries"
  page, or `{"error": "rate_limited", "detail": …}` under /api.
- The first refusal of a client for a limit in each window is recorded as an
  AbuseEvent (after the answer is sent, in a transaction of its own; at most one such
  write at a time per process, and none when many are already waiting), so a flood
  writes one row per client and window, not one per request.
- When the storage fails (Redis down), requests are let through and a warning is logged
  at most once a minute: rate limits protect the site, they must not take it down.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.responses import Response

from app.config import Settings
from app.db import Database
from app.emails import canonical_email as canonical_address
from app.i18n import N_, gettext
from app.metrics import RATE_LIMITED
from app.web.client import client_of, limit_subject
from app.web.rendering import render

log = logging.getLogger("undersigned.web")

SIGN = "sign"
"""Sign requests per client per letter (the form and the API count together)."""
LOGIN_ADDRESS = "login_address"
"""Sign-in link requests per email address (canonical), whoever asks."""
LOGIN_CLIENT = "login_client"
"""Sign-in link requests per client."""
API = "api"
"""Requests to /api/v1 per client."""
SIGN_UNPROVEN = "sign_unproven"
"""While a letter asks for proof of work: sign requests without it, per client per letter."""
SIGN_UNPROVEN_LETTER = "sign_unproven_letter"
"""While a letter asks for proof of work: sign requests without it, per letter."""
INVITE = "invite"
"""Invitations sent per organizer."""
SIGNING_RATE = "signing_rate"
"""Sign requests per letter, all clients: never refuses, it tells when a letter is busy
enough for proof of work (PROOF_OF_WORK=auto)."""

CODE = "rate_limited"
DETAIL = N_("Too many tries from your connection. Wait a little and try again.")
REDIS_TIMEOUT_SECONDS = 1.0
"""A Redis that does not answer within this is a failure (and the request goes through)."""
WARN_EVERY_SECONDS = 60.0
MAX_WAITING_RECORDS = 100
"""Refusals waiting to be recorded, past which new ones are not (a distributed flood)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over a limit."""

    limit: str
    retry_after: int
    ip: str
    """The client's address, in memory only: it is hashed into the event's source."""
    letter_slug: str | None
    first: bool
    """The first refusal of this client for this limit in the window: it is recorded."""


class RateLimited(Exception):
    """Raised by a limit's dependency; answered by the handler `install` adds."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.limit)
        self.refusal = refusal


Recorder = Callable[[Session, Refusal], None]
"""Records a refusal (an AbuseEvent) in the session's transaction."""


class RateLimits:
    """The limits of one app (one per process), with their storage."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits
        self.rules: dict[str, tuple[RateLimitItem, ...]] = {
            name: tuple(sorted(parse_many(text), key=lambda item: item.get_expiry()))
            for name, text in (
                (SIGN, settings.rate_limit_sign),
                (LOGIN_ADDRESS, settings.rate_limit_login_address),
                (LOGIN_CLIENT, settings.rate_limit_login_client),
                (API, settings.rate_limit_api),
                (SIGN_UNPROVEN, settings.rate_limit_sign_unproven),
                (SIGN_UNPROVEN_LETTER, settings.rate_limit_sign_unproven_letter),
                (INVITE, settings.rate_limit_invite),
                (SIGNING_RATE, settings.proof_of_work_above),
            )
        }
        self._key = hmac.new(
            settings.secret.encode(), b"undersigned/rate-limit/v1", hashlib.sha256
        ).digest()
        self._warned_at = -math.inf
        self.window: MovingWindowRateLimiter | None = None
        # Whether counting does network I/O (Redis): then the dependencies count in a
        # thread, never on the event loop.
        self.blocking = self.enabled and not settings.rate_limit_storage.startswith("memory")
        if self.enabled:
            self.window = MovingWindowRateLimiter(_storage(settings))

    def key(self, kind: str, value: str) -> str:
        """A keyed hash for the storage's keys (128 bits: no collision in practice)."""
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def hit(self, limit: str, *identifiers: str) -> tuple[int, bool] | None:
        """Counts one request. None when it is within the limit; else the seconds until
        one more is allowed, and whether this is the window's first refusal."""
        if self.window is None:
            return None
        try:
            for item in self.rules[limit]:
                if not self.window.hit(item, limit, *identifiers):
                    stats = self.window.get_window_stats(item, limit, *identifiers)
                    retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                    marker = type(item)(1, item.multiples)
                    first = self.window.hit(marker, "refused", limit, *identifiers)
                    return retry_after, first
        except StorageError as exc:
            self._storage_failed(exc)
        return None

    def count(self, limit: str, *identifiers: str) -> None:
        """Counts one event towards `limit` without refusing anything (SIGNING_RATE)."""
        if self.window is None:
            return
        try:
            for item in self.rules[limit]:
                self.window.hit(item, limit, *identifiers)
        except StorageError as exc:
            self._storage_failed(exc)

    def exhausted(self, limit: str, *identifiers: str) -> bool:
        """Whether `limit` is used up for these identifiers (in any of its windows).
        False when limits are off or the storage fails."""
        if self.window is None:
            return False
        try:
            return any(
                not self.window.test(item, limit, *identifiers) for item in self.rules[limit]
            )
        except StorageError as exc:
            self._storage_failed(exc)
        return False

    def _storage_failed(self, exc: StorageError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "rate limit storage failed (%s): requests are let through unlimited",
                type(exc.storage_error).__name__,
            )


def _storage(settings: Settings) -> Any:
    uri = settings.rate_limit_storage
    options: dict[str, float | str | bool] = {"wrap_exceptions": True}
    if uri.startswith(("redis", "rediss", "valkey")):
        options.update(
            key_prefix=settings.rate_limit_key_prefix,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
    return storage_from_string(uri, **options)


def limits_of(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


def check(
    request: Request,
    limit: str,
    *,
    address: str | None = None,
    subject: str | None = None,
    letter_slug: str | None = None,
) -> None:
    """Counts this request against `limit`, per client (or per `address`, for the login
    limit, or per `subject`: an organizer, or "letter" for a letter-wide limit), and per
    letter when `letter_slug` is given; raises RateLimited over it.
    Runs no query: call it before the request's session where it can."""
    limits = limits_of(request)
    if not limits.enabled:
        return
    ip = client_of(request)
    if address is not None:
        subject = limits.key("address", canonical_address(address))
    elif subject is not None:
        subject = limits.key("subject", subject)
    else:
        subject = limits.key("client", limit_subject(ip))
    scope = limits.key("letter", letter_slug) if letter_slug is not None else "-"
    over = limits.hit(limit, scope, subject)
    if over is not None:
        retry_after, first = over
        raise RateLimited(Refusal(limit, retry_after, ip, letter_slug, first))


# --- Dependencies ----------------------------------------------------------------------
# Async, and the counting itself in a thread only when the storage is Redis (its calls
# block): with the memory storage, or limits off, a thread hop per dependency cost more
# than the check (a sign request made four hops, and each hands the interpreter lock
# over twice).


async def _counted(request: Request, count: Callable[[], None]) -> None:
    if limits_of(request).blocking:
        await anyio.to_thread.run_sync(count)
    else:
        count()


async def limit_api(request: Request) -> None:
    """Every /api/v1 route (a router dependency)."""
    await _counted(request, partial(check, request, API))


async def limit_signing(request: Request, slug: str) -> None:
    """A letter's sign routes: the form and the API count together. Every request also
    counts towards the letter's signing rate (proof of work in auto mode)."""
    await _counted(request, partial(_limit_signing, request, slug))


def _limit_signing(request: Request, slug: str) -> None:
    check(request, SIGN, letter_slug=slug)
    limits = limits_of(request)
    if limits.enabled:
        # Whether the letter was busy is decided before this request counts: the form
        # it came from was shown on the same terms.
        request.state.letter_busy = letter_is_busy(request, slug)
        limits.count(SIGNING_RATE, limits.key("letter", slug))


def letter_is_busy(request: Request, slug: str) -> bool:
    """Whether the letter's sign requests run above PROOF_OF_WORK_ABOVE right now (as
    `limit_signing` found it, for a sign request)."""
    decided = getattr(request.state, "letter_busy", None)
    if decided is not None:
        return bool(decided)
    limits = limits_of(request)
    return limits.enabled and limits.exhausted(SIGNING_RATE, limits.key("letter", slug))


# --- Answering -------------------------------------------------------------------------


INVITE_DETAIL = N_("You have sent many invitations in a short time. Wait a while and try again.")


def rate_limited_response(
    request: Request, retry_after: int, *, limit: str | None = None
) -> Response:
    """The 429 answer. The invitation limit counts per organizer, not per connection:
    its page says so (`reason`)."""
    headers = {"Retry-After": str(retry_after)}
    detail = gettext(INVITE_DETAIL if limit == INVITE else DETAIL)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": CODE, "detail": detail}, 429, headers=headers)
    context = {
        "status": 429,
        "code": CODE,
        "detail": detail,
        "reason": limit,
        "retry_after": retry_after,
        "retry_minutes": math.ceil(retry_after / 60),
    }
    response = render(request, "error.html", context, status_code=429)
    response.headers.update({**headers, "cache-control": "no-store"})
    return response


_record_turns: WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    WeakKeyDictionary()
)


def _turns() -> anyio.CapacityLimiter:
    """One refusal is written at a time per process (per event loop): a flood of them
    never takes more than one database connection."""
    loop = asyncio.get_running_loop()
    limiter = _record_turns.get(loop)
    if limiter is None:
        limiter = _record_turns[loop] = anyio.CapacityLimiter(1)
    return limiter


def _write(database: Database, recorder: Recorder, refusal: Refusal) -> None:
    try:
        with database.write() as session:
            recorder(session, refusal)
    except Exception as exc:  # the answer is sent; a lost record must not raise
        log.warning("could not record a rate limit refusal: %s", type(exc).__name__)


async def _record(database: Database, recorder: Recorder, refusal: Refusal) -> None:
    turns = _turns()
    if turns.statistics().tasks_waiting >= MAX_WAITING_RECORDS:
        return
    await anyio.to_thread.run_sync(partial(_write, database, recorder, refusal), limiter=turns)


def install(app: FastAPI, settings: Settings, *, recorder: Recorder | None = None) -> None:
    """The app's limits, the 429 handler, and 429 in the API's schema (when on)."""
    app.state.rate_limits = RateLimits(settings)

    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)
        refusal = exc.refusal
        RATE_LIMITED.labels(refusal.limit).inc()
        response = rate_limited_response(request, refusal.retry_after, limit=refusal.limit)
        if refusal.first and recorder is not None:
            database: Database = request.app.state.database
            response.background = BackgroundTask(_record, database, recorder, refusal)
        return response

    if settings.rate_limits:
        _document_429(app)


ERROR_OUT = "#/components/schemas/ErrorOut"
RESPONSE_429 = {
    "description": "Too many requests from this client (`rate_limited`); try again after "
    "`Retry-After` seconds.",
    "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": {"$ref": ERROR_OUT}}},
}


def _document_429(app: FastAPI) -> None:
    """Every /api/v1 route counts against the API limit, so each documents a 429 (the
    other documented paths, such as the log key, are not limited). Only with RATE_LIMITS
    on: off, no route can send one."""
    schema_of = app.openapi

    def openapi() -> dict[str, Any]:
        schema = schema_of()
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/api/v1/"):
                continue
            for operation in operations.values():
                responses: dict[str, Any] = operation.setdefault("responses", {})
                responses.setdefault("429", RESPONSE_429)
                operation["responses"] = dict(sorted(responses.items()))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
