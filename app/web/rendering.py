"""Rendering a page: the shared Jinja2 environment, plus what every page needs (the
settings and a CSRF token made only if the page has a form)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from starlette.responses import Response

from app.templating import environment
from app.web.locale import language_links
from app.web.security import csrf_token

templates = Jinja2Templates(env=environment())


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    base = {
        "csrf_token": lambda: csrf_token(request),
        "settings": request.app.state.settings,
        "language_links": lambda: language_links(request),
    }
    return templates.TemplateResponse(request, name, {**base, **(context or {})}, status_code)


def json_answer(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as the JSON body FastAPI would send for it, serialized here. A plain
    `def` endpoint that returns a model has FastAPI validate it again against the
    route's `response_model` in a worker thread: one more thread hop per request, which
    the hot write routes (sign, confirm) do without (D193). The route keeps its
    `response_model` for the schema."""
    return Response(model.model_dump_json(), status_code, media_type="application/json")
