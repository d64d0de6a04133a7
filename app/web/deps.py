"""Typed dependencies: settings, the request's session, templates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.responses import Response

from app.config import Settings
from app.db import session_scope
from app.templating import environment
from app.web.security import csrf_token

templates = Jinja2Templates(env=environment())


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _read_session(request: Request) -> Iterator[Session]:
    yield from session_scope(request.app.state.sessionmaker)


def _write_session(request: Request) -> Iterator[Session]:
    yield from session_scope(request.app.state.sessionmaker, write=True)


# scope="function": commit before the response leaves, so a redirect is never sent
# for a change that then fails to commit.
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings)]


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    base = {"csrf_token": lambda: csrf_token(request), "settings": request.app.state.settings}
    return templates.TemplateResponse(request, name, {**base, **(context or {})}, status_code)
