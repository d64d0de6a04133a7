"""Security headers, CSRF, size limits and redirects that stay on this site, as small
pure-ASGI middleware (no per-request task).

CSRF: a state-changing request must say, through the browser's `Sec-Fetch-Site` or
`Origin` header, that it comes from this site (`check_csrf`). A request that says
neither falls back to a double-submit cookie: a random value in a SameSite=Lax,
HttpOnly cookie (`__Host-` prefixed under HTTPS, so a sibling subdomain cannot plant
one), repeated in the form. The cookie is set only on a response that rendered a
token, and the public sign form renders none, so public pages stay cookie-free and
cacheable (app/web/cache.py).
"""

from __future__ import annotations

import hmac
import inspect
import re
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import CSRFError

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
FRAMEABLE_CSP = CSP.replace("frame-ancestors 'none'", "frame-ancestors *")
"""The policy of the one page other sites may frame (a letter's embed, D100)."""
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
MAX_HEADER_BYTES = 16 * 1024
"""Request headers in total (each line's name, value, ": " and CRLF), past which the
answer is 431. Browsers send one or two kilobytes; nginx's default cap is 8 KB a line."""


def csrf_cookie_name(secure: bool) -> str:
    return "__Host-csrf" if secure else "csrf"


def security_headers(secure: bool) -> dict[str, str]:
    """The headers every response carries."""
    headers = {
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    }
    if secure:
        headers["strict-transport-security"] = "max-age=31536000; includeSubDomains"
    return headers


class SecurityMiddleware:
    """Adds `security_headers` and the CSRF cookie. Starlette answers a 500 from
    outside every user middleware, so its handler adds the headers itself."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.secure = secure
        self.cookie_name = csrf_cookie_name(secure)
        self.static_headers = [
            (name.encode(), value.encode()) for name, value in security_headers(secure).items()
        ]
        # `allow_framing`: the same, with frames allowed and no X-Frame-Options.
        self.frameable_headers = [
            (name, FRAMEABLE_CSP.encode() if name == b"content-security-policy" else value)
            for name, value in self.static_headers
            if name != b"x-frame-options"
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = HTTPConnection(scope).cookies.get(self.cookie_name, "")
        state = scope.setdefault("state", {})
        state["csrf_cookie"] = cookie if _TOKEN_SHAPE.match(cookie) else ""

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = message.setdefault("headers", [])
                added = self.frameable_headers if state.get("frameable") else self.static_headers
                if any(name.lower() == b"content-security-policy" for name, _ in own):
                    # A response with its own, stricter policy keeps it (an SVG badge).
                    added = [header for header in added if header[0] != b"content-security-policy"]
                own.extend(added)
                if state.get("csrf_token") and not state["csrf_cookie"]:
                    headers = MutableHeaders(scope=message)
                    secure = "; Secure" if self.secure else ""
                    headers.append(
                        "set-cookie",
                        f"{self.cookie_name}={state['csrf_token']}; Path=/; HttpOnly; "
                        f"SameSite=Lax{secure}",
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Reading more than `max_bytes` of a request body raises HTTPException(413), so
    the app's own handler answers (an HTML page, or JSON under /api, with the security
    headers) instead of Starlette's bare text. A declared Content-Length over the
    limit fails on the first read, before any byte is buffered."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: tuple[tuple[str, int], ...] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger
        """(path prefix, limit) pairs: a larger limit under a prefix (the dashboard; its
        image uploads). The first prefix that matches wins: the longest first."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for prefix, prefix_limit in self.larger:
            if scope["path"].startswith(prefix):
                limit = prefix_limit
                break
        declared = Headers(scope=scope).get("content-length", "")
        too_large = declared.isascii() and declared.isdigit() and int(declared) > limit
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            if too_large:
                raise HTTPException(413)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413)
            return message

        await self.app(scope, receive_with_limit, send)


