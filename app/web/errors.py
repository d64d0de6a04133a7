"""Errors become `{"error", "detail"}` JSON under /api and an HTML page elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.errors import DomainError, InvalidToken
from app.web.rendering import render
from app.web.security import security_headers

log = logging.getLogger("undersigned.web")

HTTP_CODES = {
    400: ("bad_request", "The request could not be understood."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This address does not accept that kind of request."),
    413: ("too_large", "What you sent is too large."),
    415: ("unsupported_media_type", "Send JSON with Content-Type: application/json."),
    422: ("invalid_input", "Some of what you sent is not valid."),
    429: ("too_many_requests", "Too many requests. Wait a little and try again."),
    500: ("server_error", "Something went wrong on our side. Please try again."),
}


class ErrorOut(BaseModel):
    """Every error the JSON API sends."""

    error: str = Field(description="A stable code, such as `letter_not_found`.")
    detail: str = Field(description="What went wrong, in words for a person.")
    fields: dict[str, str] | None = Field(
        default=None, description="For `invalid_input`: the first problem of each field."
    )
    reason: str | None = Field(
        default=None, description="For `invalid_token`: `invalid`, `expired` or `gone`."
    )
    expired: bool | None = Field(default=None, description="For `invalid_token`.")


ERROR_DESCRIPTIONS = {
    400: "The link or token is not valid, has expired, or points at nothing.",
    404: "There is no published letter at this address.",
    409: "The letter is not open for signatures.",
    413: "The request body is larger than the server accepts.",
    415: "The body is not JSON.",
    422: "Some input is not valid; `fields` says which.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the errors a JSON route can send, all as `ErrorOut`."""
    return {
        status: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


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
    if _is_api(request):
        return JSONResponse(
            {"error": code, "detail": detail, **(extra or {})}, status, headers=headers
        )
    context = {"status": status, "code": code, "detail": detail, **(extra or {})}
    response = render(request, template, context, status_code=status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def field_errors(errors: Any) -> dict[str, str]:
    """Pydantic's error list, keyed by field name (the first error of each field)."""
    fields: dict[str, str] = {}
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        fields.setdefault(".".join(location) or "body", str(error.get("msg", "invalid")))
    return fields


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        template = "signatures/invalid_link.html" if isinstance(exc, InvalidToken) else "error.html"
        return _respond(
            request, exc.status_code, exc.code, exc.detail, extra=exc.extra(), template=template
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code, default = HTTP_CODES.get(exc.status_code, ("error", "The request failed."))
        # Starlette's default detail is the bare reason phrase ("Method Not Allowed"):
        # say it in our words unless the raiser wrote its own explanation.
        generic = HTTPException(exc.status_code).detail
        own = isinstance(exc.detail, str) and exc.detail not in ("", generic)
        detail = exc.detail if own and exc.status_code != 404 else default
        return _respond(request, exc.status_code, code, detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _respond(
            request, 422, "invalid_input", "Some fields are not valid.",
            extra={"fields": field_errors(exc.errors())},
        )  # fmt: skip

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        code, detail = HTTP_CODES[500]
        # Sent from outside SecurityMiddleware: the headers must be added here.
        headers = security_headers(request.app.state.settings.secure_cookies)
        return _respond(request, 500, code, detail, headers=headers)
