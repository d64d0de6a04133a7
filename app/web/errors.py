"""Errors become `{"error", "detail"}` JSON under /api and an HTML page elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.errors import DomainError, InvalidToken, NotSignedIn
from app.i18n import N_, gettext
from app.redaction import REDACT, redact
from app.web.rendering import render
from app.web.security import security_headers

log = logging.getLogger("undersigned.web")
# The server's own record of an unhandled exception (uvicorn logs the traceback again,
# after our 500 page): both are redacted, since an exception may quote an address or a
# token.
SERVER_ERROR_LOGGERS = ("undersigned.web", "uvicorn.error")

HTTP_CODES = {
    400: ("bad_request", N_("The request could not be understood.")),
    404: ("not_found", N_("There is nothing at this address.")),
    405: ("method_not_allowed", N_("This address does not accept that kind of request.")),
    413: ("too_large", N_("What you sent is too large.")),
    415: ("unsupported_media_type", N_("Send JSON with Content-Type: application/json.")),
    422: ("invalid_input", N_("Some of what you sent is not valid.")),
    429: ("too_many_requests", N_("Too many requests. Wait a little and try again.")),
    431: ("headers_too_large", N_("The request's headers are too large.")),
    500: ("server_error", N_("Something went wrong on our side. Please try again.")),
    503: ("unavailable", N_("The server is busy. Please try again in a moment.")),
}


class ErrorOut(BaseModel):
    """Every error the JSON API sends."""

    error: str = Field(
        description="A stable code, such as `letter_not_found` or `invalid_input`.",
        examples=["letter_not_found"],
    )
    detail: str = Field(
        description="What went wrong, in words for a person.",
        examples=["There is no letter at this address."],
    )
    fields: dict[str, str] | None = Field(
        default=None,
        description="For `invalid_input`: the first problem of each field, by field name "
        "(`body` when the body itself is not a JSON object).",
    )
    reason: str | None = Field(
        default=None,
        description="For `invalid_token`: `invalid`, `expired` or `gone`; for "
        "`letter_not_open` when verifying: `closed_before_verification`.",
    )
    expired: bool | None = Field(default=None, description="For `invalid_token`.")


ERROR_DESCRIPTIONS = {
    400: "The link or token is not valid, has expired, or points at nothing.",
    404: "There is no published letter at this address.",
    409: "The letter is not open for signatures.",
    413: "The request body is larger than the server accepts.",
    422: "Some input is not valid; `fields` says which.",
    503: "The server is at capacity for a moment; try again after `Retry-After` seconds.",
}
JSON_BODY_422 = (
    "Some input is not valid; `fields` says which. A body that is not a JSON object, or "
    "not sent as `Content-Type: application/json` (or another `+json` type), is "
    "`invalid_input` too, with the field `body`."
)
"""The 422 of a route with a JSON body: FastAPI reads any other Content-Type as no
JSON at all, so a wrong Content-Type is a 422, never a 415."""

# FastAPI's own HTTPException when a JSON body cannot even be decoded (bytes that are
# not UTF-8, nesting too deep for the parser): under /api it becomes our 422, like
# every other body that is not JSON.
_FASTAPI_BODY_ERROR = "There was an error parsing the body"
NOT_JSON = N_("The body is not valid JSON.")
NOT_AN_OBJECT = N_("Send a JSON object, with Content-Type: application/json.")


def error_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a JSON route can send, all as `ErrorOut`.

    A route lists every error status it can really send: `document_api` removes
    FastAPI's default 422 (`HTTPValidationError`, a shape this app never sends)."""
    described = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    responses: dict[int | str, dict[str, Any]] = {}
    for status in (*statuses, 503):  # every API route reads or writes the database
        responses[status] = {"model": ErrorOut, "description": described[status]}
    responses[503]["headers"] = {
        "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
    }
    return responses


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _respond(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    template: str = "error.html",
) -> Response:
    # In the request's language (app/web/locale.py); English msgids pass through
    # unchanged when the catalog lacks them (a message quoting what was sent).
    detail = gettext(detail)
    if extra and isinstance(extra.get("fields"), dict):
        fields = {name: gettext(str(text)) for name, text in extra["fields"].items()}
        extra = {**extra, "fields": fields}
    if _is_api(request):
        return JSONResponse(
            {"error": code, "detail": detail, **(extra or {})}, status, headers=headers
        )
    context = {"status": status, "code": code, "detail": detail, **(extra or {})}
    response = render(request, template, context, status_code=status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if request.url.path.startswith("/dashboard"):
        response.headers["cache-control"] = "no-store"  # an organizer's pages, errors too
    return response


def field_errors(errors: Any) -> dict[str, str]:
    """Pydantic's error list, keyed by field name (the first error of each field).

    Errors about the body as a whole are keyed `body`: not JSON at all (FastAPI puts
    the character offset in `loc`), or JSON that is not an object (a list, a string,
    `null`, no body, or a body sent with another Content-Type)."""
    fields: dict[str, str] = {}
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            fields.setdefault("body", NOT_JSON)
            continue
        if loc == ("body",):
            fields.setdefault("body", NOT_AN_OBJECT)
            continue
        location = [str(part) for part in loc if part not in ("body", "query", "path")]
        fields.setdefault(".".join(location) or "body", str(error.get("msg", "invalid")))
    return fields


def _invalid_input(request: Request, fields: dict[str, str]) -> Response:
    return _respond(
        request, 422, "invalid_input", N_("Some fields are not valid."), extra={"fields": fields}
    )


def error_response(request: Request, exc: DomainError) -> Response:
    """The answer to a domain error, as its exception handler gives it. A route that
    returns it instead of raising keeps its request's transaction, which then commits
    (what the service recorded about the refusal, such as an AbuseEvent, is kept)."""
    if isinstance(exc, NotSignedIn) and not _is_api(request):
        return RedirectResponse("/login", status_code=303)
    template = "signatures/invalid_link.html" if isinstance(exc, InvalidToken) else "error.html"
    return _respond(
        request, exc.status_code, exc.code, exc.detail, extra=exc.extra(), template=template
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR and _is_api(request):
            return _invalid_input(request, {"body": NOT_JSON})
        code, default = HTTP_CODES.get(exc.status_code, ("error", N_("The request failed.")))
        # Starlette's default detail is the bare reason phrase ("Method Not Allowed"):
        # say it in our words unless the raiser wrote its own explanation.
        generic = HTTPException(exc.status_code).detail
        own = isinstance(exc.detail, str) and exc.detail not in ("", generic)
        detail = exc.detail if own and exc.status_code != 404 else default
        return _respond(request, exc.status_code, code, detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _invalid_input(request, field_errors(exc.errors()))

    @app.exception_handler(DBAPIError)
    async def database_gone(request: Request, exc: DBAPIError) -> Response:
        """A connection the database closed under a request (a restart, a failover, a
        pooler's timeout; D194). SQLAlchemy has already dropped that connection and the
        pool's older ones, so asking again works: 503 with `Retry-After`, as at
        capacity, not a 500. Nothing was stored: the transaction died with the
        connection. Any other database error is a server error, below."""
        if not exc.connection_invalidated:
            raise exc
        log.warning("database connection lost on %s %s (%s)", request.method, _where(request),
                    type(exc.orig).__name__)  # fmt: skip
        code, detail = HTTP_CODES[503]
        return _respond(request, 503, code, detail, headers={"Retry-After": "1"})

    for name in SERVER_ERROR_LOGGERS:
        logging.getLogger(name).addFilter(REDACT)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, _where(request), exc_info=exc)
        code, detail = HTTP_CODES[500]
        # Sent from outside SecurityMiddleware: the headers must be added here.
        headers = security_headers(request.app.state.settings.secure_cookies)
        return _respond(request, 500, code, detail, headers=headers)


def _where(request: Request) -> str:
    """The route's template (`/verify/{token}`) for a log line, never the path: paths
    hold tokens."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or redact(request.url.path)


API_PREFIX = "/api/v1"
DOCUMENTED_OUTSIDE_API = frozenset({"/.well-known/undersigned-log-key"})
"""Public, machine-read paths outside /api/v1 that are part of its contract."""
_DEFAULT_422 = "#/components/schemas/HTTPValidationError"


def document_api(app: FastAPI) -> None:
    """`app.openapi()` describes /api/v1 only, with `ErrorOut` for every error.

    FastAPI adds a 422 `HTTPValidationError` (its own error shape) to each route with
    parameters that does not list a 422: this app never sends that shape, so it goes,
    and each route documents its real 422 with `error_responses`. Any path outside
    /api/v1 goes too (pages are `include_in_schema=False` already; this makes sure), and
    then every component schema nothing refers to any more."""

    def openapi() -> dict[str, Any]:
        schema = FastAPI.openapi(app)  # cached by FastAPI; the cleaning is idempotent
        paths: dict[str, Any] = schema.get("paths", {})
        for path in [path for path in paths if not _documented(path)]:
            del paths[path]
        for operations in paths.values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                for status, response in list(responses.items()):
                    if _DEFAULT_422 in _refs(response):
                        del responses[status]
        _drop_unused_components(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _documented(path: str) -> bool:
    return path.startswith(f"{API_PREFIX}/") or path in DOCUMENTED_OUTSIDE_API


def _refs(node: Any) -> set[str]:
    """Every `$ref` inside a piece of the schema."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _drop_unused_components(schema: dict[str, Any]) -> None:
    components: dict[str, Any] = schema.get("components", {}).get("schemas", {})
    prefix = "#/components/schemas/"
    wanted: set[str] = set()
    todo = [ref for ref in _refs(schema.get("paths", {})) if ref.startswith(prefix)]
    while todo:
        name = todo.pop().removeprefix(prefix)
        if name in wanted or name not in components:
            continue
        wanted.add(name)
        todo += [ref for ref in _refs(components[name]) if ref.startswith(prefix)]
    for name in set(components) - wanted:
        del components[name]
