"""Engine, declarative base, column types, the Database (sessions), and `OnDriver` (a
statement of a hot path run on the session's psycopg connection, D199).

SQLite is tuned for a small busy machine: WAL, foreign keys, a busy timeout and
`secure_delete` (deleted personal data is overwritten, not left in free pages).
pysqlite's own transaction handling is switched off so that SQLAlchemy emits BEGIN
itself: savepoints then work, and writers can ask for `BEGIN IMMEDIATE`, which takes
the write lock up front instead of failing with SQLITE_BUSY when a read turns into a
write under load.

PostgreSQL may sit behind PgBouncer in transaction mode: each transaction may
run on another server connection, so nothing may outlive a transaction. The app keeps
to that (advisory locks are `pg_advisory_xact_lock`, no LISTEN, no session `SET`, no
temporary tables, no cursors held across statements); the one thing to switch off is
psycopg's server-side prepared statements (`prepare_threshold`, URL below), which
PgBouncer before 1.21 cannot follow from one server connection to the next.
Public reads may go to a read replica (`Database.use_read_url`, `public_read()`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from weakref import WeakValueDictionary

from sqlalchemy import (
    URL,
    Connection,
    DateTime,
    Engine,
    Enum,
    MetaData,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

WRITE = {"undersigned_write": True}
"""Execution options for a session that will write: `BEGIN IMMEDIATE` on SQLite."""
READ = {"undersigned_read": True}
"""Execution options for a read-only request: no transaction at all (autocommit)."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def str_enum(enum: type[StrEnum], name: str) -> Enum:
    """A StrEnum stored by value in a VARCHAR with a CHECK constraint (no native
    enum type: adding a value later is a plain migration on every database)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=True,
        length=16,
        name=name,
        values_callable=lambda members: [member.value for member in members],
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back an aware datetime (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use app.db.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


DEFAULT_POOL_SIZE = 5
"""Connections per process (UNDERSIGNED_DATABASE_POOL_SIZE). Several processes x this
must stay under PostgreSQL's max_connections (or put PgBouncer in front). Five, so three
requests per process use the database at once (D184, D191): the work is CPU-bound
Python, and more threads per process mostly wait for the interpreter lock, the counter
row among them (measured: 18 -> 6 slots, sign 576 -> 726/s and confirm 307 -> 394/s;
6 -> 3 slots, confirm 426 -> 505/s with p99 183 -> 165 ms)."""
RESERVED_CONNECTIONS = 2
"""Of the pool, kept out of reach of requests: one for the in-process mail worker, one
for health checks (`Database.ping`, one at a time). The rest, `request_slots`, is what
app/web/deps.py lets requests hold at once, so a request never waits for a connection."""


PREPARE_THRESHOLD = "prepare_threshold"
"""A PostgreSQL URL's query may carry psycopg's `prepare_threshold`: how many times a
statement runs on one connection before psycopg prepares it on the server (psycopg's
default: 5). `none` turns server-side prepared statements off, as PgBouncer in
transaction mode (before 1.21) needs; `UNDERSIGNED_DATABASE_POOLER=transaction` adds it."""


def _prepare_threshold(url: URL) -> tuple[URL, dict[str, Any]]:
    """Takes `prepare_threshold` out of the URL's query (SQLAlchemy would hand psycopg the
    text `"none"`), as a connect argument psycopg understands: an int, or None."""
    if PREPARE_THRESHOLD not in url.query:
        return url, {}
    raw = url.query[PREPARE_THRESHOLD]
    value = (raw[-1] if isinstance(raw, tuple) else raw).strip().lower()
    url = url.difference_update_query([PREPARE_THRESHOLD])
    if value in ("", "none", "off"):
        return url, {PREPARE_THRESHOLD: None}
    if not value.isdigit():
        raise ValueError(
            f"{PREPARE_THRESHOLD} in the database URL must be a whole number or `none` "
            "(none: no server-side prepared statements, for PgBouncer in transaction mode)"
        )
    return url, {PREPARE_THRESHOLD: int(value)}


def make_engine(url: str, **kwargs: Any) -> Engine:
    # A failing statement must not print its bound parameters (names, addresses,
    # tokens) into the log; nor must PostgreSQL's error text (`_scrub_postgres_error`).
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            # A fixed pool, like PostgreSQL's (an in-memory database has a pool of its own).
            kwargs.setdefault("pool_size", DEFAULT_POOL_SIZE)
            kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_SECONDS)
        engine = create_engine(url, **kwargs)
        file_database = bool(database) and database != ":memory:"
        _tune_sqlite(engine, _write_queue(str(database)) if file_database else None)
        return engine
    # A fixed pool (no overflow): app/web/deps.py admits at most `request_slots` requests
    # holding a session at once, so no request ever waits for a connection while it
    # holds a thread (D51).
    kwargs.setdefault("pool_size", DEFAULT_POOL_SIZE)
    kwargs.setdefault("max_overflow", 0)
    parsed, connect_args = _prepare_threshold(make_url(url))
    if connect_args:
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), **connect_args}
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "handle_error", _scrub_postgres_error)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 5.0
"""A pooled PostgreSQL connection that has rested this long is pinged before use (D189)."""


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's `pool_pre_ping`, only for a connection that has rested in the pool
    for `PING_AFTER_IDLE_SECONDS` (D189).

    `pool_pre_ping` costs a round trip on every checkout: one in six of a confirmation's.
    A connection goes stale while it rests (a PostgreSQL restart, a pooler or firewall
    closing idle connections); one handed back a moment ago almost never is. A failed
    ping raises `DisconnectionError` from the checkout event, which SQLAlchemy documents
    as "discard this connection, try another" (as pre-ping does)."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def rested_from(dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_rested(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        rested = time.monotonic() - record.info.get("checked_in_at", 0.0)
        if rested < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"stale connection: {type(exc).__name__}") from exc


_QUOTED = re.compile(r'"[^"]*"')


def _scrub_postgres_error(context: ExceptionContext) -> None:
    """PostgreSQL's error text carries data: `DETAIL:  Failing row contains (…, ada@…)`
    for a NOT NULL or CHECK violation, `Key (…)=(…)` for a duplicate, and for a bad
    value (SQLSTATE class 22) the value itself, quoted in the first line. Keep the first
    line (what went wrong, with table, column and constraint names) without quoted
    values; the full diagnostics stay on `orig.diag` for code that needs them."""
    original = context.original_exception
    lines = str(original).splitlines()
    if not lines:
        return
    message = lines[0]
    if str(getattr(original, "sqlstate", "") or "").startswith("22"):
        message = _QUOTED.sub('"…"', message)
    if len(lines) > 1:
        message += " (details hidden)"
    original.args = (message,)
    wrapped = context.sqlalchemy_exception
    if wrapped is not None:
        kind = type(original)
        wrapped.args = (f"({kind.__module__}.{kind.__name__}) {message}",)


SQLITE_BUSY_SECONDS = 30
"""SQLite's busy timeout: how long a writer waits for another process's write lock (the
CLI, a worker run apart), and for its turn in this process's write queue."""


