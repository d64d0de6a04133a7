"""`python -m bench.mail`: how fast one mail worker empties the outbox into a local SMTP
server, with and without connection reuse, and two workers sharing it on PostgreSQL.

For each database (a fresh SQLite file; on PostgreSQL a database of the bench's own,
`undersigned_bench_mail`, created and dropped) it fills the outbox with `--emails`
realistic emails (bulk insert, 50 recipient domains), then runs the worker's own pass
(`app.jobs.work_once`, the loop `undersigned worker` runs) in this process until the
outbox is empty, against an aiosmtpd server in a child process on loopback (so that the
server does not share this process's interpreter lock). Reported: emails/s, the SMTP
connections the server saw, and that every Message-ID arrived exactly once. Since the
machine may be busy, also the CPU time per email of each process on the critical path
(one-worker phases): the worker (`cpu ms`), the SMTP server (`smtp ms`) and PostgreSQL's
backends serving the bench's database (`pg ms`); a worker waits on the other two, so
their sum bounds what one worker reaches on an idle machine (`cpu-bound/s`).

Phases: `one-connection-per-email` (the old behaviour: the backend with
`messages_per_connection=1`), `reuse` (the default backend); on PostgreSQL also
`two-workers`: two worker processes share one outbox; total delivered must equal
`--emails` with no Message-ID received twice.

`--profile FILE` writes a cProfile of the reuse phase (`python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert

from app.config import MailBackend, Settings
from app.db import Database, utcnow
from app.mail.backends import SmtpBackend
from app.mail.models import OutboxEmail, OutboxStatus
from app.migrate import upgrade
from app.models import import_all
from bench.memory import process_cpu_seconds
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.ports import free_port

HOST = "127.0.0.1"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
BENCH_DB = "undersigned_bench_mail"
SECRET_KEY = "bench-only-fixed-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105
TARGET = 300.0  # emails/s, issue 10
DOMAINS = 50
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)

TEXT = (
    "Hello,\n\nyou (or someone using your address) signed the open letter "
    "\u201cKeep the public library open on Sundays\u201d. To confirm your signature, "
    "open this link within 7 days:\n\n"
    "https://letters.example.org/verify/{token}\n\n"
    "If you did not sign, ignore this email: nothing will be published and your "
    "address will be forgotten.\n\n" + "About this letter: " + "lorem ipsum dolor sit amet " * 20
)
HTML = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Confirm</title></head>'
    '<body style="font-family: sans-serif; line-height: 1.5"><p>Hello,</p><p>you signed '
    "<strong>Keep the public library open on Sundays</strong>.</p>"
    '<p><a href="https://letters.example.org/verify/{token}" style="display:inline-block;'
    'padding:.6em 1em;background:#1a56db;color:#fff">Confirm my signature</a></p>'
    + "<p>lorem ipsum dolor sit amet consectetur adipiscing elit</p>" * 25
    + "</body></html>"
)


# --- the SMTP server (a child process) -----------------------------------------------------


class Sink:
    """aiosmtpd handler: accepts everything, keeps each Message-ID and which connection
    (SMTP session) brought it."""

    def __init__(self) -> None:
        self.message_ids: list[str] = []
        self.sessions: dict[int, Any] = {}  # id -> session (kept alive: ids stay unique)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = MESSAGE_ID.search(envelope.content)
        self.message_ids.append(found.group(1).decode() if found else "")
        self.sessions[id(session)] = session
        return "250 OK"


def serve_sink(port: int, out: Path) -> None:
    """Runs until SIGTERM, then writes {"connections", "message_ids"} to `out`."""
    from aiosmtpd.controller import Controller

    sink = Sink()
    controller = Controller(sink, hostname=HOST, port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    out.write_text(json.dumps({"connections": len(sink.sessions), "message_ids": sink.message_ids}))


@dataclass
class Received:
    connections: int
    message_ids: list[str]
    cpu_seconds: float = 0.0
    """The SMTP server's CPU time while the block ran."""


