"""Rows, ratios, targets, the printed table and var/bench-results.json."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.load import Result
from bench.memory import TARGET_MB, Peak

if TYPE_CHECKING:
    from bench.scenarios import TallyCheck

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "var" / "bench-results.json"  # var/ is git-ignored

READ_TARGETS = {"tally": 0.70, "page": 0.50}  # ratio to bare, any database
WRITE_RATIO = 0.15  # sign and confirm each, PostgreSQL
WRITE_P99_MS = {"postgresql": 250.0, "sqlite": 500.0}
HOT_RATIO = 0.80  # confirmations on one letter / the same spread over eight


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Check:
    """One target: `what` compared with `limit`."""

    what: str  # "ratio", "p99 ms", "errors", "RSS MB"
    op: str  # ">=", "<=", "<" or "=="
    limit: float
    value: float | None

    @property
    def met(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        v, lim = self.value, self.limit
        return {">=": v >= lim, "<=": v <= lim, "<": v < lim, "==": v == lim}[self.op]

    def __str__(self) -> str:
        limit = f"{self.limit:.2f}x" if self.what.startswith("ratio") else f"{self.limit:g}"
        return f"{self.what} {self.op} {limit}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "op": self.op,
            "limit": self.limit,
            "value": _num(self.value),
            "met": self.met,
        }


@dataclass
class Row:
    db: str
    key: str  # bare, tally, page, sign, confirm, sign+confirm, hot-one, hot-all
    scenario: str
    client: str
    result: Result
    baseline: Result | None  # what the ratio divides by
    baseline_name: str = "bare"
    ratio_min: float | None = None
    p99_max_ms: float | None = None
    no_errors: bool = False

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.rps:
            return None
        return self.result.rps / self.baseline.rps

    @property
    def checks(self) -> list[Check]:
        found = []
        if self.ratio_min is not None:
            what = "ratio" if self.baseline_name == "bare" else f"ratio to {self.baseline_name}"
            found.append(Check(what, ">=", self.ratio_min, self.ratio))
        if self.p99_max_ms is not None:
            found.append(Check("p99 ms", "<=", self.p99_max_ms, self.result.percentile(99) * 1000))
        if self.no_errors:
            found.append(Check("errors", "==", 0, self.result.errors))
        return found

    @property
    def verdict(self) -> str:
        checks = self.checks
        if not checks:
            return ""
        failed = [c.what.split()[0] for c in checks if not c.met]
        return "PASS" if not failed else f"FAIL ({', '.join(failed)})"

    def as_dict(self) -> dict[str, Any]:
        res = self.result
        return {
            "scenario": self.key,
            "description": self.scenario.strip(),
            "client": self.client,
            "connections": res.connections,
            "requests": res.requests,
            "seconds": round(res.seconds, 3),
            "rps": round(res.rps, 1),
            "p50_ms": _num(res.percentile(50) * 1000),
            "p95_ms": _num(res.percentile(95) * 1000),
            "p99_ms": _num(res.percentile(99) * 1000),
            "cpu_ms_per_request": _num(
                None if res.cpu_per_request is None else res.cpu_per_request * 1000
            ),
            "errors": res.errors,
            "not_confirmed_in_time": res.left,
            "capped": res.capped,
            "ratio": _num(self.ratio),
            "ratio_to": self.baseline_name if self.baseline is not None else None,
            "targets": [c.as_dict() for c in self.checks],
            "met": all(c.met for c in self.checks),
        }


@dataclass
class Config:
    """One database configuration's measurements."""

    label: str
    db: str
    workers: int
    rows: list[Row]
    tally: TallyCheck
    memory: list[Peak]
    hot_confirmations: int  # confirmations per hot-counter phase, summed over rounds
    notes: list[str] = field(default_factory=list)

    def memory_checks(self) -> list[tuple[Peak, Check]]:
        return [(p, Check("RSS MB", "<", TARGET_MB, round(p.mb, 1))) for p in self.memory]

    def missed(self) -> list[str]:
        found = [
            f"{self.label}: {r.scenario.strip()}: {r.verdict}"
            for r in self.rows
            if r.verdict.startswith("FAIL")
        ]
        found += [
            f"{self.label}: memory of pid {p.pid} ({p.role}): {p.mb:.0f} MB"
            for p, c in self.memory_checks()
            if not c.met
        ]
        if not self.tally.ok:
            found.append(f"{self.label}: tally check: {self.tally}")
        return found


def rows_for(db: str, label: str, client: str, results: dict[str, Result]) -> list[Row]:
    """One configuration's rows from `scenarios.measure`'s results, each against the
    bare run by the same client in the same rounds (the hot letter: against the same
    confirmations spread over eight letters)."""
    bare = results["bare"]
    sqlite = db == "sqlite"
    write_ratio = None if sqlite else WRITE_RATIO
    write_p99 = WRITE_P99_MS[db]
    hot = results["hot-one"].connections
    return [
        Row(label, "bare", "bare GET /bare", client, bare, bare),
        Row(
            label,
            "tally",
            "tally GET /api/v1/letters/ice-out",
            client,
            results["tally"],
            bare,
            ratio_min=READ_TARGETS["tally"],
            no_errors=True,
        ),
        Row(
            label,
            "page",
            "page GET /letters/ice-out",
            client,
            results["page"],
            bare,
            ratio_min=READ_TARGETS["page"],
            no_errors=True,
        ),
        Row(
            label,
            "sign",
            "sign POST .../signatures",
            client,
            results["sign"],
            bare,
            ratio_min=write_ratio,
            p99_max_ms=write_p99,
            no_errors=True,
        ),
        Row(
            label,
            "confirm",
            "confirm POST .../verify",
            client,
            results["confirm"],
            bare,
            ratio_min=write_ratio,
            p99_max_ms=write_p99,
            no_errors=True,
        ),
        Row(label, "sign+confirm", "  sign+confirm (both)", client, results["sign+confirm"], bare),
        Row(label, "hot-all", f"confirm, 8 letters, {hot} conns", client, results["hot-all"], bare),
        Row(
            label,
            "hot-one",
            f"confirm, 1 letter, {hot} conns",
            client,
            results["hot-one"],
            results["hot-all"],
            baseline_name="8 letters",
            ratio_min=HOT_RATIO,
        ),
    ]


