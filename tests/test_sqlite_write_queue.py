"""SQLite writers of one process take turns first come, first served (D178), on a real
file: the turn goes back on every path, and a write begun inside another one's block
in the same thread is refused instead of waiting for itself forever."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, PendingRollbackError

from app.db import Database, WriteQueue

WAIT = 10.0
"""Upper bound for a thread that should finish; never reached when the code is right."""


def wait_for(condition: Callable[[], bool]) -> None:
    """Polls a state of the queue (not a timing): fails if it is not reached in WAIT."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the queue never reached the expected state"
        time.sleep(0.001)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    # A connection for every thread a test starts (eight writers and the first), so
    # that a writer waits in the write queue, never for a connection from the pool.
    database = Database(f"sqlite:///{tmp_path / 'queue.db'}", pool_size=16)
    with database.write_connection() as connection:
        connection.exec_driver_sql("CREATE TABLE log (id INTEGER PRIMARY KEY, who TEXT)")
    yield database
    database.dispose()


def queue_of(database: Database) -> WriteQueue:
    assert database.write_queue is not None
    return database.write_queue


def insert(database: Database, who: str) -> None:
    with database.write() as session:
        session.execute(text("INSERT INTO log (who) VALUES (:who)"), {"who": who})


def logged(database: Database) -> list[str]:
    with database.read() as session:
        return list(session.scalars(text("SELECT who FROM log ORDER BY id")))


def test_writers_get_their_turns_in_the_order_they_asked(db: Database) -> None:
    queue = queue_of(db)
    threads: list[threading.Thread] = []
    with db.write() as session:
        session.execute(text("INSERT INTO log (who) VALUES ('first')"))
        assert queue.held
        for n in range(8):
            thread = threading.Thread(target=insert, args=(db, f"writer {n}"))
            thread.start()
            threads.append(thread)
            wait_for(lambda n=n: queue.waiting == n + 1)  # type: ignore[misc]
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert logged(db) == ["first"] + [f"writer {n}" for n in range(8)]
    assert not queue.held
    assert queue.waiting == 0


def test_a_writer_that_raises_hands_the_turn_on(db: Database) -> None:
    queue = queue_of(db)
    waiter = threading.Thread(target=insert, args=(db, "waiter"))
    with pytest.raises(RuntimeError, match="boom"), db.write() as session:
        session.execute(text("INSERT INTO log (who) VALUES ('rolled back')"))
        waiter.start()
        wait_for(lambda: queue.waiting == 1)
        raise RuntimeError("boom")
    waiter.join(WAIT)
    assert not waiter.is_alive()
    assert logged(db) == ["waiter"]
    assert not queue.held


def test_a_failed_statement_gives_the_turn_back(db: Database) -> None:
    queue = queue_of(db)
    with pytest.raises(OperationalError), db.write() as session:
        session.execute(text("INSERT INTO no_such_table VALUES (1)"))
    assert not queue.held
    insert(db, "after")
    assert logged(db) == ["after"]


def test_an_invalidated_connection_gives_the_turn_back(db: Database) -> None:
    queue = queue_of(db)
    with pytest.raises(PendingRollbackError), db.write() as session:
        session.execute(text("INSERT INTO log (who) VALUES ('lost')"))
        assert queue.held
        session.connection().invalidate()
        assert not queue.held  # at once: SQLite's own lock went with the connection
        session.execute(text("SELECT 1"))
    assert not queue.held
    insert(db, "after")
    assert logged(db) == ["after"]


def test_a_write_inside_another_write_in_the_same_thread_is_refused(db: Database) -> None:
    queue = queue_of(db)
    with db.write() as outer:
        outer.execute(text("INSERT INTO log (who) VALUES ('outer')"))
        with pytest.raises(RuntimeError, match="inside another one"), db.write() as inner:
            inner.execute(text("INSERT INTO log (who) VALUES ('inner')"))
        refused = pytest.raises(RuntimeError, match="inside another one")
        with refused, db.write_connection() as connection:
            connection.exec_driver_sql("INSERT INTO log (who) VALUES ('bare')")
        outer.execute(text("INSERT INTO log (who) VALUES ('outer again')"))
    assert logged(db) == ["outer", "outer again"]
    assert not queue.held


