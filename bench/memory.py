"""The app's memory through a bench run: every 0.5 s, the resident set size (VmRSS in
/proc/PID/status) of the server process the bench started and of all its descendants
(uvicorn's worker processes, multiprocessing's helpers), the highest value kept per
process. Linux /proc only, no dependency; elsewhere nothing is sampled.

Descendants are found through /proc/PID/task/*/children when the kernel offers it,
else by reading every /proc/*/stat's parent pid.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
INTERVAL = 0.5  # seconds
TARGET_MB = 150.0  # issue 10: an app process stays under 150 MB RSS through the bench


@dataclass
class Peak:
    pid: int
    role: str
    rss_kb: int = 0
    samples: int = 0
    ended: bool = False  # gone before the sampling stopped (a worker that died, say)

    @property
    def mb(self) -> float:
        return self.rss_kb / 1024

    @property
    def met(self) -> bool:
        return self.mb < TARGET_MB


def rss_kb(pid: int) -> int | None:
    """VmRSS of `pid` in kB; None when it is gone (or a kernel thread)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc), in seconds; 0 if gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_seconds(root: int) -> float:
    """CPU seconds of `root` and every process below it, so far (a process that has
    ended no longer counts: take the difference over a phase)."""
    return sum(process_cpu_seconds(pid) for pid in [root, *descendants(root)])


def _children_listed(pid: int) -> list[int] | None:
    """Children from /proc/PID/task/*/children, None when the kernel has no such file."""
    found: list[int] = []
    tasks = list((PROC / str(pid) / "task").glob("*/children"))
    if not tasks:
        return None
    for path in tasks:
        try:
            found += [int(x) for x in path.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def _parents() -> dict[int, int]:
    """pid -> parent pid, for every process (/proc/*/stat's fourth field)."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    """Every process below `root` (children, their children...)."""
    listed = _children_listed(root)
    if listed is not None:
        found, todo = [], list(listed)
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += _children_listed(pid) or []
        return found
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def role(pid: int, root: int) -> str:
    try:
        command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        command = ""
    if pid == root:
        return "undersigned serve (main process)"
    if "resource_tracker" in command:
        return "multiprocessing resource tracker"
    if "spawn_main" in command or "multiprocessing" in command:
        return "uvicorn worker"
    return "child: " + " ".join(command.split()[:2])[:60]


class MemorySampler:
    """Samples a process tree every INTERVAL seconds in a daemon thread, from `start`
    to `stop`; `peaks` holds the highest RSS seen per process, and whether it ended
    before the last sample (uvicorn replaces a worker that dies or stops answering its
    health check)."""

    def __init__(self, root: int, interval: float = INTERVAL) -> None:
        self.root, self.interval = root, interval
        self.peaks: dict[int, Peak] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)

    def sample(self) -> None:
        seen = set()
        for pid in [self.root, *descendants(self.root)]:
            kb = rss_kb(pid)
            if kb is None:
                continue
            seen.add(pid)
            peak = self.peaks.get(pid)
            if peak is None:
                peak = self.peaks[pid] = Peak(pid, role(pid, self.root))
            peak.rss_kb = max(peak.rss_kb, kb)
            peak.samples += 1
        for pid, peak in self.peaks.items():
            peak.ended = pid not in seen

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> MemorySampler:
        if PROC.is_dir():
            self._thread.start()
        return self

    def stop(self) -> list[Peak]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        return sorted(self.peaks.values(), key=lambda p: (p.pid != self.root, p.pid))
