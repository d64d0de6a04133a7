"""Rows, ratios to the bare app by the same client, targets, and the printed table."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from bench.load import Result

TARGETS = {"tally": 0.70, "page": 0.50, "sign+confirm": 0.25}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def rows_for(label: str, get_client: str, results: dict[str, Result]) -> list[Row]:
    """One configuration's rows from `scenarios.measure`'s results: the GETs against the
    bare run by their client, signing against the bare run by the Python client."""
    bare = results["bare"]
    py_bare = results["bare-python"] if get_client != "python" else bare
    rows = [
        Row(label, "bare GET /bare", get_client, bare, bare, None),
        Row(
            label,
            "tally GET /api/v1/letters/ice-out",
            get_client,
            results["tally"],
            bare,
            TARGETS["tally"],
        ),
        Row(
            label,
            "page GET /letters/ice-out",
            get_client,
            results["page"],
            bare,
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
    return rows


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


def print_report(
    rows: list[Row],
    checks: list[str],
    *,
    concurrency: int,
    rounds: int,
    duration: int,
    warmup: int,
    cpus: int | None,
    seconds: float,
    tally_ok: bool,
) -> None:
    print()
    print(
        f"Undersigned benchmark: {concurrency} concurrent connections, "
        f"{rounds} x {duration}s per scenario after {warmup}s warm-up, "
        f"on {cpus} CPUs; ratio = req/s / bare req/s (same client, same run)"
    )
    print(table(rows))
    print()
    for check in checks:
        print("Tally check:", check)
    print(f"Total time: {seconds:.0f}s")
    if not tally_ok:
        print("The tally does not match the verified signatures.")


def missed(rows: list[Row]) -> list[Row]:
    """The rows whose target was missed."""
    return [r for r in rows if r.verdict.startswith("FAIL")]
