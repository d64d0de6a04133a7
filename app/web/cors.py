"""Cross-origin reads of the public API (CORS), and nothing else (D101).

Any site may read `/api/v1` with its own script: a GET or HEAD there answers with
`Access-Control-Allow-Origin: *`, and a browser's preflight for such a read (one that
sends `If-None-Match`, say) is answered here. No credentials: the API reads no cookie
and `*` forbids the browser to send any, so a cross-origin read sees what anyone sees.

Left closed, as before: every other method under `/api/v1` (a POST's preflight is not
answered, so a browser never sends the POST), and every page, the dashboard included.
Starlette's CORSMiddleware opens a whole app; this opens one prefix and two methods.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

READ_METHODS = ("GET", "HEAD")
ALLOWED_HEADERS = "If-None-Match"
"""Request headers a cross-origin read may send beyond the CORS-safelisted ones."""
EXPOSED_HEADERS = "ETag, Retry-After"
PREFLIGHT_MAX_AGE = 86400


class PublicApiCors:
    """See the module's docstring. Goes outside the public cache, so an answer from
    memory (or its 304) carries the header too."""

    def __init__(self, app: ASGIApp, *, prefix: str = "/api/v1/") -> None:
        self.app = app
        self.prefix = prefix
        self.read_headers = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
        ]
        self.preflight_headers = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", ", ".join(READ_METHODS).encode()),
            (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
            (b"access-control-max-age", str(PREFLIGHT_MAX_AGE).encode()),
            (b"content-length", b"0"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS":
            headers = Headers(scope=scope)
            asked = headers.get("access-control-request-method", "")
            if "origin" in headers and asked in READ_METHODS:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": list(self.preflight_headers),
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        if method not in READ_METHODS:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(self.read_headers)
            await send(message)

        await self.app(scope, receive, send_with_cors)
