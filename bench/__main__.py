"""`python -m bench` (or `make bench`): throughput and latency as ratios to a bare app.

See bench/__init__.py for what is measured and how; `python -m bench --help` for knobs.
The pieces: bench/servers.py (processes, database), bench/scenarios.py (what is measured),
bench/report.py (rows, ratios, targets, the table, var/bench-results.json), bench/load.py
(load generators) with bench/lua/ (wrk's scripts), bench/memory.py (the app's RSS).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench.load import wrk_available
from bench.memory import MemorySampler
from bench.report import (
    RESULTS,
    Config,
    print_report,
    progress,
    results_document,
    rows_for,
    write_results,
)
from bench.scenarios import Load, check_tally, measure, seed
from bench.servers import BENCH_DB, DEFAULT_PG, deployment, pg_available, running


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
        help="load generator for every phase (auto: wrk when installed, with the Lua "
        "scripts of bench/lua/; python: the asyncio client)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="connections for the GETs, and for signing and confirming on PostgreSQL",
    )
    p.add_argument(
        "--sqlite-write-concurrency",
        type=int,
        default=64,
        help="connections for signing and confirming on SQLite",
    )
    p.add_argument(
        "--hot-concurrency",
        type=int,
        default=64,
        help="connections for the hot-counter confirmations (one letter vs eight)",
    )
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
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a target is missed (or a tally check fails)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where to write every figure as JSON (default: var/bench-results.json)",
    )
    args = p.parse_args(argv)
    if args.client == "wrk" and not wrk_available():
        p.error("wrk is not installed (apt-get install wrk), use --client python")
    numbers = (
        args.concurrency,
        args.sqlite_write_concurrency,
        args.hot_concurrency,
        args.duration,
        args.rounds,
        args.workers,
    )
    if min(numbers) < 1 or args.warmup < 0:
        p.error("connections, duration, rounds and workers must be at least 1")
    return args


def plans(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(database, workers) to measure, in order."""
    chosen: list[tuple[str, int]] = []
    if args.db in ("postgresql", "all"):
        if pg_available(args.pg):
            chosen.append(("postgresql", args.workers))
        else:
            progress(f"PostgreSQL is not reachable at {args.pg}: measuring SQLite only")
            chosen.append(("sqlite", 1))
    if args.db in ("sqlite", "all") and ("sqlite", 1) not in chosen:
        chosen.append(("sqlite", 1))
    return chosen


def run(args: argparse.Namespace, db: str, workers: int) -> Config:
    """One configuration: set up, serve (sampling the app's memory all along), measure,
    check the tally, clean up."""
    client = args.client if args.client != "auto" else ("wrk" if wrk_available() else "python")
    load = Load(
        client=client,
        concurrency=args.concurrency,
        write_concurrency=args.sqlite_write_concurrency if db == "sqlite" else args.concurrency,
        hot_concurrency=args.hot_concurrency,
        duration=args.duration,
        warmup=args.warmup,
    )
    with deployment(
        db, workers, pg_server=args.pg, log_level=args.log_level, keep=args.keep
    ) as site:
        progress(f"== {site.label}: data in {site.tmp}, load by {client}")
        seed(site)
        app, bare = site.servers()
        with running(app, bare):
            assert app.proc is not None
            sampler = MemorySampler(app.proc.pid).start()
            try:
                app.wait_ready("/healthz")
                bare.wait_ready("/bare")
                if args.log_level in ("info", "debug", "trace"):  # the lines it looks for
                    app.wait_started(workers)
                    bare.wait_started(workers)
                results = measure(site, app, bare, rounds=args.rounds, load=load)
                tally = check_tally(site, app)
            finally:
                memory = sampler.stop()
    rows = rows_for(db, site.label, client, results)
    hot = sum(p.requests for p in results["hot-one"].phases)
    notes = [
        f"pid {p.pid} ({p.role}) ended during the run (uvicorn replaces a worker that dies "
        "or misses its health check)"
        for p in memory
        if p.ended
    ]
    notes += [
        f"{r.scenario.strip()}: {r.result.left} tokens not confirmed within the time bound"
        for r in rows
        if r.result.left and r.key in ("confirm", "hot-one", "hot-all")
    ]
    return Config(site.label, db, workers, rows, tally, memory, hot, notes)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    started = time.monotonic()
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    configs: list[Config] = []
    try:
        for db, workers in plans(args):
            configs.append(run(args, db, workers))
    except KeyboardInterrupt:
        progress("interrupted: servers stopped")
        return 130
    except Exception as exc:
        progress(f"bench could not run: {type(exc).__name__}: {exc}")
        return 2

    seconds = time.monotonic() - started
    print_report(configs, args=args, cpus=os.cpu_count(), seconds=seconds)
    missed = [m for c in configs for m in c.missed()]
    status = 1 if args.strict and missed else 0
    document = results_document(
        configs,
        args=args,
        argv=sys.argv[1:] if argv is None else argv,
        started_at=started_at,
        seconds=seconds,
        cpus=os.cpu_count(),
        exit_status=status,
    )
    print(f"Results: {write_results(document, args.results)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
