"""Typed dependencies: settings, the request's session, templates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.responses import Response

from app.config import Settings
from app.db import read_only_session, session_scope
from app.templating import environment
from app.web.security import csrf_token

templates = Jinja2Templates(env=environment())


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _read_session(request: Request) -> AsyncIterator[Session]:
    # Async on purpose: creating and closing a read-only session does no I/O (the
    # connection is taken in the endpoint's thread), so it needs no thread hops.
    with read_only_session(request.app.state.sessionmaker) as session:
        yield session


def _write_session(request: Request) -> Iterator[Session]:
    yield from session_scope(request.app.state.sessionmaker, write=True)


# Writes: one transaction per request. scope="function": commit before the response
# leaves, so a redirect is never sent for a change that then fails to commit.
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
