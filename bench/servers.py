"""The processes a bench run starts and the database they share.

`deployment()` prepares one configuration (a fresh, migrated database and a temporary
data dir) and removes it afterwards; `Deployment.servers()` describes the app and the bare
app; `running()` starts them and always stops them, `Server.stop` ending exactly the
process group it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
from sqlalchemy import make_url

from app.db import Database
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    postgres_reachable,
)
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only, always
# Fixed so that the bench can compute confirmation tokens; used only against its own database.
SECRET_KEY = "bench-only-fixed-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105
BENCH_DB = "undersigned_bench"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


class SetupError(Exception):
    pass


class Server:
    """A uvicorn process group we started; `stop` ends exactly that group."""

    def __init__(
        self, name: str, command: list[str], *, env: dict[str, str], cwd: Path, log: Path, port: int
    ) -> None:
        self.name, self.command, self.env, self.cwd, self.log_path = name, command, env, cwd, log
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SetupError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            with suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise SetupError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")

    def wait_started(self, workers: int, timeout: float = 120.0) -> None:
        """Waits until uvicorn's log says that `workers` worker processes have finished
        starting (`wait_ready` returns as soon as one answers): a phase measured while
        one still starts would measure fewer workers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SetupError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                started = self.log_path.read_text(errors="replace").count(
                    "Application startup complete"
                )
            except OSError:
                started = 0
            if started >= workers:
                return
            time.sleep(0.2)
        raise SetupError(f"{self.name}: {workers} workers not started after {timeout:.0f}s")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        proc = self.proc
        pgid = proc.pid  # start_new_session: the group id is our child's pid
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
                # the workers share the group; give them a moment too
                for _ in range(50):
                    try:
                        os.killpg(pgid, 0)
                    except ProcessLookupError:
                        self.proc = None
                        return
                    time.sleep(0.1)
        self.proc = None


@contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


# --- the database and environment of one configuration ---------------------------


def pg_server_url(url: str) -> str:
    """The `--pg` server URL, connecting to the `postgres` maintenance database (the
    tests' helpers run CREATE/DROP DATABASE on whatever database the URL names)."""
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def pg_available(server_url: str) -> bool:
    try:
        url = pg_server_url(server_url)
    except Exception:  # not a URL at all
        return False
    return postgres_reachable(url)


@dataclass
class Deployment:
    """One database configuration: the database, a temporary data dir, the servers'
    environment, and a `Database` for the bench's own reads."""

    db: str  # "postgresql" or "sqlite"
    workers: int
    tmp: Path
    database: Database
    env: dict[str, str]
    app_port: int
    bare_port: int
    log_level: str
    secret_key: str = SECRET_KEY

    @property
    def label(self) -> str:
        return f"{self.db} ({self.workers} worker{'s' if self.workers > 1 else ''})"

    def undersigned(self, *arguments: str) -> None:
        """Runs the `undersigned` CLI against this configuration's database."""
        command = [str(Path(sys.executable).parent / "undersigned"), *arguments]
        done = subprocess.run(
            command, env=self.env, cwd=self.tmp, capture_output=True, text=True, timeout=180
        )
        if done.returncode:
            raise SetupError(f"{' '.join(arguments)} failed:\n{done.stdout}{done.stderr}")

    def servers(self) -> tuple[Server, Server]:
        """The app (`undersigned serve --no-worker`) and the bare app, same workers."""
        bin_dir = Path(sys.executable).parent
        app = Server(
            "undersigned serve",
            [
                str(bin_dir / "undersigned"),
                "serve",
                "--no-worker",
                "--host",
                HOST,
                "--port",
                str(self.app_port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            cwd=self.tmp,
            log=self.tmp / "app.log",
            port=self.app_port,
        )
        bare = Server(
            "bare app",
            [
                sys.executable,
                "-m",
                "bench.bare",
                "--host",
                HOST,
                "--port",
                str(self.bare_port),
                "--workers",
                str(self.workers),
                "--log-level",
                self.log_level,
            ],
            env=self.env,
            cwd=self.tmp,
            log=self.tmp / "bare.log",
            port=self.bare_port,
        )
        return app, bare


@contextmanager
def deployment(
    db: str, workers: int, *, pg_server: str, log_level: str, keep: bool
) -> Iterator[Deployment]:
    """A fresh, migrated database (`undersigned_bench` on PostgreSQL, dropped and
    re-created; a file in the temporary data dir on SQLite). Afterwards the data dir
    and the bench database are removed, unless `keep`."""
    tmp = Path(tempfile.mkdtemp(prefix=f"undersigned-bench-{db}-"))
    server_url = pg_server_url(pg_server) if db == "postgresql" else ""
    database: Database | None = None
    try:
        url = (
            create_postgres_database(server_url, BENCH_DB)
            if server_url
            else f"sqlite:///{tmp / 'bench.db'}"
        )
        database = Database(url)
        app_port, bare_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSIGNED_")}
        env.update(
            UNDERSIGNED_DATABASE_URL=url,
            UNDERSIGNED_RATE_LIMITS="off",
            UNDERSIGNED_DATA_DIR=str(tmp),
            UNDERSIGNED_SECRET_KEY=SECRET_KEY,
            UNDERSIGNED_BASE_URL=f"http://{HOST}:{app_port}",
            UNDERSIGNED_MAIL_BACKEND="dev",
            UNDERSIGNED_LOG_LEVEL=log_level,
            PYTHONPATH=str(ROOT),
        )
        site = Deployment(db, workers, tmp, database, env, app_port, bare_port, log_level)
        site.undersigned("db", "upgrade")
        yield site
    finally:
        if database is not None:
            database.dispose()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
            if server_url:
                with suppress(Exception):
                    drop_postgres_database(server_url, BENCH_DB)
