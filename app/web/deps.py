"""Typed dependencies for routes: the settings and the request's session.

Admission control (D51): a request that uses a session first takes one of the
database's `request_slots` permits, waiting on the event loop (holding nothing) for at
most `ADMISSION_WAIT_SECONDS`, else it is answered `503` with `Retry-After`. A request
holds its connection (and any row lock it took) from its first statement until the
dependency ends, which is after FastAPI has validated a sync endpoint's answer in
another thread. The pool keeps a connection for every permit and there are more threads
than permits, so no request ever waits for a connection while it holds a thread, and a
request that holds a connection always gets its next thread: the two-resource deadlock
that stalled the app under load cannot form.

Three sessions: `WriteSession` (one transaction on the primary), `ReadSession` (no
transaction, on the primary: pages that must see what was just written, such as the
confirm page, the manage page and the dashboard) and `PublicReadSession` (no
transaction, on the read replica when UNDERSIGNED_DATABASE_READ_URL is set: the public
pages and API reads, the same for everyone and fine a moment behind). All three take
the same permits: a request holds one connection, of the primary's pool or the
replica's, and both pools are `database_pool_size` large.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated
from weakref import WeakKeyDictionary

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from app.config import Settings
from app.db import Database

ADMISSION_WAIT_SECONDS = 5.0
"""How long a request may wait for a permit before it is answered 503."""
RETRY_AFTER_SECONDS = 5
THREAD_MARGIN = 8
"""Threads beyond the permits for sync work that needs no session (static files, …)."""


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


@dataclass
class _Admission:
    """One event loop's permits for one Database (TestClient runs a loop per client
    or per request; uvicorn one per process)."""

    permits: anyio.Semaphore
    teardown: anyio.CapacityLimiter
    """Threads for commit/rollback/close, apart from the default limiter: a request that
    holds a connection never queues behind requests that are waiting to get one."""


@dataclass
class _Admissions:
    by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, _Admission] = field(
        default_factory=WeakKeyDictionary
    )


_admissions: WeakKeyDictionary[Database, _Admissions] = WeakKeyDictionary()


def _admission(database: Database) -> _Admission:
    loop = asyncio.get_running_loop()
    per_database = _admissions.setdefault(database, _Admissions())
    admission = per_database.by_loop.get(loop)
    if admission is None:
        slots = database.request_slots
        # A permit holder needs a thread for its endpoint and for FastAPI's response
        # validation: with at least as many threads as permits, one is always free.
        limiter = anyio.to_thread.current_default_thread_limiter()
        if limiter.total_tokens < slots + THREAD_MARGIN:
            limiter.total_tokens = slots + THREAD_MARGIN
        admission = _Admission(anyio.Semaphore(slots), anyio.CapacityLimiter(slots))
        per_database.by_loop[loop] = admission
    return admission


@asynccontextmanager
async def _admitted(request: Request) -> AsyncIterator[_Admission]:
    """Holds one permit for the block; 503 with Retry-After when none comes in time."""
    if getattr(request.state, "has_session", False):
        # Two sessions would hold two connections under one permit.
        raise RuntimeError("A request uses one session: ReadSession or WriteSession, not both.")
    admission = _admission(get_database(request))
    try:
        with anyio.fail_after(ADMISSION_WAIT_SECONDS):
            await admission.permits.acquire()
    except TimeoutError:
        raise HTTPException(503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    request.state.has_session = True
    try:
        yield admission
    finally:
        admission.permits.release()


async def _read_session(request: Request) -> AsyncIterator[Session]:
    # Closing a read session does no I/O (no transaction: nothing to commit; the
    # connection goes back to the pool as it is), so it ends here, on the event loop.
    async with _admitted(request):
        with get_database(request).read() as session:
            yield session


def public_database(request: Request) -> Database:
    """The app's Database, reading public pages from the replica when one is set. The
    replica's engine is made on the first public read (a no-op once made)."""
    database = get_database(request)
    settings: Settings = request.app.state.settings
    if settings.database_read_url and database.read_url is None:
        database.use_read_url(settings.database_read_url)
    return database


async def _public_read_session(request: Request) -> AsyncIterator[Session]:
    database = public_database(request)
    async with _admitted(request):
        with database.public_read() as session:
            yield session


async def _write_session(request: Request) -> AsyncIterator[Session]:
    async with _admitted(request) as admission:
        # Entering makes a Session and does no I/O: the connection (and BEGIN) come with
        # the first statement, in the endpoint's thread. Commit or rollback, and giving
        # the connection back, run in a thread of their own, shielded from cancellation
        # so that the permit is never released while the connection is still held.
        transaction: AbstractContextManager[Session] = get_database(request).write()
        session = transaction.__enter__()
        try:
            yield session
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    transaction.__exit__,
                    type(exc),
                    exc,
                    exc.__traceback__,
                    limiter=admission.teardown,
                )
            raise
        if session.get_transaction() is None:
            # The endpoint committed (the hot routes do, D183): no connection is held and
            # ending the block does no I/O, so it ends here, without a thread hop.
            transaction.__exit__(None, None, None)
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                transaction.__exit__, None, None, None, limiter=admission.teardown
            )


# scope="function": the write transaction commits before the response leaves, so a
# redirect is never sent for a change that then fails to commit.
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]
PublicReadSession = Annotated[Session, Depends(_public_read_session, scope="function")]
"""For public reads only: letter pages, the signer list and search, the tally and list
API, the breakdown. Never for a write, nor a page that must see one (see above)."""
AppSettings = Annotated[Settings, Depends(get_settings)]
