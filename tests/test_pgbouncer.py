"""The app through a real PgBouncer in transaction mode (issue 10, "Scale out").

In transaction mode each transaction may run on another server connection, so nothing
may outlive a transaction. The app keeps to that (transaction-scoped advisory locks,
no LISTEN, no session SET, no temporary tables); what broke was psycopg's server-side
prepared statements, which PgBouncer 1.18 (Debian 12) cannot follow from one server
connection to the next. `UNDERSIGNED_DATABASE_POOLER=transaction` turns them off (it
adds `?prepare_threshold=none` to the URLs, app/db.py reads that).

The slow test runs `undersigned db upgrade`, two `serve` processes' worth of workers and
a mail worker through a PgBouncer that keeps far fewer server connections than the app
opens, then signs, confirms, withdraws and moderates from many threads at once, and
ends with the tally exact and every email delivered once.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from pydantic import ValidationError
from sqlalchemy import func, make_url, select, text
from sqlalchemy.exc import DBAPIError

from app.config import DatabasePooler, Settings
from app.db import Database, make_engine
from app.mail.models import OutboxEmail, OutboxStatus
from app.organizers.models import Role
from app.organizers.service import create_organizer, grant_role, start_session
from app.organizers.web import session_cookie_name
from app.signatures.models import PendingSignature, PendingState, Signature, SignatureStatus
from tests.support.config import PG_URL, TEST_SECRET, make_settings, skip_or_fail
from tests.support.databases import scratch_postgres_database
from tests.support.factories import make_letter
from tests.support.ports import free_port
from tests.support.processes import (
    clean_env,
    console_script,
    run_in_process,
    wait_until_healthy,
)
from tests.support.smtp import SmtpServer

SERVER_POOL = 3
"""Server connections PgBouncer keeps for the app: far fewer than the app's clients."""
APP_POOL = 8  # DATABASE_POOL_SIZE of each app process and of the worker
SIGNERS = 40
TWICE = 10  # of them sign twice at once (and confirm both links at once)
WITHDRAWN = 5  # withdraw afterwards (twice at once)
REMOVED = 3  # removed by a moderator
HIDDEN = 2  # hidden by a moderator (still counted)
THREADS = 12
TIMEOUT = 90
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}  # what a browser sends with our forms
VERIFY = re.compile(r"/verify/([A-Za-z0-9_.\-]+)")
MANAGE = re.compile(r"/signature/([A-Za-z0-9_.\-]+)")


# --- Settings and URLs (no PgBouncer needed) -------------------------------------------


def test_pooler_transaction_turns_prepared_statements_off_in_both_urls(tmp_path: Path) -> None:
    primary = "postgresql+psycopg://app@db:6432/undersigned"
    replica = "postgresql+psycopg://app@replica:6432/undersigned?sslmode=disable"
    settings = make_settings(
        tmp_path, primary, database_read_url=replica, database_pooler="transaction"
    )
    assert settings.database_pooler == DatabasePooler.TRANSACTION
    assert settings.database_url == f"{primary}?prepare_threshold=none"
    assert settings.database_read_url == f"{replica}&prepare_threshold=none"
    # An operator's own threshold is kept; without a pooler the URL is left alone.
    own = f"{primary}?prepare_threshold=0"
    kept = make_settings(tmp_path, own, database_pooler="transaction")
    assert kept.database_url == own
    assert make_settings(tmp_path, primary).database_url == primary


def test_pooler_and_replica_need_postgresql(tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValidationError, match="PgBouncer"):
        make_settings(tmp_path, sqlite, database_pooler="transaction")
    with pytest.raises(ValidationError, match="read replica"):
        make_settings(tmp_path, sqlite, database_read_url="postgresql+psycopg://x@y/z")
    assert make_settings(tmp_path, sqlite, database_read_url="").database_read_url is None


def test_a_bad_prepare_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="prepare_threshold"):
        make_engine("postgresql+psycopg://app@db/undersigned?prepare_threshold=often")


@pytest.mark.postgres
def test_prepare_threshold_in_the_url_reaches_psycopg() -> None:
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    base = make_url(PG_URL).set(drivername="postgresql+psycopg")
    for query, expected in (("none", None), ("7", 7), ("", 5)):
        url = base.update_query_dict({"prepare_threshold": query}) if query else base
        engine = make_engine(url.render_as_string(hide_password=False))
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                driver = connection.connection.driver_connection
                assert isinstance(driver, psycopg.Connection)
                assert driver.prepare_threshold == expected
        finally:
            engine.dispose()