def test_a_write_block_opened_inside_another_before_it_writes_is_fine(db: Database) -> None:
    """Only a held turn makes nesting a deadlock: the outer block had not begun."""
    with db.write() as outer:
        insert(db, "inner")
        outer.execute(text("INSERT INTO log (who) VALUES ('outer')"))
    assert logged(db) == ["inner", "outer"]


def test_a_session_begun_in_one_thread_and_ended_in_another_makes_the_next_wait(
    db: Database,
) -> None:
    """As app/web/deps.py does: the block is entered on the event loop, the first
    statement runs in a worker thread, commit in a third. That worker thread may take
    the next request's write before the commit: it waits, it is not refused."""
    queue = queue_of(db)
    worker = ThreadPoolExecutor(max_workers=1)  # one thread: the same one both times
    teardown = ThreadPoolExecutor(max_workers=1)
    try:
        block = db.write()
        session = block.__enter__()
        first = text("INSERT INTO log (who) VALUES ('request 1')")
        worker.submit(session.execute, first).result(WAIT)
        assert queue.held
        second = worker.submit(insert, db, "request 2")
        wait_for(lambda: queue.waiting == 1)
        teardown.submit(block.__exit__, None, None, None).result(WAIT)
        second.result(WAIT)
    finally:
        worker.shutdown()
        teardown.shutdown()
    assert logged(db) == ["request 1", "request 2"]
    assert not queue.held


def test_a_failed_begin_gives_the_turn_back(tmp_path: Path) -> None:
    """Another process holds SQLite's lock past the busy timeout: BEGIN IMMEDIATE fails
    and the turn is not kept."""
    path = tmp_path / "busy.db"
    db = Database(f"sqlite:///{path}", pool_size=1)
    try:
        with db.write_connection() as connection:
            connection.exec_driver_sql("CREATE TABLE log (id INTEGER PRIMARY KEY, who TEXT)")
        with db.engine.connect() as connection:  # the pool's only connection
            connection.exec_driver_sql("PRAGMA busy_timeout=10")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(OperationalError, match="locked"):
                insert(db, "refused")
            assert not queue_of(db).held
        finally:
            other.execute("ROLLBACK")
            other.close()
        insert(db, "after")
        assert logged(db) == ["after"]
    finally:
        db.dispose()


def test_the_queue_hands_over_in_order_and_a_timed_out_waiter_leaves_it() -> None:
    queue = WriteQueue()
    first = queue.acquire()
    with pytest.raises(TimeoutError):
        queue.acquire(timeout=0.01)
    assert queue.waiting == 0
    got: list[int] = []

    def take(n: int) -> None:
        turn = queue.acquire(timeout=WAIT)
        got.append(n)
        queue.release(turn)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(5)]
    for n, thread in enumerate(threads):
        thread.start()
        wait_for(lambda n=n: queue.waiting == n + 1)  # type: ignore[misc]
    queue.release(first)
    queue.release(first)  # a second release is a no-op, not someone else's turn
    for thread in threads:
        thread.join(WAIT)
    assert got == [0, 1, 2, 3, 4]
    assert not queue.held


def test_a_writer_at_the_head_of_the_line_is_overtaken_at_most_once() -> None:
    """A running writer may take a turn just given back before the woken head runs,
    but not twice: the head is then handed the turn."""
    queue = WriteQueue()
    order: list[str] = []
    turn = queue.acquire()

    def waiter() -> None:
        mine = queue.acquire(timeout=WAIT)
        order.append("waiter")
        queue.release(mine)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_for(lambda: queue.waiting == 1)
    for _ in range(3):  # a hot writer: gives the turn back and asks again at once
        queue.release(turn)
        turn = queue.acquire(timeout=WAIT)
        order.append("hot")
    queue.release(turn)
    thread.join(WAIT)
    assert order.index("waiter") <= 1, order
    assert not queue.held


def test_one_queue_per_file_and_none_without_a_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    one, two = Database(url), Database(url)
    try:
        assert one.write_queue is not None
        assert one.write_queue is two.write_queue
    finally:
        one.dispose()
        two.dispose()
    assert Database("sqlite://").write_queue is None
    # PostgreSQL: no queue and nothing to mark (no connection is made here).
    postgres = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert postgres.write_queue is None
    postgres.dispose()
