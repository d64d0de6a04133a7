"""`python -m bench` (or `make bench`): throughput and latency as ratios to a bare app.

See bench/__init__.py for what is measured and how; `python -m bench --help` for knobs.
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import create_engine, make_url, text

from app import tokens

try:  # the same client library as bench/load.py
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]
from bench.load import Phase, Result, get, python_phase, wrk_available, wrk_phase

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only, always
SLUG = "ice-out"
# Fixed so that the bench can compute confirmation tokens; used only against its own database.
SECRET_KEY = "bench-only-fixed-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105
BENCH_DB = "undersigned_bench"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
MAX_REQUESTS = 200_000  # per phase; far above what 2 cores serve in a phase

TARGETS = {"tally": 0.70, "page": 0.50, "sign+confirm": 0.25}


class SetupError(Exception):
    pass


# --- servers -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


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


# --- databases -----------------------------------------------------------------


def recreate_pg_database(server_url: str) -> str:
    """Drops and creates `undersigned_bench` (only that database); returns its URL."""
    import psycopg

    url = make_url(server_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    return url.set(database=BENCH_DB).render_as_string(hide_password=False)


def drop_pg_database(server_url: str) -> None:
    import psycopg

    admin = make_url(server_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(
        admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
    ) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def pg_reachable(server_url: str) -> bool:
    try:
        import psycopg

        admin = make_url(server_url).set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False), connect_timeout=3):
            return True
    except Exception:
        return False


# --- one configuration: a database, a number of workers ---------------------------


@dataclass
class Row:
    db: str
    scenario: str
    client: str
    result: Result
    baseline: Result | None  # the bare run by the same client
    target: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.rps:
            return None
        return self.result.rps / self.baseline.rps

    @property
    def verdict(self) -> str:
        if self.target is None or self.ratio is None:
            return ""
        if self.result.errors:
            return "FAIL (errors)"
        return "PASS" if self.ratio >= self.target else "FAIL"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Config:
    def __init__(self, args: argparse.Namespace, db: str, workers: int) -> None:
        self.args, self.db, self.workers = args, db, workers
        self.tmp = Path(tempfile.mkdtemp(prefix=f"undersigned-bench-{db}-"))
        self.run_id = secrets.token_hex(3)
        self.database_url = (
            recreate_pg_database(args.pg)
            if db == "postgresql"
            else f"sqlite:///{self.tmp / 'bench.db'}"
        )
        self.app_port, self.bare_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSIGNED_")}
        self.env.update(
            UNDERSIGNED_DATABASE_URL=self.database_url,
            UNDERSIGNED_RATE_LIMITS="off",
            UNDERSIGNED_DATA_DIR=str(self.tmp),
            UNDERSIGNED_SECRET_KEY=SECRET_KEY,
            UNDERSIGNED_BASE_URL=f"http://{HOST}:{self.app_port}",
            UNDERSIGNED_MAIL_BACKEND="dev",
            UNDERSIGNED_LOG_LEVEL=args.log_level,
            PYTHONPATH=str(ROOT),
        )
        self.engine = create_engine(self.database_url)
        self.verified_by_bench = 0

    def undersigned(self, *arguments: str) -> None:
        command = [str(Path(sys.executable).parent / "undersigned"), *arguments]
        done = subprocess.run(
            command, env=self.env, cwd=self.tmp, capture_output=True, text=True, timeout=180
        )
        if done.returncode:
            raise SetupError(f"{' '.join(arguments)} failed:\n{done.stdout}{done.stderr}")

    def servers(self) -> tuple[Server, Server]:
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
                self.args.log_level,
            ],
            env=self.env,
            cwd=self.tmp,
            log=self.tmp / "bare.log",
            port=self.bare_port,
        )
        return app, bare

    # -- scenarios --

    def measure_get(self, server: Server, path: str, client: str) -> Phase:
        a = self.args
        if client == "wrk":
            return wrk_phase(
                server.url + path,
                concurrency=a.concurrency,
                duration=a.duration,
                max_requests=MAX_REQUESTS,
                warmup=a.warmup,
            )
        return python_phase(
            get(path),
            base_url=server.url,
            concurrency=a.concurrency,
            duration=a.duration,
            max_requests=MAX_REQUESTS,
            warmup=a.warmup,
        )

    def sign_and_confirm(self, app: Server, round_no: int) -> tuple[Phase, Phase]:
        """Phase 1 signs unique addresses for `duration`; the tokens are then computed
        from the pending signatures' public ids (as tests/factories.py verify_token does);
        phase 2 confirms each of them once, bounded by count and time."""
        a = self.args
        prefix = f"bench-{self.run_id}-r{round_no}"

        def signer(kind: str) -> Any:
            counter = iter(range(10**9))

            def send(client: httpx.AsyncClient) -> Any:
                n = next(counter)
                body = {
                    "name": f"Bench Signer {kind}{n}",
                    "email": f"{prefix}-{kind}{n}@example.org",
                    "title": "Engineer",
                    "organization": "Loopback Labs",
                    "city": "127.0.0.1",
                    "comment": "",
                    "display": "public" if n % 4 else "anonymous",
                    "contact_ok": n % 3 == 0,
                }

                async def go() -> int:
                    response = await client.post(f"/api/v1/letters/{SLUG}/signatures", json=body)
                    return response.status_code

                return go()

            return send

        sign = python_phase(
            signer("m"),
            warmup_send=signer("w"),
            expect=202,
            base_url=app.url,
            concurrency=a.concurrency,
            duration=a.duration,
            max_requests=MAX_REQUESTS,
            warmup=a.warmup,
        )

        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT email, public_id FROM signatures "
                    "WHERE status = 'pending' AND email LIKE :prefix"
                ),
                {"prefix": prefix + "-%"},
            ).all()
        queues: dict[str, collections.deque[str]] = {
            "w": collections.deque(),
            "m": collections.deque(),
        }
        for email, public_id in rows:
            kind = email[len(prefix) + 1]
            queues[kind].append(
                tokens.issue(SECRET_KEY, tokens.Purpose.SIGNATURE_VERIFY, public_id)
            )

        def verifier(queue: collections.deque[str]) -> Any:
            def send(client: httpx.AsyncClient) -> Any:
                if not queue:
                    return None
                token = queue.popleft()

                async def go() -> int:
                    response = await client.post("/api/v1/signatures/verify", json={"token": token})
                    return response.status_code

                return go()

            return send

        measured = len(queues["m"])
        # The warm-up confirms the warm-up signatures (until they run out), unmeasured.
        verify = python_phase(
            verifier(queues["m"]),
            warmup_send=verifier(queues["w"]),
            base_url=app.url,
            concurrency=a.concurrency,
            duration=max(3 * a.duration, 30),
            max_requests=MAX_REQUESTS,
            warmup=max(a.warmup, 2 * a.duration) if queues["w"] else 0,
        )
        if queues["m"]:
            progress(f"  note: {len(queues['m'])} of {measured} tokens not confirmed in time")
        return sign, verify

    def check_tally(self, app: Server) -> tuple[bool, str]:
        with self.engine.connect() as conn:
            tally = conn.execute(
                text(
                    "SELECT t.verified_count FROM letter_tallies t "
                    "JOIN letters l ON l.id = t.letter_id WHERE l.slug = :slug"
                ),
                {"slug": SLUG},
            ).scalar_one()
            verified = conn.execute(
                text(
                    "SELECT count(*) FROM signatures s JOIN letters l ON l.id = s.letter_id "
                    "WHERE l.slug = :slug AND s.status = 'verified'"
                ),
                {"slug": SLUG},
            ).scalar_one()
            pending = conn.execute(
                text("SELECT count(*) FROM signatures WHERE status = 'pending'")
            ).scalar_one()
        api = httpx.get(f"{app.url}/api/v1/letters/{SLUG}", timeout=10).json()["signature_count"]
        ok = tally == verified == api
        return ok, (
            f"tally row {tally}, verified signatures in the DB {verified}, API "
            f"signature_count {api}, still pending {pending}: "
            f"{'OK, equal' if ok else 'MISMATCH'}"
        )

    def run(self) -> tuple[list[Row], str, bool]:
        a = self.args
        get_client = a.client if a.client != "auto" else ("wrk" if wrk_available() else "python")
        label = f"{self.db} ({self.workers} worker{'s' if self.workers > 1 else ''})"
        progress(f"== {label}: data in {self.tmp}")
        self.undersigned("db", "upgrade")
        self.undersigned("demo")
        app, bare = self.servers()
        results: dict[str, Result] = collections.defaultdict(Result)
        with running(app, bare):
            app.wait_ready("/healthz")
            bare.wait_ready("/bare")
            for round_no in range(1, a.rounds + 1):
                line = [f"  round {round_no}/{a.rounds}:"]
                for key, server, path in (
                    ("bare", bare, "/bare"),
                    ("tally", app, f"/api/v1/letters/{SLUG}"),
                    ("page", app, f"/letters/{SLUG}"),
                ):
                    phase = self.measure_get(server, path, get_client)
                    results[key].phases.append(phase)
                    line.append(f"{key} {phase.rps:.0f}/s")
                if get_client != "python":
                    phase = self.measure_get(bare, "/bare", "python")
                    results["bare-python"].phases.append(phase)
                    line.append(f"bare(python) {phase.rps:.0f}/s")
                sign, verify = self.sign_and_confirm(app, round_no)
                results["sign"].phases.append(sign)
                results["verify"].phases.append(verify)
                results["sign+confirm"].phases.extend([sign, verify])
                line.append(f"sign {sign.rps:.0f}/s verify {verify.rps:.0f}/s")
                progress(" ".join(line))
            ok, tally_line = self.check_tally(app)
        self.engine.dispose()
        py_bare = results["bare-python"] if get_client != "python" else results["bare"]
        rows = [
            Row(label, "bare GET /bare", get_client, results["bare"], results["bare"], None),
            Row(
                label,
                "tally GET /api/v1/letters/ice-out",
                get_client,
                results["tally"],
                results["bare"],
                TARGETS["tally"],
            ),
            Row(
                label,
                "page GET /letters/ice-out",
                get_client,
                results["page"],
                results["bare"],
                TARGETS["page"],
            ),
        ]
        if get_client != "python":
            rows.append(Row(label, "bare GET /bare", "python", py_bare, py_bare, None))
        rows += [
            Row(
                label,
                "sign+confirm (both POSTs)",
                "python",
                results["sign+confirm"],
                py_bare,
                TARGETS["sign+confirm"],
            ),
            Row(label, "  sign POST .../signatures", "python", results["sign"], py_bare, None),
            Row(label, "  confirm POST .../verify", "python", results["verify"], py_bare, None),
        ]
        return rows, f"{label}: {tally_line}", ok


# --- report ----------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = [
        "database",
        "scenario",
        "client",
        "req/s",
        "p50 ms",
        "p95 ms",
        "errors",
        "ratio",
        "target",
        "result",
    ]
    body = []
    for r in rows:
        res = r.result
        body.append(
            [
                r.db,
                r.scenario,
                r.client,
                f"{res.rps:.0f}",
                f"{res.percentile(50) * 1000:.1f}",
                f"{res.percentile(95) * 1000:.1f}",
                str(res.errors) + (" (capped)" if res.capped else ""),
                "" if r.ratio is None else f"{r.ratio:.2f}x",
                "" if r.target is None else f">= {r.target:.2f}x",
                r.verdict,
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput and latency of Undersigned as ratios to a bare FastAPI app "
        "served the same way in the same run. Loopback only.",
    )
    p.add_argument(
        "--db",
        choices=["postgresql", "sqlite", "all"],
        default="postgresql",
        help="postgresql (2 workers, the default), sqlite (1 worker) or all",
    )
    p.add_argument(
        "--pg",
        default=os.environ.get("UNDERSIGNED_BENCH_PG", DEFAULT_PG),
        help=f"PostgreSQL server URL; the bench (re)creates {BENCH_DB} on it",
    )
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers on PostgreSQL")
    p.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator for the GET scenarios (auto: wrk when installed); "
        "signing always uses the Python client",
    )
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=int, default=5, help="seconds per measured phase")
    p.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per phase")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="scenarios run interleaved this many times (evens out machine noise)",
    )
    p.add_argument("--log-level", default="info", help="uvicorn/app log level, for both apps")
    p.add_argument(
        "--keep", action="store_true", help=f"keep the temporary data and the {BENCH_DB} database"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    if args.client == "wrk" and not wrk_available():
        p.error("wrk is not installed (apt-get install wrk), use --client python")
    if min(args.concurrency, args.duration, args.rounds, args.workers) < 1:
        p.error("concurrency, duration, rounds and workers must be at least 1")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    plans: list[tuple[str, int]] = []
    if args.db in ("postgresql", "all"):
        if pg_reachable(args.pg):
            plans.append(("postgresql", args.workers))
        else:
            progress(f"PostgreSQL is not reachable at {args.pg}: measuring SQLite only")
            plans.append(("sqlite", 1))
    if args.db in ("sqlite", "all") and ("sqlite", 1) not in plans:
        plans.append(("sqlite", 1))

    started = time.monotonic()
    rows: list[Row] = []
    checks: list[str] = []
    all_ok = True
    configs: list[Config] = []
    try:
        for db, workers in plans:
            config = Config(args, db, workers)
            configs.append(config)
            new_rows, check, ok = config.run()
            rows += new_rows
            checks.append(check)
            all_ok &= ok
    except KeyboardInterrupt:
        progress("interrupted: servers stopped")
        return 130
    except Exception as exc:
        progress(f"bench could not run: {type(exc).__name__}: {exc}")
        return 2
    finally:
        if not args.keep:
            for config in configs:
                shutil.rmtree(config.tmp, ignore_errors=True)
            if any(c.db == "postgresql" for c in configs):
                with suppress(Exception):
                    drop_pg_database(args.pg)

    print()
    print(
        f"Undersigned benchmark: {args.concurrency} concurrent connections, "
        f"{args.rounds} x {args.duration}s per scenario after {args.warmup}s warm-up, "
        f"on {os.cpu_count()} CPUs; ratio = req/s / bare req/s (same client, same run)"
    )
    print(table(rows))
    print()
    for check in checks:
        print("Tally check:", check)
    print(f"Total time: {time.monotonic() - started:.0f}s")
    failed = [r for r in rows if r.verdict.startswith("FAIL")]
    if not all_ok:
        print("The tally does not match the verified signatures.")
    if args.strict and (failed or not all_ok):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