class _Turn:
    """One write transaction's place in a `WriteQueue`."""

    __slots__ = ("blocks", "passed_over", "signalled", "wake")

    def __init__(self, blocks: tuple[object, ...]) -> None:
        self.blocks = blocks
        """The write blocks open in the thread that asked, when it asked."""
        self.wake = threading.Lock()
        self.wake.acquire()
        self.signalled = False
        """`wake` is released and not yet taken (under the queue's mutex)."""
        self.passed_over = False
        """Woken at the head of the line and beaten to the turn by a newcomer."""


class WriteQueue:
    """Turns at one SQLite file's write lock within this process, in a line (D178).
    SQLite's busy handler polls with growing sleeps: whoever polls at the right moment
    barges in, some writers wait seconds, and the lock lies idle while all of them
    sleep. Here a writer that finds the turn taken joins the line before `BEGIN
    IMMEDIATE`; giving the turn back wakes the head of the line (its own wake-up lock:
    no herd). A writer arriving just then, already running, may take the free turn
    first (waiting for the woken thread to be scheduled would leave the lock idle and
    cost a fifth of the throughput, measured), but only once per head: a head passed
    over is handed the next turn directly. So a writer in line waits for at most two
    turns per writer ahead of it. The busy timeout still arbitrates between processes.

    A turn is taken just before `BEGIN IMMEDIATE` (in the thread that runs the first
    statement) and given back when the connection goes back to the pool (after COMMIT or
    ROLLBACK, by whichever thread ends the session; also when it is invalidated or
    detached): a turn belongs to a connection, not to a thread."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holder: _Turn | None = None
        self._waiting: deque[_Turn] = deque()

    def acquire(
        self, blocks: tuple[object, ...] = (), timeout: float = SQLITE_BUSY_SECONDS
    ) -> _Turn:
        """Waits for a turn: at most `timeout` seconds, then `TimeoutError`."""
        turn = _Turn(blocks)
        with self._mutex:
            if self._holder is None:
                self._holder = turn
                return turn
            self._waiting.append(turn)
        deadline = time.monotonic() + timeout
        while True:
            woken = turn.wake.acquire(timeout=max(0.0, deadline - time.monotonic()))
            with self._mutex:
                if self._holder is turn:  # handed over
                    return turn
                if woken:
                    turn.signalled = False
                if self._holder is None:  # free: the head of the line takes it
                    self._waiting.remove(turn)
                    self._holder = turn
                    return turn
                if not woken:
                    self._waiting.remove(turn)
                    raise TimeoutError
                turn.passed_over = True  # a newcomer was quicker; next time it's ours

    def release(self, turn: _Turn) -> None:
        """Wakes the head of the line. Releasing twice is a no-op (it runs in a pool
        event, which must not raise)."""
        with self._mutex:
            if self._holder is not turn:
                return
            self._holder = None
            if not self._waiting:
                return
            head = self._waiting[0]
            if head.passed_over or head.signalled:  # woken before, and someone else won
                self._waiting.popleft()
                self._holder = head
            if not head.signalled:
                head.signalled = True
                head.wake.release()

    def held_inside(self, blocks: list[object]) -> bool:
        """Whether the turn is held by a transaction begun inside one of `blocks` (this
        thread's open write blocks): waiting for it would wait forever."""
        holder = self._holder
        return holder is not None and any(block in blocks for block in holder.blocks)

    @property
    def held(self) -> bool:
        return self._holder is not None

    @property
    def waiting(self) -> int:
        return len(self._waiting)


_write_queues: WeakValueDictionary[str, WriteQueue] = WeakValueDictionary()
_write_queues_lock = threading.Lock()


def _write_queue(database: str) -> WriteQueue:
    """One queue per database file and process, shared by its engines."""
    key = str(Path(database).resolve())
    with _write_queues_lock:
        queue = _write_queues.get(key)
        if queue is None:
            queue = _write_queues[key] = WriteQueue()
        return queue


_open_blocks = threading.local()


def _blocks_here() -> list[object]:
    """This thread's open `Database.write()`/`write_connection()` blocks (SQLite files)."""
    blocks: list[object] | None = getattr(_open_blocks, "blocks", None)
    if blocks is None:
        blocks = _open_blocks.blocks = []
    return blocks


class _WriteBlock:
    """Marks a `Database.write()` or `write_connection()` block as open in the thread
    that enters it, so that a write transaction begun inside it while one begun inside it
    holds the turn is refused instead of waiting for itself. The block may end in
    another thread (app/web/deps.py enters it on the event loop and commits in a thread
    of its own): the mark leaves the list of the thread that made it."""

    __slots__ = ("_blocks",)

    def __enter__(self) -> None:
        self._blocks = _blocks_here()
        self._blocks.append(self)

    def __exit__(self, *_exc: object) -> None:
        self._blocks.remove(self)


_NO_BLOCK = nullcontext()
"""PostgreSQL and in-memory SQLite: no queue, nothing to mark."""


_TURN = "undersigned_write_turn"
"""Key of a connection's held turn in its pool record's `record_info`."""


def _tune_sqlite(engine: Engine, queue: WriteQueue | None) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN below
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "foreign_keys=ON",
            f"busy_timeout={SQLITE_BUSY_SECONDS * 1000}",
            "secure_delete=ON",
            "synchronous=NORMAL",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get("undersigned_read"):
            return  # each statement is its own implicit transaction
        if not options.get("undersigned_write", False):
            connection.exec_driver_sql("BEGIN")
            return
        record = connection.connection.record_info
        if queue is None or record is None or _TURN in record:
            # No queue (in-memory), or this connection has held its turn since an
            # earlier transaction (a bare connection that was not given back).
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        blocks = _blocks_here()
        if blocks and queue.held_inside(blocks):
            raise RuntimeError(
                "A write transaction was opened inside another one on the same SQLite "
                "database, in the same thread: it would wait for the first one forever. "
                "Finish the first write (or use its session) before starting another."
            )
        try:
            turn = queue.acquire(tuple(blocks))
        except TimeoutError:
            raise OperationalError(
                "BEGIN IMMEDIATE",
                None,
                sqlite3.OperationalError(
                    f"database is locked (no write turn in {SQLITE_BUSY_SECONDS} s)"
                ),
            ) from None
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            queue.release(turn)
            raise
        record[_TURN] = turn

    if queue is None:
        return

    def give_back(_dbapi_connection: Any, record: Any) -> None:
        turn = record.record_info.pop(_TURN, None)
        if turn is not None:
            queue.release(turn)

    # After COMMIT or ROLLBACK (`write()` and `write_connection()` give the connection
    # back right after), or an invalidation (which closes the SQLite connection).
    event.listen(engine, "checkin", give_back)
    event.listen(engine, "detach", give_back)


def upsert(session: Session, model: type[Any]) -> Any:
    """`INSERT` with `ON CONFLICT` for the session's database (PostgreSQL or SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


class OnDriver:
    """A Core statement that runs on a PostgreSQL session's own psycopg connection, in
    the session's transaction, without SQLAlchemy's execution around it (D199).

    For the few statements on a hot path whose cost is mostly SQLAlchemy's: compiled
    once for psycopg, its parameters made as SQLAlchemy makes them (the compiled
    statement's `construct_params`, each bind's type's own processor, so a StrEnum or a
    `UTCDateTime` binds as before), psycopg's own prepared plan. Rows come back as
    named tuples, without result processing: read only plain columns (an enum column is
    its value, a plain `str` equal to the member).

    What SQLAlchemy's execution does besides running the statement comes along: a
    driver error goes through the connection's own error handling (the engine's
    `handle_error` hooks, so `_scrub_postgres_error` takes the data out of PostgreSQL's
    text; a dead connection is invalidated and the error marked `connection_invalidated`,
    which D194's 503 reads); the engine's `before_cursor_execute` and
    `after_cursor_execute` listeners see them (with `context` None). What does not: the
    engine's SQL echo."""

    def __init__(self, statement: Any) -> None:
        self._statement = statement
        self._ready: tuple[str, Any, dict[str, Any], Any] | None = None

    def _compiled(self) -> tuple[str, Any, dict[str, Any], Any]:
        """Compiled at first use (importing the module costs nothing on SQLite)."""
        if self._ready is None:
            from psycopg.rows import namedtuple_row  # PostgreSQL only

            dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
            compiled = self._statement.compile(dialect=dialect)
            processors = {
                name: processor
                for bind, name in compiled.bind_names.items()
                if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))
            }
            self._ready = (str(compiled), compiled, processors, namedtuple_row)
        return self._ready

    @property
    def sql(self) -> str:
        return self._compiled()[0]

    def parameters(self, values: dict[str, Any]) -> dict[str, Any]:
        """The driver's parameters for `values` (by bind name); a missing one is refused."""
        _sql, compiled, processors, _rows = self._compiled()
        parameters: dict[str, Any] = compiled.construct_params(values)
        for name, processor in processors.items():
            parameters[name] = processor(parameters[name])
        return parameters

    def rows(self, session: Session, values: dict[str, Any]) -> list[Any]:
        """Runs the statement in `session`'s transaction (begun here if it was not) and
        returns all its rows."""
        sql, _compiled, _processors, row_factory = self._compiled()
        connection = session.connection()
        parameters = self.parameters(values)
        driver: Any = connection.connection.driver_connection
        cursor = driver.cursor(row_factory=row_factory)
        # The engine's cursor events, when anything listens (tests that watch what is
        # sent; SQL instrumentation): with no ExecutionContext, which their documentation
        # allows ("May be None").
        events = connection.dispatch
        try:
            for before in events.before_cursor_execute:
                sql, parameters = before(connection, cursor, sql, parameters, None, False)
            cursor.execute(sql, parameters)
            for after in events.after_cursor_execute:
                after(connection, cursor, sql, parameters, None, False)
            rows: list[Any] = cursor.fetchall()
        except BaseException as error:
            # As SQLAlchemy's own execution does: its handle_error hooks, invalidation
            # of a dead connection, the error wrapped as a DBAPIError.
            connection._handle_dbapi_exception(error, sql, parameters, cursor, None)
        finally:
            cursor.close()
        return rows


