"""Signing with the keyboard alone: Tab, Shift+Tab, Space, Enter and typing; no click.

Chromium (Playwright) against the real app in uvicorn, with the demo letters, the
in-process mail worker and the dev mailbox, and the sign form's time trap on (a form
sent sooner than FORM_MIN_SECONDS after it was shown is taken for a bot's). The person
reaches the form from the skip link, fills it, ticks the updates box with Space, steps
back with Shift+Tab and forward again, sends it with Enter after a human pause, opens
the link from the email (`page.goto`: the mailbox stands in for their mail client),
reaches the confirm button with Tab and presses it with Enter; the count goes up. At
every step the focused element is on screen and shows a focus indicator.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.db import Database
from app.letters.demo import create_demo_letters
from tests.support.browser import chromium
from tests.support.config import REPO_ROOT, make_settings
from tests.support.live import serve
from tests.support.ports import free_socket
from tests.web.test_accessibility import FOCUS_INFO

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

SLUG = "ice-out"
FORM_MIN_SECONDS = 2.0
HUMAN_PAUSE = 2.5
"""Seconds between the letter page's load and pressing Enter on the form: more than
FORM_MIN_SECONDS, as a person takes."""
MAIL_WAIT_SECONDS = 20.0
ARTIFACTS = REPO_ROOT / "test-artifacts"


@dataclass
class Live:
    base_url: str

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
def live(tmp_path: Path, sqlite_template: Path) -> Iterator[Live]:
    path = tmp_path / "keyboard.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    with database.write() as session:
        assert SLUG in create_demo_letters(session)
    sock, base_url = free_socket()
    settings = make_settings(
        tmp_path, database.url, base_url=base_url, run_mail_worker=True,
        form_min_seconds=FORM_MIN_SECONDS,
    )  # fmt: skip
    try:
        with serve(sock, settings):
            yield Live(base_url)
    finally:
        database.dispose()


def _focused(page: Page) -> dict[str, Any]:
    """The focused element; fails unless it is on screen with a visible indicator."""
    info: dict[str, Any] = page.evaluate(FOCUS_INFO)
    assert info["tag"] != "body", "focus was lost"
    assert info["visible"], f"the focused element is off screen: {info}"
    outline = info["outlineStyle"] != "none" and info["outlineWidth"] not in ("0px", "")
    assert outline or info["boxShadow"] not in ("none", ""), f"no focus indicator: {info}"
    return info


def _tab_to(page: Page, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Presses Tab until `wanted` holds for the focused element (checked at each stop)."""
    for _ in range(40):
        page.keyboard.press("Tab")
        info = _focused(page)
        if wanted(info):
            return info
    raise AssertionError(f"Tab never reached {what}")


def _field(field_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda info: bool(info["id"] == field_id)


def _count(page: Page) -> int:
    return int(page.locator("[data-live-count]").inner_text().replace(",", ""))


def test_sign_and_confirm_with_the_keyboard_only(browser: Browser, live: Live) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        response = page.goto(live.url(f"/letters/{SLUG}"))
        loaded = time.monotonic()
        assert response is not None and response.status == 200
        page.wait_for_load_state("networkidle")
        before = _count(page)

        # The skip link first; Enter moves focus to the main content.
        page.keyboard.press("Tab")
        assert "skip-link" in _focused(page)["cls"]
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"

        # The form, field by field, in the order it reads.
        _tab_to(page, _field("f-name"), "the name field")
        page.keyboard.type("Ada Keyboard")
        _tab_to(page, _field("f-email"), "the email field")
        page.keyboard.type("ada.keys@example.org")
        _tab_to(page, _field("f-organization"), "the organization field")
        page.keyboard.type("Analytical Engines Ltd")
        _tab_to(page, _field("f-contact_ok"), "the updates checkbox")
        page.keyboard.press("Space")
        assert page.locator("#f-contact_ok").is_checked()
        _tab_to(page, lambda info: info["type"] == "submit", "the sign button")
        # Shift+Tab goes back to the checkbox (still ticked), Tab forward again.
        page.keyboard.press("Shift+Tab")
        assert _focused(page)["id"] == "f-contact_ok"
        assert page.locator("#f-contact_ok").is_checked()
        page.keyboard.press("Tab")
        button = _focused(page)
        assert button["type"] == "submit" and button["inMain"]
        assert page.evaluate("document.activeElement.textContent.trim()") == "Sign the letter"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "keyboard-01-sign-button.png"))

        time.sleep(max(0.0, HUMAN_PAUSE - (time.monotonic() - loaded)))
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_url(f"**/letters/{SLUG}/check-email")
        assert "a•••@example.org" in page.locator("main").inner_text()

        # The email, from the dev mailbox (the worker delivers within a second or two).
        link = page.locator('a[href*="/verify/"]')
        deadline = time.monotonic() + MAIL_WAIT_SECONDS
        page.goto(live.url("/dev/mail"))
        while link.count() == 0:
            assert time.monotonic() < deadline, "no confirmation email arrived"
            time.sleep(0.5)
            page.reload()
        href = link.first.get_attribute("href")
        assert href is not None and href.startswith(live.url("/verify/"))

        # The confirm page: Tab to the button, Enter.
        page.goto(href)
        page.wait_for_load_state("networkidle")
        _tab_to(
            page,
            lambda info: info["type"] == "submit" and info["inMain"],
            "the confirm button",
        )
        assert page.evaluate("document.activeElement.textContent.trim()") == "Confirm my signature"
        page.screenshot(path=str(ARTIFACTS / "keyboard-02-confirm-button.png"))
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_url(f"**/letters/{SLUG}#thanks")
        assert page.locator("#thanks").is_visible()
        assert _count(page) == before + 1
        assert "Ada Keyboard" in page.locator("ul.signers").inner_text()
    finally:
        context.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser
