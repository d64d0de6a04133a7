"""Load generators: a Python asyncio client (httpx2) and, when installed, wrk.

Every phase is bounded twice: by time (`duration`) and by count (`max_requests`), and
stops by itself. Only loopback addresses are ever targeted (`check_loopback`).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx  # the dev extra's HTTP client, as in the tests

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"bench only loads loopback addresses, not {host!r}")


@dataclass
class Phase:
    """One measured run of one request kind."""

    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds; Python client only
    p50: float | None = None  # seconds; set directly by wrk
    p95: float | None = None
    capped: bool = False  # stopped by max_requests, not by time

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Result:
    """Several phases (rounds, or sign + verify) of one scenario, added up."""

    phases: list[Phase] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.phases)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.phases)

    @property
    def capped(self) -> bool:
        return any(p.capped for p in self.phases)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Exact over the Python client's samples; for wrk, the request-weighted mean
        of each phase's own percentile (wrk reports no samples)."""
        samples = sorted(s for p in self.phases for s in p.latencies)
        if samples:
            return samples[min(len(samples) - 1, math.ceil(q / 100 * len(samples)) - 1)]
        weighted: list[tuple[int, float]] = []
        for p in self.phases:
            value = p.p50 if q == 50 else p.p95
            if value is not None:
                weighted.append((p.requests, value))
        total = sum(n for n, _ in weighted)
        return sum(n * v for n, v in weighted) / total if total else float("nan")


# --- the Python client -------------------------------------------------------

Send = Callable[["httpx.AsyncClient"], Awaitable[int] | None]
"""Starts one request and returns its awaitable status code, or None when out of work."""


async def _run(
    client: httpx.AsyncClient,
    send: Send,
    *,
    expect: int,
    concurrency: int,
    duration: float,
    max_requests: int,
) -> Phase:
    phase = Phase()
    started = time.perf_counter()
    deadline = started + duration
    budget = max_requests

    async def user() -> None:
        nonlocal budget
        while time.perf_counter() < deadline and budget > 0:
            budget -= 1
            request = send(client)
            if request is None:
                return
            t0 = time.perf_counter()
            try:
                status = await request
            except httpx.HTTPError:
                status = 0
            phase.latencies.append(time.perf_counter() - t0)
            phase.requests += 1
            if status != expect:
                phase.errors += 1

    await asyncio.gather(*(user() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    phase.capped = budget <= 0
    return phase


def python_phase(
    send: Send,
    *,
    base_url: str,
    expect: int = 200,
    concurrency: int,
    duration: float,
    max_requests: int,
    warmup: float = 0.0,
    warmup_send: Send | None = None,
) -> Phase:
    """Warm up (not measured), then measure, on one pool of `concurrency` keep-alive
    connections."""
    check_loopback(base_url)

    async def main() -> Phase:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        timeout = httpx.Timeout(30.0)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
            if warmup > 0:
                await _run(
                    client,
                    warmup_send or send,
                    expect=expect,
                    concurrency=concurrency,
                    duration=warmup,
                    max_requests=max_requests,
                )
            return await _run(
                client,
                send,
                expect=expect,
                concurrency=concurrency,
                duration=duration,
                max_requests=max_requests,
            )

    return asyncio.run(main())


def get(path: str) -> Callable[[httpx.AsyncClient], Awaitable[int]]:
    async def send(client: httpx.AsyncClient) -> int:
        response = await client.get(path)
        return response.status_code

    return send


# --- wrk ----------------------------------------------------------------------

WRK_SCRIPT = """
local max_requests = %(max_requests)d
local seen = 0
response = function(status, headers, body)
  seen = seen + 1
  if seen >= max_requests then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %%d, "duration_us": %%d, "errors": %%d, "p50_us": %%d, "p95_us": %%d}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(95)))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_phase(
    url: str, *, concurrency: int, duration: float, max_requests: int, warmup: float = 0.0
) -> Phase:
    """GET `url` with wrk (1 thread: the machine's cores are for the servers)."""
    check_loopback(url)
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(WRK_SCRIPT % {"max_requests": max_requests})

        def run(seconds: float) -> dict[str, Any]:
            command = [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                url,
            ]
            out = subprocess.run(
                command, capture_output=True, text=True, timeout=seconds + 60, check=True
            ).stdout
            line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
            return dict(json.loads(line.removeprefix("BENCH ")))

        if warmup > 0:
            run(warmup)
        data = run(duration)
    return Phase(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        p50=data["p50_us"] / 1e6,
        p95=data["p95_us"] / 1e6,
        capped=data["requests"] >= max_requests,
    )
