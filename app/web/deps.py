"""Typed dependencies for routes: the settings and the request's session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def _read_session(request: Request) -> AsyncIterator[Session]:
    # Async on purpose: opening and closing a read session does no I/O (the connection
    # is taken in the endpoint's thread, and there is no COMMIT), so no thread hops.
    with get_database(request).read() as session:
        yield session


def _write_session(request: Request) -> Iterator[Session]:
    with get_database(request).write() as session:
        yield session


# scope="function": the write transaction commits before the response leaves, so a
# redirect is never sent for a change that then fails to commit.
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings)]