# --- A real PgBouncer -------------------------------------------------------------------


@dataclass
class Bouncer:
    url: str
    """The database through PgBouncer (psycopg's defaults: add the pooler setting)."""
    direct_url: str
    admin: str
    """libpq conninfo of PgBouncer's admin console."""
    log: Path

    def show(self, what: str) -> list[dict[str, Any]]:
        """`SHOW POOLS`, `SHOW SERVERS`…: the admin console speaks the simple protocol."""
        with psycopg.connect(
            self.admin, autocommit=True, cursor_factory=psycopg.ClientCursor
        ) as connection:
            cursor = connection.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _run_as() -> list[str]:
    """PgBouncer refuses to run as root: then it switches to the `postgres` user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        skip_or_fail("running as root and there is no `postgres` user for PgBouncer")
    return ["-u", "postgres"]


@contextmanager
def running_pgbouncer(direct_url: str) -> Iterator[Bouncer]:
    """PgBouncer in transaction mode on a free loopback port, in front of the database
    at `direct_url`, with SERVER_POOL server connections at most."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).is_file():
        skip_or_fail("PgBouncer is not installed (apt-get install pgbouncer)")
    run_as = _run_as()
    target = make_url(direct_url)
    user = target.username or "postgres"
    directory = Path(tempfile.mkdtemp(prefix="undersigned-pgbouncer-"))
    port = free_port()
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"""[databases]
{target.database} = host={target.host or "127.0.0.1"} port={target.port or 5432} \
dbname={target.database} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "users.txt"}
admin_users = {user}
pool_mode = transaction
default_pool_size = {SERVER_POOL}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
logfile = {directory / "pgbouncer.log"}
"""
    )
    if run_as:
        postgres = pwd.getpwnam("postgres")
        for path in (directory, *directory.iterdir()):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
    output = directory / "output.txt"
    with output.open("w") as out:
        process = subprocess.Popen(  # noqa: S603
            [binary, *run_as, str(directory / "pgbouncer.ini")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    bouncer = Bouncer(
        url=url,
        direct_url=direct_url,
        admin=f"host=127.0.0.1 port={port} dbname=pgbouncer user={user}",
        log=directory / "pgbouncer.log",
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, f"PgBouncer stopped:\n{output.read_text()}"
            try:
                bouncer.show("POOLS")
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, (
                    f"PgBouncer did not start:\n{output.read_text()}"
                )
                time.sleep(0.1)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def bouncer() -> Iterator[Bouncer]:
    """A fresh, empty database of this run's own, behind a real PgBouncer."""
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    with (
        scratch_postgres_database(PG_URL, "pgbouncer") as direct,
        running_pgbouncer(direct) as running,
    ):
        yield running


def _with_pooler(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prepare_threshold=none"


@pytest.mark.postgres
def test_psycopg_defaults_fail_through_pgbouncer_and_the_setting_fixes_it(
    bouncer: Bouncer,
) -> None:
    """The premise of the setting: with psycopg's defaults, a statement run five times on
    a connection is prepared on whichever server connection PgBouncer lent it, and the
    next client or transaction trips over it. Without the premise the other test would
    prove nothing."""

    def hammer(url: str) -> list[str]:
        engine = make_engine(url, pool_size=6)
        errors: list[str] = []
        try:
            held = [engine.connect() for _ in range(6)]  # more clients than servers
            for number in range(8):
                for connection in held:
                    try:
                        connection.execute(text("SELECT CAST(:n AS int)"), {"n": number})
                        connection.commit()
                    except DBAPIError as exc:
                        errors.append(str(exc.orig))
                        connection.rollback()
            for connection in held:
                connection.close()
        finally:
            engine.dispose()
        return errors

    broken = hammer(bouncer.url)
    assert broken, "psycopg's prepared statements no longer break through PgBouncer"
    assert all("prepared statement" in error for error in broken), broken[:3]
    assert hammer(_with_pooler(bouncer.url)) == []


# --- The app through it -----------------------------------------------------------------


def _body(received: Any) -> str:
    message = received.message
    part = message.get_body(preferencelist=("plain", "html"))
    return str(part.get_content() if part is not None else message.get_content())


def _links(smtp: SmtpServer) -> dict[str, tuple[list[str], list[str]]]:
    """Per recipient: the verify tokens and the manage tokens of the emails received."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for received in list(smtp.received):
        body = _body(received)
        for address in received.rcpt_tos:
            verify, manage = found.setdefault(address, ([], []))
            verify += VERIFY.findall(body)
            manage += MANAGE.findall(body)
    return found


def _settled(database: Database, letter_id: int) -> bool:
    """The worker has decided every submission and sent every due email."""
    with database.read() as session:
        waiting = session.scalar(
            select(func.count())
            .select_from(PendingSignature)
            .where(
                PendingSignature.letter_id == letter_id,
                PendingSignature.state == PendingState.WAITING,
            )
        )
        unsent = session.scalar(
            select(func.count())
            .select_from(OutboxEmail)
            .where(OutboxEmail.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]))
        )
    return waiting == 0 and unsent == 0


def _wait(ready: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _all_at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Runs every call from THREADS threads, started together; re-raises the first
    failure."""
    start = threading.Barrier(min(THREADS, len(calls)))

    def run(call: Callable[[], Any], index: int) -> Any:
        if index < start.parties:
            start.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(run, call, index) for index, call in enumerate(calls)]
        return [future.result(timeout=TIMEOUT) for future in futures]


@dataclass
class Processes:
    started: list[tuple[subprocess.Popen[bytes], Path]]

    def output(self) -> str:
        return "\n".join(path.read_text(errors="replace") for _, path in self.started)

    def check_alive(self) -> None:
        for process, path in self.started:
            assert process.poll() is None, f"{process.args!r} stopped:\n{path.read_text()}"


@contextmanager
def _started(*runs: tuple[list[str], dict[str, str], Path]) -> Iterator[Processes]:
    processes = Processes([])
    try:
        for args, env, log in runs:
            with log.open("wb") as out:
                process = subprocess.Popen(  # noqa: S603
                    args, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            processes.started.append((process, log))
        yield processes
    finally:
        for process, _ in processes.started:
            process.terminate()
        for process, _ in processes.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.postgres
def test_the_app_works_through_pgbouncer_in_transaction_mode(
    bouncer: Bouncer, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = clean_env(
        database_url=bouncer.url,
        database_pooler="transaction",
        database_pool_size=str(APP_POOL),
        secret_key=TEST_SECRET,
        base_url=base_url,
        data_dir=str(tmp_path / "var"),
        mail_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=str(smtp_server.port),
        rate_limits="off",
        proof_of_work="off",
        form_min_seconds="0",
        public_cache_seconds="0",
        log_level="warning",
    )
    # Migrations run through PgBouncer too: one transaction, a transaction-scoped lock.
    migrated = run_in_process(["db", "upgrade"], cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    settings = make_settings(
        tmp_path, bouncer.url, base_url=base_url, database_pooler="transaction"
    )
    database = Database(settings.database_url, pool_size=4)
    try:
        with database.write() as session:
            letter = make_letter(session, show_signers=True)
            organizer = create_organizer(session, email="moderator@example.org")
            grant_role(session, letter_id=letter.id, organizer=organizer, role=Role.OWNER)
            cookie = start_session(session, organizer=organizer, settings=settings)
            slug, letter_id = letter.slug, letter.id
        script = console_script()
        serve = [script, "serve", "--port", str(port), "--workers", "2", "--no-worker"]
        with _started(
            (serve, env, tmp_path / "serve.log"),
            ([script, "worker"], env, tmp_path / "worker.log"),
        ) as processes:
            wait_until_healthy(base_url, processes.started[0][0], processes.output)
            _flows(base_url, database, smtp_server, slug, letter_id, cookie, settings)
            processes.check_alive()
            pools = {row["database"]: row for row in bouncer.show("POOLS")}
            clients = bouncer.show("CLIENTS")
            servers = bouncer.show("SERVERS")
        output = processes.output()
    finally:
        database.dispose()
    assert "prepared statement" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    # Transaction pooling really happened: many clients, at most SERVER_POOL servers.
    ours = make_url(bouncer.url).database
    assert pools[ours]["pool_mode"] == "transaction"
    assert len([row for row in servers if row["database"] == ours]) <= SERVER_POOL
    assert len([row for row in clients if row["database"] == ours]) > SERVER_POOL


def _flows(
    base_url: str,
    database: Database,
    smtp: SmtpServer,
    slug: str,
    letter_id: int,
    cookie: str,
    settings: Settings,
) -> None:
    addresses = [f"signer{number}@example.org" for number in range(SIGNERS)]
    local = threading.local()

    def client() -> httpx2.Client:
        if not hasattr(local, "client"):
            local.client = httpx2.Client(base_url=base_url, timeout=TIMEOUT)
        return local.client  # type: ignore[no-any-return]

    def sign(number: int) -> None:
        form = {"name": f"Signer {number}", "email": addresses[number], "display": "public",
                "organization": "Example Corp"}  # fmt: skip
        response = client().post(f"/letters/{slug}/sign", data=form, headers=SAME_ORIGIN)
        assert response.status_code == 303, response.text[:500]

    # Everyone signs at once; TWICE of them twice at once.
    _all_at_once([partial(sign, n) for n in [*range(SIGNERS), *range(TWICE)]])
    _wait(lambda: _settled(database, letter_id), "the worker to send the links")
    links = _links(smtp)
    assert set(links) == set(addresses)
    assert all(links[address][0] and links[address][1] for address in addresses)

    def confirm(token: str) -> None:
        page = client().get(f"/verify/{token}")
        assert page.status_code == 200, page.text[:500]
        response = client().post(f"/verify/{token}", headers=SAME_ORIGIN)
        assert response.status_code == 303, response.text[:500]

    # Every link confirmed, each twice at once (an address with two, all at once).
    tokens = [token for address in addresses for token in set(links[address][0])]
    _all_at_once([partial(confirm, t) for t in tokens * 2])

    def withdraw(token: str) -> None:
        page = client().get(f"/signature/{token}")
        assert page.status_code == 200, page.text[:500]
        response = client().post(f"/signature/{token}/withdraw", headers=SAME_ORIGIN)
        assert response.status_code == 303, response.text[:500]

    leaving = [links[address][1][0] for address in addresses[-WITHDRAWN:]]
    _all_at_once([partial(withdraw, t) for t in leaving * 2])

    moderator = httpx2.Client(base_url=base_url, timeout=TIMEOUT)
    moderator.cookies.set(session_cookie_name(settings), cookie)
    listing = moderator.get(f"/dashboard/letters/{slug}/signatures")
    assert listing.status_code == 200, listing.text[:500]
    with database.read() as session:
        positions = list(
            session.scalars(
                select(Signature.position)
                .where(
                    Signature.letter_id == letter_id,
                    Signature.status == SignatureStatus.VERIFIED,
                )
                .order_by(Signature.position)
            )
        )
    removed, hidden = positions[:REMOVED], positions[REMOVED : REMOVED + HIDDEN]

    def moderate(action: str, position: int | None) -> None:
        data = {"reason": "duplicate"} if action == "remove" else {}
        response = moderator.post(
            f"/dashboard/letters/{slug}/signatures/{position}/{action}",
            data=data,
            headers=SAME_ORIGIN,
        )
        assert response.status_code == 303, response.text[:500]

    calls = [partial(moderate, "remove", p) for p in removed] * 2
    calls += [partial(moderate, "hide", p) for p in hidden]
    _all_at_once(calls)
    _wait(lambda: _settled(database, letter_id), "the worker to settle")

    # The tally: exact, through the public API and against the rows.
    expected = SIGNERS - WITHDRAWN - REMOVED
    api = client().get(f"/api/v1/letters/{slug}")
    assert api.status_code == 200
    assert api.json()["signature_count"] == expected
    with database.read() as session:
        verified = session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter_id, Signature.status == SignatureStatus.VERIFIED)
        )
        sent = set(
            session.scalars(
                select(OutboxEmail.message_id).where(OutboxEmail.status == OutboxStatus.SENT)
            )
        )
    assert verified == expected
    # Every email delivered exactly once.
    received = [str(item.message["Message-ID"]) for item in smtp.received]
    assert len(received) == len(set(received))
    assert set(received) == sent
