"""Load generators: wrk with the Lua scripts of bench/lua/, and a Python asyncio client
(httpx2) used when wrk is not installed or with `--client python`.

Every phase is bounded twice: by time and by count (requests, or the tokens to
confirm), and stops by itself. Only loopback addresses are ever targeted
(`check_loopback`). An answer outside 200-299 counts as an error, and so does a
request that got no answer (connection error, timeout).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx  # the dev extra's HTTP client, as in the tests

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
LUA = Path(__file__).resolve().parent / "lua"
WRK_TIMEOUT = 30  # seconds: an answer slower than this counts as an error (wrk --timeout)


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"bench only loads loopback addresses, not {host!r}")


@dataclass
class Phase:
    """One measured run of one request kind."""

    requests: int = 0  # answered requests (any status)
    seconds: float = 0.0
    errors: int = 0  # answers outside 200-299 + requests without an answer
    connections: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds; Python client only
    p50: float | None = None  # seconds; set directly by wrk
    p95: float | None = None
    p99: float | None = None
    capped: bool = False  # stopped by its count bound (max requests), not by time
    left: int = 0  # work not done when the time bound hit (tokens not confirmed)
    cpu: float | None = None  # CPU seconds of the server's processes during the phase

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Result:
    """Several phases (rounds, or sign + confirm) of one scenario, added up."""

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
    def left(self) -> int:
        return sum(p.left for p in self.phases)

    @property
    def connections(self) -> int:
        return max((p.connections for p in self.phases), default=0)

    @property
    def cpu_per_request(self) -> float | None:
        """The server's CPU seconds per answered request, over the phases that measured
        it (None without /proc): unlike req/s, hardly moved by other load."""
        measured = [p for p in self.phases if p.cpu is not None and p.requests]
        if not measured:
            return None
        return sum(p.cpu or 0.0 for p in measured) / sum(p.requests for p in measured)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Exact over the Python client's samples; for wrk, the request-weighted mean
        of each phase's own percentile (wrk reports no samples; with one round it is
        wrk's own figure)."""
        samples = sorted(s for p in self.phases for s in p.latencies)
        if samples:
            return samples[min(len(samples) - 1, math.ceil(q / 100 * len(samples)) - 1)]
        weighted: list[tuple[int, float]] = []
        for p in self.phases:
            value = {50: p.p50, 95: p.p95, 99: p.p99}[int(q)]
            if value is not None:
                weighted.append((p.requests, value))
        total = sum(n for n, _ in weighted)
        return sum(n * v for n, v in weighted) / total if total else float("nan")


# --- the Python client -------------------------------------------------------

Send = Callable[["httpx.AsyncClient"], Awaitable[int] | None]
"""Starts one request and returns its awaitable status code, or None when out of work."""


