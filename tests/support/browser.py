"""Headless Chromium through Playwright (Debian's package, never a downloaded one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.config import skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """UNDERSIGNED_TEST_CHROMIUM, else Debian's /usr/bin/chromium, else None."""
    configured = os.environ.get("UNDERSIGNED_TEST_CHROMIUM", "")
    if configured:
        return configured if Path(configured).is_file() else None
    default = "/usr/bin/chromium"
    return default if Path(default).is_file() else None


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium through Playwright; skips (fails under REQUIRE_ALL) without it."""
    executable = chromium_path()
    if executable is None:
        skip_or_fail("Chromium not found (set UNDERSIGNED_TEST_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
