"""Running `undersigned` as a real process: its script, a clean environment, and waiting
for a server to answer its health check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Mapping
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


def run_in_process(
    args: tuple[str, ...] | list[str], *, cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """`undersigned ARGS` without a new process: the console script's entry point
    (`app.cli:main`, umask included) called here, as the script would run it with
    exactly `env` as its environment and `cwd` as its working directory (so no .env or
    ./var of the checkout is read). Returns what `subprocess.run(..., text=True,
    capture_output=True)` would: the exit status, stdout and stderr apart, and for an
    uncaught exception what the interpreter does (a traceback on stderr, status 1).
    The environment, working directory, umask and sys.argv are put back afterwards.

    For one-off commands only: `serve` and `worker` keep running, so they go to a real
    process (where a broken check ends in a timeout rather than a test that never ends).
    """
    from click.testing import CliRunner

    from app.cli import main

    argv = ["undersigned", *args]
    assert not ({"serve", "worker"} & set(args[:1])), "run long-running commands in a process"
    overrides: dict[str, str | None] = {key: None for key in os.environ if key not in env}
    overrides.update(env)
    saved_argv, saved_cwd = sys.argv, Path.cwd()
    saved_umask = os.umask(0o022)
    os.umask(saved_umask)
    with CliRunner().isolation(env=overrides) as (stdout, stderr, _):
        sys.argv = argv
        os.chdir(cwd)
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code
            if code is None or isinstance(code, int):
                returncode = code or 0
            else:  # sys.exit("message")
                print(code, file=sys.stderr)
                returncode = 1
        except Exception:  # what the interpreter does with an uncaught exception
            traceback.print_exc(file=sys.stderr)
            returncode = 1
        else:
            returncode = 0
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.argv = saved_argv
            os.chdir(saved_cwd)
            os.umask(saved_umask)
    return subprocess.CompletedProcess(
        argv, returncode, stdout.getvalue().decode(), stderr.getvalue().decode()
    )
