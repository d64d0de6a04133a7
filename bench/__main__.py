"""`python -m bench` (or `make bench`): throughput and latency as ratios to a bare app.

See bench/__init__.py for what is measured and how; `python -m bench --help` for knobs.
The pieces: bench/servers.py (processes, database), bench/scenarios.py (what is measured),
bench/report.py (rows, ratios, the table), bench/load.py (load generators).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

from bench.load import wrk_available
from bench.report import Row, missed, print_report, progress, rows_for
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


def run(args: argparse.Namespace, db: str, workers: int) -> tuple[list[Row], str, bool]:
    """One configuration: set up, serve, measure, check the tally, clean up."""
    load = Load(concurrency=args.concurrency, duration=args.duration, warmup=args.warmup)
    get_client = args.client if args.client != "auto" else ("wrk" if wrk_available() else "python")
    with deployment(
        db, workers, pg_server=args.pg, log_level=args.log_level, keep=args.keep
    ) as site:
        progress(f"== {site.label}: data in {site.tmp}")
        seed(site)
        app, bare = site.servers()
        with running(app, bare):
            app.wait_ready("/healthz")
            bare.wait_ready("/bare")
            results = measure(site, app, bare, get_client=get_client, rounds=args.rounds, load=load)
            tally = check_tally(site, app)
    return rows_for(site.label, get_client, results), f"{site.label}: {tally}", tally.ok


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    started = time.monotonic()
    rows: list[Row] = []
    checks: list[str] = []
    all_ok = True
    try:
        for db, workers in plans(args):
            new_rows, check, ok = run(args, db, workers)
            rows += new_rows
            checks.append(check)
            all_ok &= ok
    except KeyboardInterrupt:
        progress("interrupted: servers stopped")
        return 130
    except Exception as exc:
        progress(f"bench could not run: {type(exc).__name__}: {exc}")
        return 2

    print_report(
        rows,
        checks,
        concurrency=args.concurrency,
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        cpus=os.cpu_count(),
        seconds=time.monotonic() - started,
        tally_ok=all_ok,
    )
    if args.strict and (missed(rows) or not all_ok):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
