"""Running `undersigned` as a real process: its script, a clean environment, and waiting
for a server to answer its health check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def console_script() -> str:
    """The `undersigned` script of the running virtualenv."""
    beside_python = Path(sys.executable).with_name("undersigned")
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("undersigned")
    assert found, "the `undersigned` console script is not installed (pip install -e .)"
    return found


def clean_env(*, drop: tuple[str, ...] = (), **settings: str) -> dict[str, str]:
    """This process's environment without any UNDERSIGNED_* variable (so that the test
    runner's own settings never leak in), then `settings` as UNDERSIGNED_<name>."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("UNDERSIGNED_") and key not in drop
    }
    env.update({f"UNDERSIGNED_{name.upper()}": value for name, value in settings.items()})
    return env


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as response:  # noqa: S310
            status: int = response.status
    except OSError:
        return False
    return status == 200


def wait_until_healthy(
    base_url: str,
    process: subprocess.Popen[str] | subprocess.Popen[bytes],
    output: Callable[[], str],
    *,
    seconds: float = 60,
) -> None:
    """Returns once `/healthz` answers 200; fails with the server's `output()` if the
    process stops or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while not healthy(base_url):
        assert process.poll() is None, f"the server stopped:\n{output()}"
        assert time.monotonic() < deadline, f"the server did not start:\n{output()}"
        time.sleep(0.1)
