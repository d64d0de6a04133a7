"""The signing loop as a person clicks it: Chromium (Playwright) against a live server.

The real app runs in uvicorn on a free loopback port with the in-process mail worker
and the dev mail backend, so the confirmation email lands in `/dev/mail`. Screenshots of
the key steps go to `test-artifacts/` (git-ignored) for a human to look at.

Chromium comes from UNDERSIGNED_TEST_CHROMIUM (default /usr/bin/chromium); when it is
missing the tests skip, or fail under UNDERSIGNED_TEST_REQUIRE_ALL=1 (CI).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import Database
from app.letters.demo import create_demo_letters
from app.letters.models import Letter
from app.signatures.models import Signature
from tests.support.browser import chromium
from tests.support.config import REPO_ROOT, make_settings
from tests.support.live import serve
from tests.support.ports import free_socket

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"
MAIL_WAIT_SECONDS = 20.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@dataclass
class LiveServer:
    base_url: str
    data_dir: Path
    database: Database  # the app's database, for checks from the test

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
def live_server(tmp_path: Path, sqlite_template: Path) -> Iterator[LiveServer]:
    """The real app, served by uvicorn in a thread, with the demo letters."""
    path = tmp_path / "browser.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite:///{path}"

    database = Database(database_url)
    with database.write() as session:
        assert "ice-out" in create_demo_letters(session)

    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database_url, base_url=base_url, run_mail_worker=True)
    try:
        with serve(sock, settings):
            yield LiveServer(base_url, tmp_path, database)
    finally:
        database.dispose()


@dataclass
class Watch:
    """What a page did: every request it made and every console error."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def watch(page: Page) -> Watch:
    seen = Watch()

    def on_request(request: Request) -> None:
        seen.requests.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.errors.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))
    return seen


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for(page: Page, reload_until: Callable[[], bool], timeout: float) -> None:
    """Reloads the page until the condition holds (the mail worker polls every second)."""
    deadline = time.monotonic() + timeout
    while not reload_until():
        assert time.monotonic() < deadline, f"gave up after {timeout} s"
        time.sleep(0.5)
        page.reload()


