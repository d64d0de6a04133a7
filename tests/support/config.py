"""What the test run may use (from the environment) and test Settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from app.config import MailBackend, Settings

PG_URL = os.environ.get("UNDERSIGNED_TEST_DATABASE_URL", "")
REQUIRE_ALL = os.environ.get("UNDERSIGNED_TEST_REQUIRE_ALL", "") not in ("", "0", "false")
REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET = "test-secret-key-not-for-production"


def skip_or_fail(reason: str) -> None:
    """Skip, unless the run demands every test (CI), where a skip would hide a gap."""
    if REQUIRE_ALL:
        pytest.fail(f"required test could not run: {reason}", pytrace=False)
    pytest.skip(reason)


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "base_url": "http://testserver",
        "data_dir": tmp_path,
        "mail_backend": MailBackend.DEV,
        "rate_limits": False,
        # Tests post the sign form at once: no minimum time (tests/web/test_traps.py
        # turns it back on).
        "form_min_seconds": 0,
        # Tests read a page right after changing what it shows: no in-process cache
        # (tests/web/test_public_cache.py turns it on).
        "public_cache_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)
