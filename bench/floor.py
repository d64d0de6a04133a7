"""`python -m bench.floor`: the most a write can reach here with no application code.

The write targets are ratios to the bare app (`bench/bare.py`). This measures, in one
run and one app, the bare endpoint beside POST endpoints that do nothing but a
transaction of a given shape with FastAPI, SQLAlchemy and psycopg, as the app's
endpoints do (a plain `def` in the thread pool, a pydantic body, a pool of 5
connections, `database_pool_size`'s default):

- `read`: BEGIN, SELECT 1, COMMIT (three round trips, nothing written);
- `sign-shape`: BEGIN, a row read, a row inserted, COMMIT: the four round trips of a
  signature (the letter read, the submission stored), without its checks;
- `confirm-shape`: BEGIN, a row locked, a row inserted, a counter moved, COMMIT: the
  five round trips of a confirmation on PostgreSQL, without its rules, its token, its
  middleware, its ten indexes or its log entry; rows and counters are spread (10,000
  and 64), so no row is hot;
- `one-statement`: the same lock, insert and counter in one statement in its own
  transaction (autocommit): one round trip, the fewest a durable write can take.

A ratio of the real app's that is above the shape's ratio here cannot be reached by
changing application code: only by changing the shape (fewer round trips, less
written). D196 in docs/decisions.md says what it measured.

`python -m bench.floor [--pg URL] [--workers 2] [--duration 4] [--rounds 2]`: the
database `undersigned_bench_floor` is made on `--pg` and dropped afterwards; wrk must be
installed. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import create_engine, text

from bench.load import Phase, wrk_get
from bench.servers import DEFAULT_PG, HOST, Server, pg_server_url, running
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.ports import free_port

DATABASE = "undersigned_bench_floor"
ROWS = 10_000
COUNTERS = 64
POOL_SIZE = 5
SHAPES = {
    "bare": ("GET", "/bare"),
    "read": ("POST", "/floor/read"),
    "sign-shape": ("POST", "/floor/sign-shape"),
    "confirm-shape": ("POST", "/floor/confirm-shape"),
    "one-statement": ("POST", "/floor/one-statement"),
}
_READ = "SELECT id FROM floor_rows WHERE id = :row"
_LOCK = _READ + " FOR UPDATE"
_INSERT = "INSERT INTO floor_written (row_id, token) VALUES (:row, :token)"
_COUNT = "UPDATE floor_counters SET n = n + 1 WHERE id = :counter RETURNING n"
_ONE_STATEMENT = (
    "WITH locked AS (SELECT id FROM floor_rows WHERE id = :row FOR UPDATE), "
    "written AS (INSERT INTO floor_written (row_id, token) SELECT id, :token FROM locked) "
    "UPDATE floor_counters SET n = n + 1 WHERE id = :counter RETURNING n"
)


class Body(BaseModel):
    token: str


def create_floor_app() -> FastAPI:
    """The bare endpoint and the three shapes, on FLOOR_DATABASE_URL."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    engine = create_engine(os.environ["FLOOR_DATABASE_URL"], pool_size=POOL_SIZE, max_overflow=0)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def spot() -> dict[str, int]:
        row = random.randrange(1, ROWS + 1)  # spreading load, not a secret
        return {"row": row, "counter": row % COUNTERS}

    @app.get("/bare")
    def bare() -> dict[str, object]:
        return {"slug": "bare", "signature_count": 0, "status": "open"}

    @app.post("/floor/read")
    def read(body: Body) -> dict[str, str]:
        with engine.begin() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "confirmed"}

    @app.post("/floor/sign-shape")
    def sign_shape(body: Body) -> dict[str, str]:
        at = spot()
        with engine.begin() as connection:
            connection.execute(text(_READ), at)
            connection.execute(text(_INSERT), {**at, "token": body.token})
        return {"status": "pending"}

    @app.post("/floor/confirm-shape")
    def confirm_shape(body: Body) -> dict[str, str]:
        at = spot()
        with engine.begin() as connection:
            connection.execute(text(_LOCK), at)
            connection.execute(text(_INSERT), {**at, "token": body.token})
            connection.execute(text(_COUNT), at)
        return {"status": "confirmed"}

    @app.post("/floor/one-statement")
    def one_statement(body: Body) -> dict[str, str]:
        with autocommit.connect() as connection:
            connection.execute(text(_ONE_STATEMENT), {**spot(), "token": body.token})
        return {"status": "confirmed"}

    return app


def _prepare(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE floor_rows (id integer PRIMARY KEY)"))
        connection.execute(
            text("INSERT INTO floor_rows SELECT generate_series(1, :rows)"), {"rows": ROWS}
        )
        connection.execute(
            text(
                "CREATE TABLE floor_written (id bigserial PRIMARY KEY, row_id integer, token text)"
            )
        )
        connection.execute(text("CREATE TABLE floor_counters (id integer PRIMARY KEY, n bigint)"))
        connection.execute(
            text("INSERT INTO floor_counters SELECT generate_series(0, :last), 0"),
            {"last": COUNTERS - 1},
        )
    engine.dispose()


def _measure(base_url: str, shape: str, *, connections: int, seconds: float) -> Phase:
    method, path = SHAPES[shape]
    return wrk_get(
        base_url + path,
        connections=connections,
        duration=seconds,
        max_requests=100_000_000,
        warmup=1,
        script="get.lua" if method == "GET" else "post.lua",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    server_url = pg_server_url(args.pg)
    database_url = create_postgres_database(server_url, DATABASE)
    tmp = Path(tempfile.mkdtemp(prefix="undersigned-bench-floor-"))
    try:
        _prepare(database_url)
        port = free_port()
        server = Server(
            "floor app",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.floor:create_floor_app",
                "--factory",
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--no-server-header",
                "--log-level",
                "warning",
            ],
            env={**os.environ, "FLOOR_DATABASE_URL": database_url},
            cwd=Path(__file__).resolve().parent.parent,
            log=tmp / "floor.log",
            port=port,
        )
        phases: dict[str, list[Phase]] = {shape: [] for shape in SHAPES}
        with running(server):
            server.wait_ready("/bare")
            for number in range(1, args.rounds + 1):
                line = []
                for shape in SHAPES:
                    phase = _measure(
                        server.url, shape, connections=args.connections, seconds=args.duration
                    )
                    phases[shape].append(phase)
                    line.append(f"{shape} {phase.rps:.0f}/s")
                print(f"round {number}/{args.rounds}: " + ", ".join(line), flush=True)
        bare = sum(p.requests for p in phases["bare"]) / sum(p.seconds for p in phases["bare"])
        print(
            f"\nFloor on {os.cpu_count()} CPUs, {args.workers} workers, "
            f"{args.connections} connections, {args.rounds} x {args.duration:g}s each"
        )
        print(f"{'shape':<15}{'req/s':>8}{'p99 ms':>8}{'errors':>8}{'ratio':>8}")
        for shape, measured in phases.items():
            rps = sum(p.requests for p in measured) / sum(p.seconds for p in measured)
            p99 = max(p.p99 or 0.0 for p in measured) * 1000
            errors = sum(p.errors for p in measured)
            print(f"{shape:<15}{rps:>8.0f}{p99:>8.1f}{errors:>8}{rps / bare:>7.2f}x")
        return 0
    finally:
        drop_postgres_database(server_url, DATABASE)


if __name__ == "__main__":
    sys.exit(main())
