"""Security headers and CSRF, as small pure-ASGI middleware (no per-request task).

CSRF is a double-submit cookie: a random value in a SameSite=Lax, HttpOnly cookie
(`__Host-` prefixed under HTTPS, so a sibling subdomain cannot plant one), repeated
in each form; a POST is accepted only when the two match. The cookie is set only
on a response that rendered a form, so cacheable pages stay cookie-free.
"""

from __future__ import annotations

import hmac
import re
import secrets

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import CSRFError

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = HTTPConnection(scope).cookies.get(self.cookie_name, "")
        state = scope.setdefault("state", {})
        state["csrf_cookie"] = cookie if _TOKEN_SHAPE.match(cookie) else ""

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"].extend(self.static_headers)
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

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        too_large = declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            if too_large:
                raise HTTPException(413)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413)
            return message

        await self.app(scope, receive_with_limit, send)


def csrf_token(request: Request) -> str:
    """The token for a form on this page: the visitor's cookie, or a new one that the
    response then sets (made only here, so pages without a form cost nothing)."""
    state = request.scope["state"]
    if not state.get("csrf_token"):
        state["csrf_token"] = state["csrf_cookie"] or secrets.token_urlsafe(32)
    token: str = state["csrf_token"]
    return token


def check_csrf(request: Request, submitted: str) -> None:
    cookie: str = request.state.csrf_cookie
    if not cookie or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise CSRFError()