class Database:
    """The one way to open a session: `read()` for requests that only read, `write()`
    for one transaction. Made once per process (by `create_app`, the CLI, the worker,
    tests and bench) and disposed at the end.

    - `write()`: one transaction, committed when the block ends and rolled back on any
      error; `BEGIN IMMEDIATE` on SQLite, so concurrent writers queue for the lock
      instead of failing with "database is locked" when a read turns into a write.
      Within a process they queue first come first served (`WriteQueue`, D178); a
      write begun inside another one's block in the same thread is refused.
    - `read()`: no transaction at all (autocommit), so ending it costs no round trip.
      Each statement sees committed data; a page that runs two queries may see a
      signature arrive between them, which a page can live with. Never write through it.
    - `public_read()`: like `read()`, on the read replica when there is one
      (`use_read_url`, UNDERSIGNED_DATABASE_READ_URL), else on the primary. For public
      pages only (the same for every visitor, fine a moment behind): a replica lags
      the primary, so a page that must see what was just written (the confirm page,
      the manage page, the dashboard) and the worker use `read()` or `write()`.

    A session takes its connection at its first statement and gives it back when it
    ends. Requests reach sessions through app/web/deps.py, which admits at most
    `request_slots` of them at once: the pool always has a connection for each (the
    replica's pool is as large, and a request holds one connection of either).
    """

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_options)
        size = getattr(self.engine.pool, "size", None)
        self.pool_size: int = size() if callable(size) else DEFAULT_POOL_SIZE
        self._ping_lock = threading.Lock()
        self._writer = self.engine.execution_options(**WRITE)
        self.write_queue: WriteQueue | None = self._queue_of(url)
        """SQLite file: this process's queue of writers (D178); None otherwise."""
        self._reader = self._read_only(self.engine)
        self._sessions = sessionmaker(expire_on_commit=False, autoflush=False)
        self._engine_options = engine_options
        self._replica_lock = threading.Lock()
        self.read_url: str | None = None
        self.read_engine: Engine | None = None
        self._public_reader = self._reader

    @staticmethod
    def _queue_of(url: str) -> WriteQueue | None:
        """The SQLite file's write queue (the one `make_engine` uses); None otherwise."""
        if not url.startswith("sqlite"):
            return None
        database = make_url(url).database
        return _write_queue(database) if database and database != ":memory:" else None

    def _write_block(self) -> AbstractContextManager[None]:
        return _NO_BLOCK if self.write_queue is None else _WriteBlock()

    @staticmethod
    def _read_only(engine: Engine) -> Engine:
        if engine.dialect.name == "sqlite":
            return engine.execution_options(**READ)
        return engine.execution_options(**READ, isolation_level="AUTOCOMMIT")

    def use_read_url(self, read_url: str) -> None:
        """Sends `public_read()` to the replica at `read_url` (PostgreSQL), with a pool of
        the primary's size. Idempotent for one URL (app/web/deps.py calls it with the
        setting on the first public read); another URL afterwards is a mistake."""
        with self._replica_lock:
            if self.read_url == read_url:
                return
            if self.read_url is not None:
                raise RuntimeError("this Database already reads from another replica")
            if self.dialect != "postgresql" or not read_url.startswith("postgresql"):
                raise ValueError("a read replica (DATABASE_READ_URL) needs PostgreSQL on both")
            engine = make_engine(read_url, **self._engine_options)
            self._public_reader = self._read_only(engine)
            self.read_engine = engine
            self.read_url = read_url

    @property
    def request_slots(self) -> int:
        """How many requests may hold a session at once: the pool, less the reserve."""
        return max(1, self.pool_size - RESERVED_CONNECTIONS)

    @property
    def dialect(self) -> str:
        """The dialect's name: `sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions(bind=self._reader) as session:
            yield session

    @contextmanager
    def public_read(self) -> Iterator[Session]:
        with self._sessions(bind=self._public_reader) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write_block(), self._sessions(bind=self._writer) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """One transaction on a bare connection (migrations, which Alembic drives)."""
        with self._write_block(), self._writer.begin() as connection:
            yield connection

    def ping(self) -> None:
        """Health checks take turns for their one reserved connection: a flood of them
        never takes the connections that requests were promised."""
        with self._ping_lock, self._reader.connect() as connection:
            connection.execute(text("SELECT 1"))

    def checkpoint(self) -> None:
        """SQLite only: copy the WAL into the database file and truncate it, so that no
        old page image (of a row since wiped) stays on disk. Outside any transaction."""
        with self._reader.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not None:
            self.read_engine.dispose()