def header_bytes(scope: Scope) -> int:
    """The size of the request's header lines, as they came over the wire."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


async def _handled(scope: Scope, exc: HTTPException) -> Response:
    """What the app's own handler answers for `exc` (the error page, or JSON under
    /api), for middleware that runs outside Starlette's exception middleware."""
    handler = getattr(scope.get("app"), "exception_handlers", {}).get(HTTPException)
    if handler is None:
        return PlainTextResponse(str(exc.detail), exc.status_code)
    response = handler(Request(scope), exc)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, Response)
    return response


class HeaderLimitMiddleware:
    """More than `max_bytes` of request headers gets `431 Request Header Fields Too
    Large` from the app's own handler (its page or JSON, with the security headers when
    this runs inside SecurityMiddleware). uvicorn with httptools caps nothing: it reads
    and hands over headers of any size (measured: 40 MB in one request), so this is
    the limit; a reverse proxy in front should cap them before they are read."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and header_bytes(scope) > self.max_bytes:
            response = await _handled(scope, HTTPException(431))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RelativeSlashRedirect:
    """The router's fallback when no route matches (`router.default`): Starlette's
    trailing-slash redirect (`/letters/x/` -> `/letters/x`), but relative.

    Starlette's own (`redirect_slashes`) builds an absolute `Location` from the Host
    header, which the client chooses. This one sends the path and query only, with
    leading slashes collapsed into one: `//evil.example/` as a relative `Location` is
    protocol-relative and would leave the site just the same. Anything else is the
    router's 404."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        location = self.location(scope) if scope["type"] == "http" else None
        if location is None:
            await self.router.not_found(scope, receive, send)
            return
        await RedirectResponse(location)(scope, receive, send)

    def location(self, scope: Scope) -> str | None:
        path: str = scope["path"]
        if path in ("", "/"):
            return None
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        redirect_scope = {**scope, "path": other}
        if not any(route.matches(redirect_scope)[0] != Match.NONE for route in self.router.routes):
            return None
        location = "/" + other.lstrip("/\\")
        query: bytes = scope.get("query_string", b"")
        return f"{location}?{query.decode('latin-1')}" if query else location


def allow_framing(request: Request) -> None:
    """This response may be shown in a frame on any site (a letter's embed, D100): its
    policy says `frame-ancestors *` and it carries no X-Frame-Options. Every other
    answer refuses to be framed."""
    request.state.frameable = True


def csrf_token(request: Request) -> str:
    """The token for a form on this page: the visitor's cookie, or a new one that the
    response then sets (made only here, so pages without a form cost nothing)."""
    state = request.scope["state"]
    if not state.get("csrf_token"):
        state["csrf_token"] = state["csrf_cookie"] or secrets.token_urlsafe(32)
    token: str = state["csrf_token"]
    return token


def check_csrf(request: Request, submitted: str) -> None:
    """A request that changes something must come from this site's own pages.

    Browsers say where a request comes from (OWASP's "Fetch Metadata" and "Verifying
    Origin" defences): `Sec-Fetch-Site` (every current browser) must be `same-origin`;
    failing that header, a non-null `Origin` must be this site's (the configured
    BASE_URL's, or the one the request was addressed to). Only a request with neither
    (an old browser; `Origin: null` counts as none, and our `Referrer-Policy:
    no-referrer` makes some browsers send it) falls back to the double-submit pair.
    So public pages need no per-visitor token and can be cached (app/web/cache.py)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site != "same-origin":
            raise CSRFError()
        return
    origin = request.headers.get("origin", "null")
    if origin != "null":
        if origin not in _own_origins(request):
            raise CSRFError()
        return
    cookie: str = request.state.csrf_cookie
    if not cookie or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise CSRFError()


def sent_by_browser_metadata(request: Request) -> bool:
    """Whether the request said where it came from (so the token played no part)."""
    return "sec-fetch-site" in request.headers or request.headers.get("origin", "null") != "null"


def _own_origins(request: Request) -> set[str]:
    base = urlsplit(request.app.state.settings.base_url)
    origins = {f"{base.scheme}://{base.netloc}"}
    host = request.headers.get("host")
    if host:  # a cross-site page cannot choose the Host its victim's browser sends
        origins.add(f"{request.url.scheme}://{host}")
    return origins