def backend_cpu(database: Database) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving `database` (empty on SQLite,
    or when the server runs elsewhere)."""
    if database.dialect != "postgresql":
        return {}
    from sqlalchemy import text

    with database.read() as session:
        pids = session.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).all()
    return {int(pid): process_cpu_seconds(int(pid)) for pid in pids}


@contextmanager
def smtp_sink(tmp: Path) -> Iterator[tuple[int, list[Received]]]:
    """Starts the sink process; after the block, its record lands in the yielded list."""
    port = free_port()
    out = tmp / f"sink-{port}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.mail", "_sink", str(port), str(out)],
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while True:
        with suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the SMTP sink did not start")
        time.sleep(0.05)
    record: list[Received] = []
    cpu = process_cpu_seconds(proc.pid)
    try:
        yield port, record
    finally:
        cpu = process_cpu_seconds(proc.pid) - cpu
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    data = json.loads(out.read_text())
    record.append(Received(data["connections"], data["message_ids"], cpu))


# --- the outbox ------------------------------------------------------------------------------


def fill(database: Database, count: int) -> None:
    """`count` due emails (any left from an earlier phase deleted first)."""
    now = utcnow()
    rows = []
    for n in range(count):
        token = f"{n:08d}.bench-token-{n * 7919 % 100_000:05d}"
        domain = f"d{n % DOMAINS}.example"
        rows.append(
            {
                "kind": "verify",
                "priority": 0,
                "fairness_key": domain,
                "to_address": f"signer{n}@{domain}",
                "subject": "Confirm your signature: Keep the public library open on Sundays",
                "text_body": TEXT.format(token=token),
                "html_body": HTML.format(token=token),
                "headers": {},
                "message_id": make_msgid(domain="letters.example.org"),
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
    with database.write() as session:
        session.execute(delete(OutboxEmail))
        for start in range(0, count, 1000):
            session.execute(insert(OutboxEmail), rows[start : start + 1000])


def settings_for(url: str, data_dir: Path, smtp_port: int) -> Settings:
    return Settings(
        database_url=url,
        data_dir=data_dir,
        secret_key=SECRET_KEY,
        base_url="https://letters.example.org",
        mail_backend=MailBackend.SMTP,
        smtp_host=HOST,
        smtp_port=smtp_port,
        run_mail_worker=False,
    )


def work_until_empty(
    database: Database, settings: Settings, *, messages_per_connection: int | None
) -> int:
    """The worker's pass (`work_once`) until a pass finds nothing to do."""
    from app.jobs import work_once

    backend = (
        SmtpBackend(settings)
        if messages_per_connection is None
        else SmtpBackend(settings, messages_per_connection=messages_per_connection)
    )
    done = 0
    try:
        while True:
            did = work_once(database, backend, settings=settings, senders=settings.mail_senders)
            if not did:
                return done
            done += did
    finally:
        getattr(backend, "close", lambda: None)()


def statuses(database: Database) -> dict[str, int]:
    from sqlalchemy import func, select

    with database.read() as session:
        found = session.execute(
            select(OutboxEmail.status, func.count()).group_by(OutboxEmail.status)
        ).all()
    return {str(status.value): int(n) for status, n in found}


# --- phases ----------------------------------------------------------------------------------


@dataclass
class Result:
    db: str
    phase: str
    emails: int
    seconds: float
    cpu_seconds: float  # this process's CPU time (the worker's; one-worker phases)
    connections: int
    received: int
    duplicates: int
    statuses: dict[str, int]
    smtp_cpu_seconds: float = float("nan")
    pg_cpu_seconds: float = float("nan")

    @property
    def per_second(self) -> float:
        return self.emails / self.seconds

    @property
    def cpu_bound_per_second(self) -> float:
        """Emails/s if the worker, the SMTP server and PostgreSQL only ever waited on
        each other's CPU (no other load, no network or disk wait)."""
        pg = 0.0 if self.pg_cpu_seconds != self.pg_cpu_seconds else self.pg_cpu_seconds
        return self.emails / (self.cpu_seconds + self.smtp_cpu_seconds + pg)

    @property
    def ok(self) -> bool:
        return self.received == self.emails and self.duplicates == 0


def one_worker(
    label: str,
    url: str,
    tmp: Path,
    count: int,
    *,
    phase: str,
    messages_per_connection: int | None,
    profile: Path | None = None,
) -> Result:
    database = Database(url)
    try:
        fill(database, count)
        with smtp_sink(tmp) as (port, record):
            settings = settings_for(url, tmp, port)
            profiler = cProfile.Profile() if profile else None
            pg_before = backend_cpu(database)
            started, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            sent = work_until_empty(
                database, settings, messages_per_connection=messages_per_connection
            )
            if profiler:
                profiler.disable()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            pg_after = backend_cpu(database)
            if profiler and profile:
                profiler.dump_stats(profile)
        [received] = record
        assert sent == count, f"{sent} of {count} sent"
        return Result(
            label,
            phase,
            count,
            seconds,
            cpu,
            received.connections,
            len(received.message_ids),
            len(received.message_ids) - len(set(received.message_ids)),
            statuses(database),
            received.cpu_seconds,
            sum(t - pg_before.get(pid, 0.0) for pid, t in pg_after.items())
            if database.dialect == "postgresql"
            else float("nan"),
        )
    finally:
        database.dispose()


