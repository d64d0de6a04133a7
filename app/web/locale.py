"""Each request's language: `?lang=`, then the `lang` cookie, then `Accept-Language`.

`LocaleMiddleware` resolves it once (app.i18n.negotiate) and runs the rest of the app
inside `use_locale`, so templates, flash messages and error pages all read it from
app.i18n without anyone passing it along. It goes outside the public cache, which keys
its entries on the resolved language (app/web/cache.py: a Spanish reader never gets the
English page kept for someone else).

- Every page answer says `Content-Language`; public answers already send
  `Vary: Accept-Language` (app.web.cache.public) and, when the request carried a `lang`
  cookie, `Vary: Cookie` as well, so a shared cache that keys on Vary keeps them apart.
- Choosing a language in the switcher (`?lang=es`) also sets the `lang` cookie (one
  year, `SameSite=Lax`, nothing personal), so the next pages follow without the query.
  The cookie is added out here, outside the in-process cache, and only when it changes;
  nginx (docs/deploy/nginx.conf) never keeps an answer that sets a cookie.
- The JSON API (`/api/`) negotiates too (a signature sent through it asks for its
  confirmation email in that language) but answers in no language: its bodies are data,
  its error messages stay in English beside their stable `error` codes (D111).
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.i18n import LANGUAGE_NAMES, LOCALES, current_locale, negotiate, supported, use_locale
from app.web.cache import declared_query_names

COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
QUERY = "lang"


class LocaleMiddleware:
    def __init__(self, app: ASGIApp, *, secure: bool = False) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = _query_lang(scope.get("query_string", b""))
        cookie = _cookie_lang(headers.get("cookie", ""))
        locale = negotiate(
            query=query, cookie=cookie, accept_language=headers.get("accept-language")
        )
        api = scope["path"].startswith("/api/")
        remember = supported(query) if supported(query) != supported(cookie) else None

        async def send_with_language(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                if not api:
                    out["content-language"] = locale
                if cookie is not None and "public" in out.get("cache-control", ""):
                    out.add_vary_header("Cookie")
                if remember and not api:
                    out.append("set-cookie", _set_cookie(remember, secure=self.secure))
            await send(message)

        with use_locale(locale):
            await self.app(scope, receive, send_with_language)


def _query_lang(query_string: bytes) -> str | None:
    if b"lang=" not in query_string:
        return None
    for name, value in parse_qsl(query_string.decode("latin-1")):
        if name == QUERY:
            return value[:16]
    return None


def _cookie_lang(cookie_header: str) -> str | None:
    if f"{COOKIE}=" not in cookie_header:
        return None
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value[:16]
    return None


def _set_cookie(locale: str, *, secure: bool) -> str:
    cookie: SimpleCookie = SimpleCookie()
    cookie[COOKIE] = locale
    morsel = cookie[COOKIE]
    morsel["path"] = "/"
    morsel["max-age"] = str(COOKIE_MAX_AGE)
    morsel["samesite"] = "Lax"
    morsel["secure"] = secure
    return morsel.OutputString()


def language_links(request: Request) -> list[dict[str, str | bool]]:
    """The switcher: this page (a GET's own path and query) in each language, as plain
    links (`?lang=es`), so it needs no JavaScript. After a form was sent (POST) the
    links go to the home page: the page's own address may not answer a GET."""
    current = current_locale()
    if request.method == "GET":
        path = request.url.path
        query = parse_qsl(request.url.query, keep_blank_values=True)
        # Only what a route reads: the page is cached for every visitor (D192), so a
        # click's `fbclid` or `utm_source` must not end up in another visitor's links.
        names = declared_query_names(request.app.router)
        kept = [(name, value) for name, value in query if name != QUERY and name in names]
    else:
        path, kept = "/", []
    return [
        {
            "locale": locale,
            "name": LANGUAGE_NAMES[locale],
            "href": f"{path}?{urlencode([(QUERY, locale), *kept])}",
            "current": locale == current,
        }
        for locale in LOCALES
    ]