def _num(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(value, 3)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.1f}"


def table(rows: list[Row]) -> str:
    head = [
        "database",
        "scenario",
        "client",
        "conns",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "CPU ms/req",
        "errors",
        "ratio",
        "target",
        "result",
    ]
    body = []
    for r in rows:
        res = r.result
        errors = str(res.errors) + (" (capped)" if res.capped else "")
        if res.left:
            errors += f" ({res.left} left)"
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        if r.ratio is not None and r.baseline_name != "bare":
            ratio += f" of {r.baseline_name}"
        body.append(
            [
                r.db,
                r.scenario,
                r.client,
                str(res.connections),
                f"{res.rps:.0f}",
                _ms(res.percentile(50)),
                _ms(res.percentile(95)),
                _ms(res.percentile(99)),
                "-" if res.cpu_per_request is None else f"{res.cpu_per_request * 1000:.2f}",
                errors,
                ratio,
                ", ".join(str(c) for c in r.checks),
                r.verdict,
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(line.rstrip() for line in lines)


def print_report(configs: list[Config], *, args: Any, cpus: int | None, seconds: float) -> None:
    print()
    print(
        f"Undersigned benchmark: GETs at {args.concurrency} connections, writes at "
        f"{args.concurrency} (PostgreSQL) / {args.sqlite_write_concurrency} (SQLite), hot "
        f"counter at {args.hot_concurrency}; {args.rounds} x {args.duration}s per scenario after "
        f"{args.warmup}s warm-up, on {cpus} CPUs; ratio = req/s / bare req/s (same client, "
        "same run)"
    )
    print(table([r for c in configs for r in c.rows]))
    print()
    print(
        f"Memory: highest RSS of each app process, sampled every 0.5 s (target < {TARGET_MB:g} MB)"
    )
    for c in configs:
        if not c.memory:
            print(f"  {c.label}: not sampled (no /proc)")
        for peak, check in c.memory_checks():
            ended = ", ended during the run" if peak.ended else ""
            print(
                f"  {c.label}: pid {peak.pid} {peak.role}{ended}: {peak.mb:.1f} MB "
                f"({peak.samples} samples) {'PASS' if check.met else 'FAIL'}"
            )
    print()
    for c in configs:
        print(f"Tally check, {c.label}: {c.tally}")
        for note in c.notes:
            print(f"  note: {note}")
    print(f"Total time: {seconds:.0f}s")
    missed = [m for c in configs for m in c.missed()]
    if missed:
        print(f"Targets missed ({len(missed)}):")
        for m in missed:
            print(f"  {m}")


def git_commit() -> str | None:
    """HEAD's commit, with "+dirty" when the work tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
        ).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if status.strip() else "")


def results_document(
    configs: list[Config],
    *,
    args: Any,
    argv: list[str],
    started_at: str,
    seconds: float,
    cpus: int | None,
    exit_status: int,
) -> dict[str, Any]:
    targets = []
    for c in configs:
        for r in c.rows:
            targets += [
                {"configuration": c.label, "scenario": r.key, **k.as_dict()} for k in r.checks
            ]
        targets += [
            {"configuration": c.label, "scenario": f"memory pid {p.pid} ({p.role})", **k.as_dict()}
            for p, k in c.memory_checks()
        ]
        targets.append(
            {
                "configuration": c.label,
                "scenario": "tally check",
                "what": "equal",
                "met": c.tally.ok,
            }
        )
    return {
        "started_at": started_at,
        "seconds": round(seconds, 1),
        "arguments": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "argv": argv,
        },
        "cpu_count": cpus,
        "commit": git_commit(),
        "configurations": [
            {
                "label": c.label,
                "database": c.db,
                "workers": c.workers,
                "rows": [r.as_dict() for r in c.rows],
                "hot_counter": {
                    "connections": args.hot_concurrency,
                    "confirmations_each": c.hot_confirmations,
                    "one_letter_rps": _rps(c, "hot-one"),
                    "eight_letters_rps": _rps(c, "hot-all"),
                    "ratio_one_to_eight": _num(next(r.ratio for r in c.rows if r.key == "hot-one")),
                    "target": HOT_RATIO,
                },
                "memory": {
                    "target_mb": TARGET_MB,
                    "interval_s": 0.5,
                    "processes": [
                        {
                            "pid": p.pid,
                            "role": p.role,
                            "max_rss_mb": round(p.mb, 1),
                            "samples": p.samples,
                            "ended_during_run": p.ended,
                            "met": k.met,
                        }
                        for p, k in c.memory_checks()
                    ],
                },
                "tally": {
                    "ok": c.tally.ok,
                    "pending_left": c.tally.pending,
                    "letters": [
                        {
                            "slug": t.slug,
                            "counter": t.counter,
                            "verified_rows": t.verified,
                            "api": t.api,
                            "ok": t.ok,
                        }
                        for t in c.tally.letters
                    ],
                },
                "notes": c.notes,
            }
            for c in configs
        ],
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets),
        "missed": [m for c in configs for m in c.missed()],
        "exit_status": exit_status,
    }


def _rps(config: Config, key: str) -> float:
    return round(next(r.result.rps for r in config.rows if r.key == key), 1)


def write_results(document: dict[str, Any], path: Path = RESULTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path