def test_sign_confirm_by_email_and_be_counted(browser: Browser, live_server: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = watch(page)
    name = "Ada Lovelace-Byron"
    email = "ada@example.org"

    # 1. The letter, with its form.
    response = page.goto(live_server.url("/letters/ice-out"))
    assert response is not None
    assert response.status == 200
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text().startswith("ICE out")
    assert page.locator("[data-live-count]").inner_text() == "0"
    letter_page_requests = list(seen.requests)
    screenshot(page, "browser-01-letter")

    # 2. Sign.
    page.get_by_role("textbox", name="Full name").fill(name)
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_role("textbox", name="Organization").fill("Analytical Engines Ltd")
    page.get_by_role("button", name="Sign the letter").click()
    page.wait_for_url("**/letters/ice-out/check-email")
    assert page.get_by_role("heading", level=1).inner_text() == "Check your email"
    assert "a•••@example.org" in page.locator("main").inner_text()  # masked, never in the URL
    assert "ada@" not in page.url
    screenshot(page, "browser-02-check-email")

    # 3. The dev mailbox: the worker delivers within a second or two.
    page.goto(live_server.url("/dev/mail"))
    verify_links = page.locator('a[href*="/verify/"]')
    wait_for(page, lambda: verify_links.count() > 0, MAIL_WAIT_SECONDS)
    mail = page.locator("article.mail").first
    assert email in mail.inner_text()
    assert "Confirm your signature" in mail.locator("h2").inner_text()
    href = verify_links.first.get_attribute("href")
    assert href is not None
    assert href.startswith(live_server.url("/verify/")), "links come from BASE_URL"
    screenshot(page, "browser-03-dev-mail")

    # 4. The link opens a page that changes nothing until the button is pressed.
    verify_links.first.click()
    page.wait_for_url("**/verify/**")
    button = page.get_by_role("button", name="Confirm my signature")
    assert button.is_visible()
    assert name in page.locator("dl.summary").inner_text()
    screenshot(page, "browser-04-confirm")
    button.click()

    # 5. Back on the letter: thanked, counted, listed.
    page.wait_for_url("**/letters/ice-out#thanks")
    assert page.locator("#thanks").is_visible()
    assert page.locator("form[action$='/sign']").count() == 0  # no sign form after signing
    assert "Your signature is confirmed" in page.locator("#thanks").inner_text()
    assert page.locator("[data-live-count]").inner_text() == "1"
    assert "1 confirmed signature" in page.locator(".tally-count").inner_text()
    assert name in page.locator("ul.signers").inner_text()
    assert page.locator("#share-link").input_value() == live_server.url("/letters/ice-out")
    screenshot(page, "browser-05-thanks")
    # The thank-you was for this browser, once: a reload shows the letter as anyone sees it.
    page.reload()
    assert page.locator("#thanks").count() == 0

    # Nothing left for a third party, and nothing the browser complained about (a CSP
    # violation is reported as a console error).
    origin = live_server.url("/")
    assert letter_page_requests, "no request recorded"
    # Under their content-hashed names (app/web/static.py).
    assert any(re.search(r"/static/style\.[0-9a-f]{12}\.css$", url) for url in letter_page_requests)
    assert any(re.search(r"/static/live\.[0-9a-f]{12}\.js$", url) for url in letter_page_requests)
    third_party = [url for url in seen.requests if not url.startswith(origin)]
    assert third_party == []
    assert seen.errors == []
    context.close()


def _count_signatures(server: LiveServer, slug: str) -> int:
    session: Session
    with server.database.read() as session:
        count = session.scalar(
            select(func.count(Signature.id)).join(Letter).where(Letter.slug == slug)
        )
    assert count is not None
    return count


def test_invalid_form_keeps_input_and_fits_a_phone(
    browser: Browser, live_server: LiveServer
) -> None:
    slug = "business-for-de-escalation"
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    seen = watch(page)

    response = page.goto(live_server.url(f"/letters/{slug}"))
    assert response is not None
    assert response.status == 200
    scroll_width, inner_width = page.evaluate(
        "[document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= inner_width, "the letter page scrolls sideways on a phone"
    screenshot(page, "browser-06-phone-letter")

    page.get_by_role("textbox", name="Email").fill("not-an-email")
    page.get_by_role("textbox", name="Organization").fill("Corner Shop & Co")
    page.get_by_role("textbox", name="City").fill("Minneapolis")
    with page.expect_response(lambda r: r.url.endswith(f"/letters/{slug}/sign")) as answer:
        page.get_by_role("button", name="Sign the letter").click()
    assert answer.value.status == 422
    page.wait_for_load_state()

    assert page.get_by_role("alert").is_visible()
    assert page.locator("#f-name-error").inner_text() == "This field is required."
    assert "Enter an email address" in page.locator("#f-email-error").inner_text()
    # Each error is tied to its field for screen readers.
    name_field, email_field = page.locator("#f-name"), page.locator("#f-email")
    assert name_field.get_attribute("aria-invalid") == "true"
    assert email_field.get_attribute("aria-invalid") == "true"
    assert name_field.get_attribute("aria-describedby") == "f-name-error"
    assert email_field.get_attribute("aria-describedby") == "f-email-hint f-email-error"
    assert name_field.get_attribute("required") is not None
    assert email_field.get_attribute("required") is not None
    assert page.locator("#f-email").input_value() == "not-an-email"
    assert page.locator("#f-organization").input_value() == "Corner Shop & Co"
    assert page.locator("#f-city").input_value() == "Minneapolis"
    assert page.locator("#f-organization").get_attribute("aria-invalid") is None
    scroll_width, inner_width = page.evaluate(
        "[document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= inner_width, "the page with errors scrolls sideways on a phone"
    screenshot(page, "browser-07-phone-errors")

    assert _count_signatures(live_server, slug) == 0, "invalid input must store nothing"
    # Chromium logs the 422 document itself as an error; anything else is a fault.
    expected = "the server responded with a status of 422"
    assert [error for error in seen.errors if expected not in error] == []
    context.close()
