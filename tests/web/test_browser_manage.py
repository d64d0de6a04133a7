"""The manage link as a signer clicks it: Chromium (Playwright) against a live server.

The confirmation email lands in the dev mailbox; its "Manage your signature" link opens
the private page, which has no axe (WCAG 2.x A/AA) violation; the signer turns
anonymous, then withdraws, and the letter's tally drops by one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.db import Database
from tests.support.browser import axe_violations, chromium
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign
from tests.support.live import serve
from tests.support.ports import free_socket
from tests.web.test_browser import MAIL_WAIT_SECONDS, screenshot, wait_for, watch

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

NAME = "Rosalind Managefield"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def test_turn_anonymous_then_withdraw_from_the_emailed_link(
    browser: Browser, tmp_path: Path, sqlite_template: Path
) -> None:
    path = tmp_path / "manage.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite:///{path}"
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database_url, base_url=base_url, run_mail_worker=True)
    database = Database(database_url)
    with database.write() as session:
        letter = make_letter(session)
        slug = letter.slug
        sign(session, letter, settings, name=NAME, email="rosalind@labs.example",
             organization="Crystal Labs")  # fmt: skip
    try:
        with serve(sock, settings):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            seen = watch(page)

            # The email: confirm first, through its link.
            page.goto(f"{base_url}/dev/mail")
            manage_links = page.locator('a[href*="/signature/"]')
            wait_for(page, lambda: manage_links.count() > 0, MAIL_WAIT_SECONDS)
            manage_href = manage_links.first.get_attribute("href")
            assert manage_href is not None and manage_href.startswith(f"{base_url}/signature/")
            page.locator('a[href*="/verify/"]').first.click()
            page.get_by_role("button", name="Confirm my signature").click()
            page.wait_for_url(f"**/letters/{slug}#thanks")
            assert page.locator("[data-live-count]").inner_text() == "1"

            # The manage page, from the email's link.
            response = page.goto(manage_href)
            assert response is not None and response.status == 200
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert page.get_by_role("heading", level=1).inner_text() == "Your signature"
            assert NAME in page.locator("dl.summary").inner_text()
            violations = axe_violations(page)
            assert violations == [], violations
            screenshot(page, "manage-01-page")

            # 1. Anonymous.
            page.get_by_role("radio", name="Show me as “Anonymous”", exact=False).check()
            page.get_by_role("button", name="Save").click()
            page.wait_for_url("**?done=display")
            assert "Saved" in page.get_by_role("status").inner_text()
            assert NAME not in page.locator("main").inner_text()
            assert "Anonymous" in page.locator("dl.summary").inner_text()
            assert axe_violations(page) == []
            page.goto(f"{base_url}/letters/{slug}")
            assert NAME not in page.locator("main").inner_text()
            assert page.locator("[data-live-count]").inner_text() == "1"

            # 2. Withdraw.
            page.goto(manage_href)
            page.get_by_role("button", name="Withdraw my signature").click()
            page.wait_for_url("**?done=withdrawn")
            heading = page.get_by_role("heading", level=1).inner_text()
            assert heading == "Your signature is withdrawn"
            assert axe_violations(page) == []
            screenshot(page, "manage-02-withdrawn")
            page.goto(f"{base_url}/letters/{slug}")
            assert page.locator("[data-live-count]").inner_text() == "0"

            third_party = [url for url in seen.requests if not url.startswith(base_url)]
            assert third_party == []
            assert seen.errors == []
            context.close()
    finally:
        database.dispose()
