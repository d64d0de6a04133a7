"""Public answers (the same for every visitor) kept for a few seconds, in this process
and by any proxy or CDN in front.

A route marks a response public with `public(response, settings)`: the home page, a
letter's page and signer list, the tally and list API. Then

- `Cache-Control: public, max-age=0, s-maxage=N, stale-while-revalidate=6N`: a shared
  cache (nginx, a CDN) keeps it N seconds (`PUBLIC_CACHE_SECONDS`, default 5) and may
  serve it stale while it fetches a fresh one; a browser asks again each time, with
  `If-None-Match`, and gets a 304 when nothing changed;
- `PublicCacheMiddleware` keeps the finished response (headers and body, compressed or
  not) for N seconds in this process and answers the same request from memory, with a
  strong `ETag` and 304s, without touching the database. While one request fills an
  entry, the others for it wait for that one instead of all rendering it.

What keeps a cached answer from ever holding anything personal:
- only a response a route marked public, with status 200, and no `Set-Cookie` is kept;
  a page that rendered a CSRF token sets the cookie, so it is never kept;
- a request carrying one of `bypass_cookies` (the signed-in organizer's session, the
  one-time "thank you" after confirming) is never answered from the cache: those
  visitors see the page as it is now;
- the key is the path, the query, whether the client takes gzip and the request's
  language (resolved by app/web/locale.py, outside this middleware, from `?lang=`, the
  `lang` cookie and `Accept-Language`); nothing else of the request is read. Public
  answers say `Vary: Accept-Encoding, Accept-Language`.
- of the query, the key keeps only the parameters some route reads (D192): a link shared
  on social media comes back with a different `fbclid`, `utm_*` or `gclid` on every
  click, and each would otherwise be a miss that renders the page again. No page shows
  a parameter no route reads (the language links keep only the ones routes read).

N = 0 turns the in-process cache off and sends `Cache-Control: public, no-cache` (revalidate
with the ETag every time); the tests run so, except those of this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from base64 import urlsafe_b64encode
from collections import OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from time import monotonic
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode
from weakref import finalize

from fastapi.dependencies.utils import get_flat_params
from fastapi.params import Query
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.i18n import current_locale

MAX_ENTRIES = 512
"""Entries kept per process in each of two pools, the least recently used dropped
first: URLs without a query (a letter's page, its tally), and URLs with one (searches,
later pages). A flood of made-up queries then churns only the second pool: it cannot
push the pages everyone reads out of memory."""
MAX_BODY_BYTES = 512 * 1024
"""A response body larger than this passes through without being kept."""
PUBLIC_MARK = "public"
_S_MAXAGE = re.compile(r"s-maxage=(\d+)")
R = TypeVar("R", bound=Response)
Key = tuple[str, bytes, bool, str]
"""(path, query string, whether the client takes gzip, the request's language)."""
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the `ETag` sent in `If-None-Match` is current."}
}
"""For the OpenAPI schema of a public API route."""


_DECLARED: dict[int, frozenset[str]] = {}
"""By `id(router)`, dropped when the router goes (FastAPI's routers are unhashable)."""


def declared_query_names(router: Router) -> frozenset[str]:
    """The query parameters that the app's GET routes declare (FastAPI's own flattening
    of each route's parameters and dependencies), included routers walked. Worked out
    once per router, at its first request: every route is included by then."""
    names = _DECLARED.get(id(router))
    if names is None:
        names = _DECLARED[id(router)] = frozenset(_declared(router.routes))
        finalize(router, _DECLARED.pop, id(router), None)
    return names


def _declared(routes: list[BaseRoute]) -> Iterator[str]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _declared(included.routes)
            continue
        dependant = getattr(route, "dependant", None)
        if dependant is None or "GET" not in (getattr(route, "methods", None) or ()):
            continue
        yield from (p.alias for p in get_flat_params(dependant) if isinstance(p.field_info, Query))


def read_query(query_string: bytes, names: Collection[str]) -> bytes:
    """`query_string` with only the parameters in `names`, in their order (D192)."""
    if not query_string:
        return b""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return urlencode([(name, value) for name, value in pairs if name in names]).encode("latin-1")


def cache_control(seconds: int) -> str:
    if seconds <= 0:
        return f"{PUBLIC_MARK}, no-cache"
    return f"{PUBLIC_MARK}, max-age=0, s-maxage={seconds}, stale-while-revalidate={6 * seconds}"


def public(response: R, settings: Settings, *, ignoring: str = "") -> R:
    """Marks `response` the same for every visitor (see the module's docstring).

    `ignoring`: a part of the body that changes at each rendering without changing what
    the page says (the sign form's render time); the ETag is then a weak one, of the
    body without it, so two renderings of an unchanged page still match."""
    response.headers["cache-control"] = cache_control(settings.public_cache_seconds)
    response.headers["vary"] = "Accept-Encoding, Accept-Language"
    if ignoring:
        body = bytes(response.body).replace(ignoring.encode(), b"")
        response.headers["etag"] = "W/" + etag_of(body)
    return response


def etag_of(body: bytes) -> str:
    return '"' + urlsafe_b64encode(hashlib.sha256(body).digest()[:16]).decode().rstrip("=") + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison; `*` matches any current representation."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


@dataclass
class Entry:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: str
    expires: float
    route: object  # the matched route, for the metrics' label


def _not_modified(entry: Entry) -> tuple[Message, Message]:
    keep = {b"etag", b"cache-control", b"vary", b"content-location", b"expires"}
    headers = [(name, value) for name, value in entry.headers if name in keep]
    return (
        {"type": "http.response.start", "status": 304, "headers": headers},
        {"type": "http.response.body", "body": b""},
    )


