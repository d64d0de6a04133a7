"""Public reads from a read replica (UNDERSIGNED_DATABASE_READ_URL); writes, the confirm
page, the manage page, the dashboard and the worker on the primary.

The slow test runs a real hot standby: a primary and a streaming replica of their own
(initdb, pg_basebackup -R, pg_ctl on free loopback ports, in a temporary directory),
so the shared server is never touched. With the replica's replay paused, a signature
signed, sent, confirmed and managed on the primary is missing from every public page
(they read the replica) while the confirm and manage pages, the dashboard and the worker
find it (they read the primary), and no statement of theirs reaches the replica. A
standby refuses every write, so each write that succeeds went to the primary.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select

from app import tokens
from app.config import Settings
from app.db import Database
from app.jobs import work_once
from app.letters.models import LetterTally
from app.mail.backends import make_backend
from app.main import create_app
from app.organizers.models import Role
from app.organizers.service import create_organizer, grant_role, start_session
from app.organizers.web import session_cookie_name
from app.signatures.addresses import email_hash
from app.signatures.manage import manage_token
from app.web import deps
from tests.support.config import PG_URL, make_settings, skip_or_fail
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.ports import free_port

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
PUBLIC_READS = {
    "/",
    "/letters/{slug}",
    "/letters/{slug}/changes",
    "/letters/{slug}/signers",
    "/letters/{slug}/log",
    "/api/v1/letters",
    "/api/v1/letters/{slug}",
    "/api/v1/letters/{slug}/signatures",
    "/api/v1/letters/{slug}/breakdown",
    "/api/v1/letters/{slug}/timeline",
    "/api/v1/letters/{slug}/log/checkpoint",
    "/api/v1/letters/{slug}/log/entries",
    "/api/v1/letters/{slug}/log/proof/inclusion",
    "/api/v1/letters/{slug}/log/proof/consistency",
    "/api/v1/letters/{slug}/log/lookup",
    "/letters.atom",
    "/letters/{slug}/signers.csv",
    "/letters/{slug}/embed",
    "/letters/{slug}/badge.svg",
    "/letters/{slug}/card.png",
    "/letters/{slug}/header/{name}",
    "/sitemap.xml",
}
"""Every route that may read from the replica: public, the same for every visitor."""


# --- Which routes read where (no replica needed) ----------------------------------------


def _uses_public_session(route: APIRoute) -> bool:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is deps._public_read_session:
            return True
        pending += dependency.dependencies
    return False


def test_only_public_pages_read_from_the_replica(tmp_path: Path) -> None:
    """The confirm page, the manage page, the dashboard and every write stay on the
    primary: only the public reads listed here take `PublicReadSession`."""
    app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'routes.db'}"))
    public = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and _uses_public_session(route):
            public |= {(context.path, method) for method in context.methods or ()}
    assert {path for path, _ in public} == PUBLIC_READS
    assert {method for _, method in public} == {"GET"}


def test_a_database_takes_one_replica_of_postgresql(tmp_path: Path) -> None:
    sqlite = Database(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        with pytest.raises(ValueError, match="PostgreSQL"):
            sqlite.use_read_url("postgresql+psycopg://app@replica/undersigned")
        with sqlite.public_read() as session:  # no replica: the primary
            assert session.get_bind() is sqlite._reader
    finally:
        sqlite.dispose()
    # Engines connect lazily: nothing below needs a server.
    primary = Database("postgresql+psycopg://app@primary/undersigned", pool_size=5)
    try:
        primary.use_read_url("postgresql+psycopg://app@replica/undersigned")
        primary.use_read_url("postgresql+psycopg://app@replica/undersigned")  # idempotent
        assert primary.read_engine is not None
        assert primary.read_engine.url.host == "replica"
        assert primary.read_engine.pool.size() == 5  # type: ignore[attr-defined]
        with primary.public_read() as session:
            bind = session.get_bind()
            assert isinstance(bind, Engine)
            assert bind.url.host == "replica"
        with primary.read() as session:
            assert session.get_bind().url.host == "primary"  # type: ignore[union-attr]
        with pytest.raises(RuntimeError, match="another replica"):
            primary.use_read_url("postgresql+psycopg://app@elsewhere/undersigned")
    finally:
        primary.dispose()


# --- A real primary and hot standby -----------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not found:
        skip_or_fail("PostgreSQL's server binaries are not in /usr/lib/postgresql/*/bin")
    return found[-1].parent


@dataclass
class Pair:
    primary_url: str
    replica_url: str
    primary: str  # libpq conninfo
    replica: str

    def query(self, conninfo: str, sql: str, *params: Any) -> Any:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            row = connection.execute(sql, params or None).fetchone()
            return row[0] if row else None

    def caught_up(self, seconds: float = 30) -> None:
        """Waits until the replica has replayed everything the primary has written: up to
        its WAL insert position (its write position can trail a commit just made)."""
        lsn = self.query(self.primary, "SELECT pg_current_wal_insert_lsn()")
        deadline = time.monotonic() + seconds
        while not self.query(
            self.replica, "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s) >= 0", lsn
        ):
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.05)

    def pause(self) -> None:
        self.query(self.replica, "SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 30
        while self.query(self.replica, "SELECT pg_get_wal_replay_pause_state()") != "paused":
            assert time.monotonic() < deadline, "the replica did not pause"
            time.sleep(0.05)

    def resume(self) -> None:
        self.query(self.replica, "SELECT pg_wal_replay_resume()")


@contextmanager
def primary_and_replica() -> Iterator[Pair]:
    """A throwaway primary and its streaming hot standby, as the `postgres` user when
    this runs as root (PostgreSQL refuses to run as root)."""
    binaries = _postgres_bin()
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            skip_or_fail("running as root and there is no `postgres` user")
        run_as = ["runuser", "-u", "postgres", "--"]
    directory = Path(tempfile.mkdtemp(prefix="undersigned-replica-"))
    if owner is not None:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    primary_dir, replica_dir = directory / "primary", directory / "replica"
    primary_port, replica_port = free_port(), free_port()

    def run(*args: str | Path) -> None:
        done = subprocess.run(  # noqa: S603
            [*run_as, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"

    def configure(data: Path, port: int) -> None:
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{directory}'\n"
                "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                "shared_buffers = 16MB\nmax_connections = 50\n"
                "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
            )

    started: list[Path] = []
    try:
        run(binaries / "initdb", "-D", primary_dir, "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync")  # fmt: skip
        configure(primary_dir, primary_port)
        run(binaries / "pg_ctl", "-D", primary_dir, "-l", directory / "primary.log",
            "-w", "-t", "60", "start")  # fmt: skip
        started.append(primary_dir)
        primary = f"host=127.0.0.1 port={primary_port} user=postgres dbname=undersigned"
        with psycopg.connect(primary.replace("undersigned", "postgres"), autocommit=True) as c:
            c.execute("CREATE DATABASE undersigned")
        run(binaries / "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary_port),
            "-U", "postgres", "-D", replica_dir, "-R", "-X", "stream", "-c", "fast")  # fmt: skip
        configure(replica_dir, replica_port)
        run(binaries / "pg_ctl", "-D", replica_dir, "-l", directory / "replica.log",
            "-w", "-t", "60", "start")  # fmt: skip
        started.append(replica_dir)
        replica = f"host=127.0.0.1 port={replica_port} user=postgres dbname=undersigned"
        pair = Pair(
            primary_url=f"postgresql+psycopg://postgres@127.0.0.1:{primary_port}/undersigned",
            replica_url=f"postgresql+psycopg://postgres@127.0.0.1:{replica_port}/undersigned",
            primary=primary,
            replica=replica,
        )
        assert pair.query(replica, "SELECT pg_is_in_recovery()") is True
        yield pair
    finally:
        for data in reversed(started):
            subprocess.run(  # noqa: S603
                [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if not PG_URL:  # the PostgreSQL tests of this run; the pair is a server of its own
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    with primary_and_replica() as running:
        yield running


class Statements:
    """Statements run per engine (the primary's, the replica's)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def watch(self, engine: Engine, name: str) -> None:
        def count(*_: Any) -> None:
            self.counts[name] += 1

        event.listen(engine, "before_cursor_execute", count)

    @contextmanager
    def only_on(self, name: str) -> Iterator[None]:
        """The block's statements all ran on `name`, and some did."""
        before = self.counts.copy()
        yield
        ran = self.counts - before
        assert set(ran) == {name}, f"statements ran on {dict(ran)}, expected {name} only"