def two_workers(label: str, url: str, tmp: Path, count: int) -> Result:
    database = Database(url)
    try:
        fill(database, count)
        with smtp_sink(tmp) as (port, record):
            started = time.perf_counter()
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "bench.mail", "_worker", url, str(tmp), str(port)],
                    start_new_session=True,
                )
                for _ in range(2)
            ]
            for proc in workers:
                if proc.wait(timeout=600) != 0:
                    raise SystemExit(f"a worker failed ({proc.returncode})")
            seconds = time.perf_counter() - started
        [received] = record
        return Result(
            label,
            "two-workers",
            count,
            seconds,
            float("nan"),
            received.connections,
            len(received.message_ids),
            len(received.message_ids) - len(set(received.message_ids)),
            statuses(database),
        )
    finally:
        database.dispose()


def worker_process(url: str, data_dir: str, port: int) -> None:
    """One of the two workers: passes until the outbox is empty (the other may still be
    sending its last batch: it finishes that itself)."""
    database = Database(url)
    try:
        settings = settings_for(url, Path(data_dir), port)
        done = work_until_empty(database, settings, messages_per_connection=None)
        print(f"  worker {os.getpid()}: {done} emails", flush=True)
    finally:
        database.dispose()


@contextmanager
def bench_database(kind: str, pg: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'bench-mail.db'}"
    else:
        url = create_postgres_database(pg, BENCH_DB)
    database = Database(url)
    upgrade(database, secret_key=SECRET_KEY)
    database.dispose()
    try:
        yield url
    finally:
        if kind == "postgresql":
            drop_postgres_database(pg, BENCH_DB)


def report(results: list[Result]) -> None:
    print()
    print(
        f"{'db':<11} {'phase':<25} {'emails':>6} {'seconds':>8} {'emails/s':>9} {'cpu ms':>6} "
        f"{'smtp ms':>7} {'pg ms':>6} {'cpu-bound/s':>11} "
        f"{'conns':>6} {'received':>8} {'dupes':>5}  check"
    )
    for r in results:
        target = "" if r.phase == "one-connection-per-email" else f" >= {TARGET:.0f}/s"
        fast = r.phase == "one-connection-per-email" or r.per_second >= TARGET
        verdict = ("ok" if r.ok and fast else "MISSED") + target
        print(
            f"{r.db:<11} {r.phase:<25} {r.emails:>6} {r.seconds:>8.2f} {r.per_second:>9.0f} "
            f"{r.cpu_seconds / r.emails * 1000:>6.2f} "
            f"{r.smtp_cpu_seconds / r.emails * 1000:>7.2f} "
            f"{r.pg_cpu_seconds / r.emails * 1000:>6.2f} "
            f"{r.cpu_bound_per_second:>11.0f} "
            f"{r.connections:>6} {r.received:>8} {r.duplicates:>5}  {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import_all()
    if argv[:1] == ["_sink"]:
        serve_sink(int(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["_worker"]:
        worker_process(argv[1], argv[2], int(argv[3]))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.mail", description=__doc__)
    p.add_argument("--db", choices=["sqlite", "postgresql", "all"], default="all")
    p.add_argument("--emails", type=int, default=5000)
    p.add_argument("--pg", default=os.environ.get("UNDERSIGNED_BENCH_PG", DEFAULT_PG))
    p.add_argument(
        "--phases",
        default="one-connection-per-email,reuse,two-workers",
        help="comma-separated; two-workers runs on PostgreSQL only",
    )
    p.add_argument("--profile", type=Path, help="cProfile of the reuse phase into this file")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    phases = args.phases.split(",")
    kinds = ["sqlite", "postgresql"] if args.db == "all" else [args.db]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-mail-") as name:
        tmp = Path(name)
        for kind in kinds:
            with bench_database(kind, args.pg, tmp) as url:
                if "one-connection-per-email" in phases:
                    print(f"{kind}: one connection per email ...", flush=True)
                    results.append(
                        one_worker(
                            kind,
                            url,
                            tmp,
                            args.emails,
                            phase="one-connection-per-email",
                            messages_per_connection=1,
                        )
                    )
                if "reuse" in phases:
                    print(f"{kind}: connections reused ...", flush=True)
                    results.append(
                        one_worker(
                            kind,
                            url,
                            tmp,
                            args.emails,
                            phase="reuse",
                            messages_per_connection=None,
                            profile=args.profile,
                        )
                    )
                if "two-workers" in phases and kind == "postgresql":
                    print(f"{kind}: two worker processes ...", flush=True)
                    results.append(two_workers(kind, url, tmp, args.emails))
    report(results)
    if args.json:
        args.json.write_text(
            json.dumps([r.__dict__ | {"per_second": r.per_second} for r in results], indent=2)
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