class PublicCacheMiddleware:
    """The in-process half of the module's docstring. It goes inside the metrics
    middleware (a hit is counted and timed under its route) and outside compression and
    the security headers (it keeps the response as it leaves the app)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        seconds: int,
        bypass_cookies: tuple[str, ...] = (),
        router: Router | None = None,
        also_read: tuple[str, ...] = (),
    ) -> None:
        """`router`: the app's, whose routes' query parameters (`declared_query_names`),
        with `also_read`, make the key's query; None keeps the whole query."""
        self.app = app
        self.seconds = seconds
        self.router = router
        self.also_read = also_read
        self._names: frozenset[str] | None = None
        self.bypass = tuple(f"{name}=" for name in bypass_cookies)
        self.pools: dict[bool, OrderedDict[Key, Entry]] = {
            False: OrderedDict(),  # no query string
            True: OrderedDict(),
        }
        self.filling: dict[Key, asyncio.Future[Entry | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if_none_match = headers.get("if-none-match", "")
        if self.seconds <= 0 or self._bypassed(headers.get("cookie", "")):
            await self._pass_through(scope, receive, send, if_none_match)
            return
        key: Key = (
            scope["path"],
            self._query(scope.get("query_string", b"")),
            "gzip" in headers.get("accept-encoding", ""),
            "" if scope["path"].startswith("/api/") else current_locale(),  # data: no language
        )
        pool = self.pools[bool(key[1])]
        entry = self._fresh(pool, key)
        if entry is None and key in self.filling:
            entry = await asyncio.shield(self.filling[key])
        if entry is not None:
            if key in pool:
                pool.move_to_end(key)
            await self._answer(entry, scope, send, if_none_match)
            return
        future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self.filling[key] = future
        try:
            entry = await self._pass_through(scope, receive, send, if_none_match)
            if entry is not None:
                pool[key] = entry
                pool.move_to_end(key)
                while len(pool) > MAX_ENTRIES:
                    pool.popitem(last=False)
        finally:
            if self.filling.get(key) is future:
                del self.filling[key]
            future.set_result(entry)

    def _query(self, query_string: bytes) -> bytes:
        if self.router is None or not query_string:
            return query_string
        if self._names is None:
            self._names = declared_query_names(self.router) | set(self.also_read)
        return read_query(query_string, self._names)

    def _bypassed(self, cookie_header: str) -> bool:
        return bool(self.bypass) and any(
            part.strip().startswith(self.bypass) for part in cookie_header.split(";")
        )

    @staticmethod
    def _fresh(pool: OrderedDict[Key, Entry], key: Key) -> Entry | None:
        entry = pool.get(key)
        if entry is None:
            return None
        if entry.expires <= monotonic():
            del pool[key]
            return None
        return entry

    async def _answer(self, entry: Entry, scope: Scope, send: Send, if_none_match: str) -> None:
        if entry.route is not None:
            scope["route"] = entry.route
        if _matches(if_none_match, entry.etag):
            start, body = _not_modified(entry)
        else:
            start = {
                "type": "http.response.start",
                "status": entry.status,
                "headers": entry.headers,
            }
            body = {"type": "http.response.body", "body": entry.body}
        await send(start)
        await send(body)

    async def _pass_through(
        self, scope: Scope, receive: Receive, send: Send, if_none_match: str
    ) -> Entry | None:
        """Runs the app. A public answer is held back whole, given its ETag (and a 304
        when the client has it) and returned to keep; anything else streams as it is."""
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        holding = False
        kept: Entry | None = None

        async def hold(message: Message) -> None:
            nonlocal start, size, holding, kept
            if message["type"] == "http.response.start":
                response_headers = Headers(raw=message.get("headers", []))
                holding = (
                    message["status"] == 200
                    and "set-cookie" not in response_headers
                    and _is_public(response_headers.get("cache-control", ""))
                )
                if holding:
                    start = message
                    return
            elif holding and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > MAX_BODY_BYTES:  # too big to keep: let it go as it is
                    holding = False
                    assert start is not None
                    await send(start)
                    await send({"type": "http.response.body", "body": b"".join(chunks),
                                "more_body": message.get("more_body", False)})  # fmt: skip
                    start = None
                    return
                if message.get("more_body", False):
                    return
                kept = await self._finish(scope, send, start, b"".join(chunks), if_none_match)
                return
            await send(message)

        await self.app(scope, receive, hold)
        return kept

    async def _finish(
        self, scope: Scope, send: Send, start: Message | None, body: bytes, if_none_match: str
    ) -> Entry | None:
        """Answers with the held response (or a 304); returns it when it may be kept."""
        assert start is not None
        headers = MutableHeaders(raw=list(start.get("headers", [])))
        etag = headers.get("etag") or etag_of(body)
        headers["etag"] = etag
        max_age = _S_MAXAGE.search(headers.get("cache-control", ""))
        seconds = min(self.seconds, int(max_age.group(1))) if max_age else 0
        entry = Entry(
            status=start["status"],
            headers=headers.raw,
            body=body,
            etag=etag,
            expires=monotonic() + seconds,
            route=scope.get("route"),
        )
        await self._answer(entry, scope, send, if_none_match)
        return entry if seconds > 0 else None


def _is_public(cache_control: str) -> bool:
    value = cache_control.lower()
    return value.startswith(PUBLIC_MARK) and "private" not in value and "no-store" not in value
