"""Headless Chromium through Playwright (Debian's package, never a downloaded one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.config import skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]


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


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A and AA violations on the page as it is (injected through
    the DevTools protocol, which the page's CSP does not govern: no `bypass_csp`)."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError as exc:
        skip_or_fail(f"{exc.name} is not installed")
    results = Axe().run(
        page,
        options={"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]},
    )
    assert results.response["passes"], "axe ran no rule: was it injected?"
    violations: list[dict[str, Any]] = results.response["violations"]
    return violations