async def _run(
    client: httpx.AsyncClient, send: Send, *, concurrency: int, duration: float, max_requests: int
) -> Phase:
    phase = Phase(connections=concurrency)
    started = time.perf_counter()
    deadline = started + duration
    budget = max_requests
    out_of_work = 0

    async def user() -> None:
        nonlocal budget, out_of_work
        while time.perf_counter() < deadline and budget > 0:
            budget -= 1
            request = send(client)
            if request is None:
                out_of_work += 1
                return
            t0 = time.perf_counter()
            try:
                status = await request
            except httpx.HTTPError:
                status = 0
            phase.latencies.append(time.perf_counter() - t0)
            phase.requests += 1
            if not 200 <= status < 300:
                phase.errors += 1

    await asyncio.gather(*(user() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    phase.capped = budget <= 0
    return phase


def python_phase(
    send: Send,
    *,
    base_url: str,
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
        timeout = httpx.Timeout(float(WRK_TIMEOUT))
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
            if warmup > 0:
                await _run(
                    client,
                    warmup_send or send,
                    concurrency=concurrency,
                    duration=warmup,
                    max_requests=max_requests,
                )
            return await _run(
                client, send, concurrency=concurrency, duration=duration, max_requests=max_requests
            )

    return asyncio.run(main())


def get(path: str) -> Callable[[httpx.AsyncClient], Awaitable[int]]:
    async def send(client: httpx.AsyncClient) -> int:
        response = await client.get(path)
        return response.status_code

    return send


# --- wrk ----------------------------------------------------------------------


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_run(
    script: str,
    url: str,
    arguments: Sequence[str],
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
) -> dict[str, Any]:
    """Runs wrk with bench/lua/`script` for at most `seconds` and returns the JSON
    line of bench/lua/common.lua's `done`. When every thread has run out of work
    (each prints BENCH-THREAD-DONE) wrk is interrupted, so that it reports at once
    instead of sleeping out its -d. One thread by default: the cores are the servers'."""
    check_loopback(url)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{max(connections, threads)}",
        f"-d{max(1, math.ceil(seconds))}s",
        "--timeout",
        f"{WRK_TIMEOUT}s",
        "-s",
        str(LUA / script),
        url,
        "--",
        *arguments,
    ]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        watchdog = threading.Timer(seconds + 60, proc.kill)
        watchdog.start()
        lines, finished = [], 0
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("BENCH-THREAD-DONE"):
                    finished += 1
                    if finished == threads:
                        proc.send_signal(signal.SIGINT)  # wrk: stop now and report
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    found = [ln for ln in lines if ln.startswith("BENCH {")]
    if returncode != 0 or not found:
        raise RuntimeError(
            f"wrk {script} failed (exit {returncode}):\n{''.join(lines[-10:])}{errors[-2000:]}"
        )
    data: dict[str, Any] = json.loads(found[-1].removeprefix("BENCH "))
    data["threads_finished"] = finished
    return data


def _phase(data: dict[str, Any], connections: int) -> Phase:
    unanswered = sum(data[k] for k in ("errors_connect", "errors_read", "errors_write"))
    return Phase(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["non2xx"] + unanswered + data["errors_timeout"],
        connections=connections,
        p50=data["p50_us"] / 1e6,
        p95=data["p95_us"] / 1e6,
        p99=data["p99_us"] / 1e6,
    )


def wrk_get(
    url: str,
    *,
    connections: int,
    duration: float,
    max_requests: int,
    warmup: float = 0.0,
    script: str = "get.lua",
) -> Phase:
    """GET `url` for `duration` seconds (or `max_requests` answers) after a warm-up; with
    `script="post.lua"`, POST a fixed JSON body instead (bench/floor.py)."""
    if warmup > 0:
        wrk_run(script, url, [str(max_requests)], connections=connections, seconds=warmup)
    data = wrk_run(script, url, [str(max_requests)], connections=connections, seconds=duration)
    phase = _phase(data, connections)
    phase.capped = data["threads_finished"] > 0
    return phase


def wrk_sign(
    base_url: str,
    *,
    prefix: str,
    slugs: Sequence[str],
    connections: int,
    duration: float,
    max_requests: int,
) -> Phase:
    """POST a signature with a unique address per request (`PREFIX-tTnN@example.org`),
    round-robin over `slugs`, for `duration` seconds (or `max_requests`)."""
    data = wrk_run(
        "sign.lua",
        base_url + "/",
        [str(max_requests), prefix, ",".join(slugs)],
        connections=connections,
        seconds=duration,
    )
    phase = _phase(data, connections)
    phase.capped = data["threads_finished"] > 0
    return phase


def wrk_confirm(base_url: str, tokens: Sequence[str], *, connections: int, bound: float) -> Phase:
    """POST /api/v1/signatures/verify once per token; ends when all are answered, or
    after `bound` seconds (then `left` says how many were not)."""
    if not tokens:
        return Phase(connections=connections)
    connections = min(connections, len(tokens))
    with tempfile.NamedTemporaryFile("w", prefix="bench-tokens-", suffix=".txt") as file:
        file.write("\n".join(tokens) + "\n")
        file.flush()
        data = wrk_run(
            "confirm.lua", base_url + "/", [file.name, "1"], connections=connections, seconds=bound
        )
    phase = _phase(data, connections)
    phase.left = max(0, len(tokens) - data["answers"])
    return phase
