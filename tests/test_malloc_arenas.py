"""`serve` and `worker` cap glibc's malloc arenas (D185), unless the operator chose."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

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


def test_a_sqlite_app_does_not_load_the_postgresql_driver(tmp_path: Path) -> None:
    """psycopg (with its own libpq, libssl and libcrypto) is about 10 MB of a process's
    RSS: a SQLite deployment, one small process, never loads it (D187). The app is made
    and its lifespan run, with its in-process mail worker and sequencer, in a fresh
    interpreter."""
    script = (
        "import os, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from app.db import Database\n"
        "from app.migrate import upgrade\n"
        "upgrade(Database(os.environ['UNDERSIGNED_DATABASE_URL']), secret_key='k' * 40)\n"
        "from app.main import create_app_from_env\n"
        "with TestClient(create_app_from_env()) as client:\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "    assert client.get('/letters/ice-out').status_code == 404\n"
        "print(sorted(name for name in sys.modules if name.startswith('psycopg')))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("UNDERSIGNED_")},
        "UNDERSIGNED_DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite'}",
        "UNDERSIGNED_DATA_DIR": str(tmp_path),
        "UNDERSIGNED_SECRET_KEY": "k" * 40,
        "UNDERSIGNED_MAIL_BACKEND": "dev",
        "UNDERSIGNED_RUN_MAIL_WORKER": "true",
    }
    loaded = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