@pytest.mark.slow
@pytest.mark.postgres
def test_public_reads_come_from_a_hot_standby_and_everything_else_from_the_primary(
    pair: Pair, tmp_path: Path
) -> None:
    from app.migrate import upgrade

    migrator = Database(pair.primary_url)
    upgrade(migrator)
    migrator.dispose()
    settings = make_settings(
        tmp_path, pair.primary_url, database_read_url=pair.replica_url, database_pool_size=5
    )
    app = create_app(settings)
    database: Database = app.state.database
    with TestClient(app, base_url="http://testserver", client=("127.0.0.1", 50000)) as client:
        _public_and_private(client, database, settings, pair)


def _public_and_private(
    client: TestClient, database: Database, settings: Settings, pair: Pair
) -> None:
    with database.write() as session:
        letter = make_letter(session, show_signers=True)
        for name in ("Ada Lovelace", "Grace Hopper"):
            sign_and_confirm(session, letter, settings, name=name)
        organizer = create_organizer(session, email="moderator@example.org")
        grant_role(session, letter_id=letter.id, organizer=organizer, role=Role.OWNER)
        cookie = start_session(session, organizer=organizer, settings=settings)
        slug, letter_id = letter.slug, letter.id
    pair.caught_up()

    def count_on_api() -> int:
        response = client.get(f"/api/v1/letters/{slug}")
        assert response.status_code == 200, response.text
        count: int = response.json()["signature_count"]
        return count

    # The app attaches the replica named by the setting when it is made.
    assert database.read_url == pair.replica_url
    assert database.read_engine is not None
    assert count_on_api() == 2
    statements = Statements()
    statements.watch(database.engine, "primary")
    statements.watch(database.read_engine, "replica")

    def public_pages(*, q: str) -> dict[str, str]:
        with statements.only_on("replica"):
            pages = {}
            for path in (
                "/",
                f"/letters/{slug}",
                f"/letters/{slug}/changes",
                f"/letters/{slug}/signers",
                f"/letters/{slug}/signers?q={q}",
                "/api/v1/letters",
                f"/api/v1/letters/{slug}",
                f"/api/v1/letters/{slug}/signatures",
                f"/api/v1/letters/{slug}/signatures?q={q}",
                f"/api/v1/letters/{slug}/breakdown",
            ):
                response = client.get(path)
                assert response.status_code == 200, (path, response.text[:300])
                pages[path] = response.text
        return pages

    pages = public_pages(q="Ada")
    assert "Ada Lovelace" in pages[f"/letters/{slug}/signers?q=Ada"]

    # The replica stops replaying: what happens next exists on the primary only.
    pair.pause()
    try:
        with statements.only_on("primary"):
            page = client.get(f"/letters/{slug}/check-email")  # after signing: the primary
            response = client.post(
                f"/letters/{slug}/sign",
                data={"name": "Katherine Johnson", "email": "kj@example.org", "display": "public"},
                headers=SAME_ORIGIN,
                follow_redirects=False,
            )
            assert response.status_code == 303, response.text[:500]
            assert page.status_code == 200
            # The worker: decides the submission (on the primary only) and sends its link.
            assert work_once(database, make_backend(settings), settings=settings) >= 1
            # Its links, read straight from the primary (no engine of the app's).
            public_id = pair.query(
                pair.primary,
                "SELECT public_id FROM pending_signatures WHERE letter_id = %s AND email_hash = %s",
                letter_id,
                email_hash(settings.secret, letter_id, "kj@example.org"),
            )
            verify = tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, public_id)
            manage = manage_token(settings, public_id)
            verify_page = client.get(f"/verify/{verify}")
            assert verify_page.status_code == 200
            assert "Katherine Johnson" in verify_page.text
            confirmed = client.post(
                f"/verify/{verify}", headers=SAME_ORIGIN, follow_redirects=False
            )
            assert confirmed.status_code == 303
            manage_page = client.get(f"/signature/{manage}")
            assert manage_page.status_code == 200
            assert "Katherine Johnson" in manage_page.text
            client.cookies.set(session_cookie_name(settings), cookie)
            dashboard = client.get(f"/dashboard/letters/{slug}/signatures")
            assert dashboard.status_code == 200
            assert "Katherine Johnson" in dashboard.text
            assert client.get("/dashboard").status_code == 200
            client.cookies.delete(session_cookie_name(settings))
            with database.read() as session:
                tally = session.scalar(
                    select(LetterTally.verified_count).where(LetterTally.letter_id == letter_id)
                )
            assert tally == 3
        # Public pages: still the replica's moment, before Katherine.
        client.cookies.clear()  # the one-time "thank you" cookie after confirming
        assert count_on_api() == 2
        pages = public_pages(q="Katherine")
        assert "Katherine Johnson" not in pages[f"/letters/{slug}/signers?q=Katherine"]
        assert "Katherine Johnson" not in pages[f"/letters/{slug}"]
    finally:
        pair.resume()
    pair.caught_up()
    assert count_on_api() == 3
    pages = public_pages(q="Katherine")
    assert "Katherine Johnson" in pages[f"/letters/{slug}/signers?q=Katherine"]

    # Withdrawing and moderating: writes, so on the primary; the replica follows.
    with statements.only_on("primary"):
        withdrawn = client.post(
            f"/signature/{manage}/withdraw", headers=SAME_ORIGIN, follow_redirects=False
        )
        assert withdrawn.status_code == 303
        client.cookies.set(session_cookie_name(settings), cookie)
        hidden = client.post(
            f"/dashboard/letters/{slug}/signatures/2/hide",
            headers=SAME_ORIGIN,
            follow_redirects=False,
        )
        assert hidden.status_code == 303
        client.cookies.delete(session_cookie_name(settings))
    pair.caught_up()
    assert count_on_api() == 2
    pages = public_pages(q="Grace")
    assert "Grace Hopper" not in pages[f"/letters/{slug}/signers?q=Grace"]
    assert "Ada Lovelace" in pages[f"/letters/{slug}/signers"]
