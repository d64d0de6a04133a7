"""`serve` and `worker` cap glibc's malloc arenas (D185), unless the operator chose."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from app import cli


def test_the_cap_is_set_for_this_process_and_the_ones_it_spawns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    capped = cli.fewer_malloc_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == str(cli.MALLOC_ARENAS)
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert capped is glibc
    # A process started from here (as uvicorn's workers are) gets the variable.
    seen = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('MALLOC_ARENA_MAX'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert seen == str(cli.MALLOC_ARENAS)


def test_the_operators_own_value_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cli.fewer_malloc_arenas() is False
    assert os.environ["MALLOC_ARENA_MAX"] == "4"
