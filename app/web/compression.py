"""gzip for text responses (HTML, JSON, CSS, JavaScript, SVG), with Starlette's
GZipMiddleware, except for responses that could carry a secret (BREACH).

BREACH: a response compressed with a secret in it and text an attacker chose (a query
parameter echoed, a name sent back in a form with its errors) leaks the secret a byte
at a time through the compressed length, to anyone who can make the victim's browser
send requests and can see the sizes on the wire. So a response stays uncompressed when

- its page rendered a CSRF token (`request.state.csrf_token`, set by `csrf_token()`:
  the token is in the body), or it sets a cookie;
- it is per-person: `Cache-Control` with `no-store` or `private` (the dashboard, the
  manage and confirmation pages, the dev mailbox), whose bodies hold personal data,
  tokens in links, or both.

Everything else is the same for every visitor (public pages, the API, static files):
nothing in it is secret, so compressing it leaks nothing.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.gzip import GZipMiddleware, GZipResponder, IdentityResponder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MINIMUM_SIZE = 500
"""Starlette's default: below this, the gzip header costs more than it saves."""
COMPRESS_LEVEL = 6
"""zlib's default: level 9 costs about twice the CPU for one or two percent less."""


def may_carry_secret(scope: Scope, message: Message) -> bool:
    """Whether the response that `message` (its `http.response.start`) begins must
    not be compressed (the module's docstring says why)."""
    state = scope.get("state") or {}
    if state.get("csrf_token"):
        return True
    headers = Headers(raw=message.get("headers", []))
    if "set-cookie" in headers:
        return True
    cache_control = headers.get("cache-control", "").lower()
    return "no-store" in cache_control or "private" in cache_control


class _Guarded(GZipResponder):
    """Starlette's gzip responder, passing through a response that may carry a secret."""

    plain = False

    async def send_with_compression(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.plain = may_carry_secret(self.scope, message)
        if self.plain:
            await self.send(message)
            return
        await super().send_with_compression(message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        await super().__call__(scope, receive, send)


class CompressionMiddleware(GZipMiddleware):
    """GZipMiddleware with `_Guarded` as its responder when the client accepts gzip
    (the same choice as GZipMiddleware's own `__call__`). It goes outside
    SecurityMiddleware, so it sees the final headers (and the CSRF cookie)."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, minimum_size=MINIMUM_SIZE, compresslevel=COMPRESS_LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        responder: IdentityResponder
        if "gzip" in Headers(scope=scope).get("accept-encoding", ""):
            responder = _Guarded(
                self.app,
                self.minimum_size,
                compresslevel=self.compresslevel,
                thread_minimum_size=self.thread_minimum_size,
                exclude_content_types=self.exclude_content_types,
            )
        else:  # Starlette's: sends the body as is, with `Vary: Accept-Encoding`
            responder = IdentityResponder(
                self.app, self.minimum_size, exclude_content_types=self.exclude_content_types
            )
        await responder(scope, receive, _one_vary_each(send))


def _one_vary_each(send: Send) -> Send:
    """Starlette adds `Accept-Encoding` to `Vary` even when the route's own `Vary`
    names it already (app.web.cache.public): each name is said once."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            if "vary" in headers:
                names: dict[str, str] = {}
                for value in headers.getlist("vary"):
                    for name in value.split(","):
                        names.setdefault(name.strip().lower(), name.strip())
                del headers["vary"]
                headers["vary"] = ", ".join(name for name in names.values() if name)
        await send(message)

    return sending
