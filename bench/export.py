"""`python -m bench.export`: the organizers' CSV export of a big letter, by the real
code path (`undersigned letter export SLUG --output FILE`, a process of its own).

On PostgreSQL, in the database bench/big_letters.py seeds and keeps
(`undersigned_bench_big` on `--pg`: a 1,000-signature and a 1,000,000-signature letter,
seeded by `undersigned dev seed` when missing, `--reseed` to start again), each letter
is exported `--repeat` times, alternately, and for each run are measured:

- the wall time of the whole command (start-up included: conservative) and rows/s;
- the CPU time of the exporting process (user + system): the rows per CPU-second do not
  depend on what else the machine runs (the database server's work is not in it);
- the peak RSS of the exporting process (getrusage of that child: ru_maxrss).

Reported: rows/s of the big export (target >= 50,000), also net of the small export's
time (the start-up), and the peak memory growth: the big export's peak RSS minus the
small export's (the same command on 1,000 rows; target < 64 MB). The best run of each
is kept (the machine may be busy). Each CSV is checked to hold a header and one line
per signature, then deleted. `--drop` drops the database at the end. Every figure is
written to var/bench-export-results.json; `--strict` exits 1 on a missed target.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from bench.big_letters import DATABASE, _env, prepare
from bench.report import ROOT, git_commit
from bench.servers import DEFAULT_PG, pg_server_url
from tests.support.databases import drop_postgres_database

ROWS_PER_SECOND = 50_000.0  # issue 10
GROWTH_MB = 64.0
RESULTS = ROOT / "var" / "bench-export-results.json"


@dataclass(frozen=True)
class Run:
    rows: int
    seconds: float  # wall time of the command
    cpu_seconds: float  # its own CPU time (user + system), whatever else runs
    peak_mb: float


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--pg", default=os.environ.get("UNDERSIGNED_BENCH_PG", DEFAULT_PG))
    p.add_argument("--small", type=int, default=1_000, help="signatures on the small letter")
    p.add_argument("--big", type=int, default=1_000_000, help="signatures on the big letter")
    p.add_argument("--repeat", type=int, default=2, help="exports of each letter (best kept)")
    p.add_argument("--reseed", action="store_true", help="drop the database and seed again")
    p.add_argument("--drop", action="store_true", help=f"drop {DATABASE} at the end")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if min(args.small, args.big, args.repeat) < 1:
        p.error("--small, --big and --repeat must be at least 1")
    return args


def export(env: dict[str, str], slug: str, expected: int, tmp: Path) -> Run:
    """`undersigned letter export SLUG -o FILE` in a child process: its wall time and
    its own peak RSS (os.wait4's rusage), the CSV checked and deleted."""
    output = tmp / f"{slug}.csv"
    script = str(Path(sys.executable).with_name("undersigned"))
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [script, "letter", "export", slug, "--output", str(output)],
            env=env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        said = stderr.read().decode(errors="replace")
    try:
        if proc.returncode != 0:
            raise SystemExit(f"export of {slug} failed ({proc.returncode}):\n{said}")
        with output.open(encoding="utf-8", newline="") as file:
            rows = sum(1 for _ in csv.reader(file)) - 1  # the header
        if rows != expected or f"{expected} signatures written" not in said:
            raise SystemExit(f"export of {slug}: {rows} rows, expected {expected}: {said}")
    finally:
        output.unlink(missing_ok=True)
    cpu = usage.ru_utime + usage.ru_stime
    return Run(rows=rows, seconds=seconds, cpu_seconds=cpu, peak_mb=usage.ru_maxrss / 1024)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    database_url = make_url(args.pg).set(database=DATABASE).render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp_name:
        tmp = Path(tmp_name)
        env = _env(database_url, tmp)
        try:
            slugs = prepare(args, env, tmp)
            runs: dict[str, list[Run]] = {"small": [], "big": []}
            sizes = {"small": args.small, "big": args.big}
            for n in range(1, args.repeat + 1):
                for name in ("small", "big"):
                    run = export(env, slugs[name], sizes[name], tmp)
                    runs[name].append(run)
                    print(
                        f"  run {n}: {run.rows:>9,} rows in {run.seconds:6.2f}s "
                        f"({run.cpu_seconds:5.2f}s CPU), peak RSS {run.peak_mb:6.1f} MB",
                        flush=True,
                    )
        finally:
            if args.drop:
                drop_postgres_database(pg_server_url(args.pg), DATABASE)
    small = min(runs["small"], key=lambda r: r.seconds)
    big = min(runs["big"], key=lambda r: r.seconds)
    rate = big.rows / big.seconds
    net = (big.rows - small.rows) / max(big.seconds - small.seconds, 1e-9)
    best_cpu = min(runs["big"], key=lambda r: r.cpu_seconds)
    per_cpu = (big.rows - small.rows) / max(best_cpu.cpu_seconds - small.cpu_seconds, 1e-9)
    growth = max(r.peak_mb for r in runs["big"]) - min(r.peak_mb for r in runs["small"])
    targets = [
        {
            "what": "rows/s (wall, start-up included)",
            "op": ">=",
            "limit": ROWS_PER_SECOND,
            "value": round(rate),
            "met": rate >= ROWS_PER_SECOND,
        },
        {
            "what": "peak memory growth MB (big - small)",
            "op": "<",
            "limit": GROWTH_MB,
            "value": round(growth, 1),
            "met": growth < GROWTH_MB,
        },
    ]
    print(
        f"\nCSV export (`undersigned letter export`), best of {args.repeat}, on "
        f"{os.cpu_count()} CPUs"
    )
    for run in (small, big):
        print(
            f"  {run.rows:>9,} rows: {run.seconds:6.2f}s ({run.cpu_seconds:.2f}s CPU), "
            f"peak RSS {run.peak_mb:.1f} MB"
        )
    print(f"  rows per CPU-second of the exporting process (net of start-up): {per_cpu:,.0f}")
    print(
        f"  rows/s {rate:,.0f} (net of start-up: {net:,.0f}); target >= {ROWS_PER_SECOND:,.0f}: "
        f"{'PASS' if targets[0]['met'] else 'FAIL'}"
    )
    print(
        f"  peak memory growth {growth:.1f} MB; target < {GROWTH_MB:g} MB: "
        f"{'PASS' if targets[1]['met'] else 'FAIL'}"
    )
    document: dict[str, Any] = {
        "started_at": started_at,
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "commit": git_commit(),
        "runs": {k: [vars(r) for r in v] for k, v in runs.items()},
        "rows_per_second": round(rate),
        "rows_per_second_net_of_startup": round(net),
        "rows_per_cpu_second_net_of_startup": round(per_cpu),
        "peak_rss_mb": {"small": small.peak_mb, "big": max(r.peak_mb for r in runs["big"])},
        "peak_growth_mb": round(growth, 1),
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"Results: {args.results}")
    return 1 if args.strict and not document["all_targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
