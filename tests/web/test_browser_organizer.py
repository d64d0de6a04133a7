"""An organizer's day, as clicked in Chromium against a live server: sign in through the
dev mailbox, write a letter (with a preview), publish it; someone signs and confirms;
the organizer removes that signature and sees the count drop, on the dashboard and on
the public page. Screenshots go to `test-artifacts/`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from app.letters.models import Letter, LetterTally
from app.organizers.service import create_organizer
from app.signatures.models import Signature, SignatureStatus
from tests.web.test_browser import (
    MAIL_WAIT_SECONDS,
    LiveServer,
    browser,
    live_server,
    screenshot,
    wait_for,
    watch,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

__all__ = ["browser", "live_server"]  # fixtures, used by name

ORGANIZER = "organizer@example.org"
SLUG = "cancel-the-contract"


def _link_from_mailbox(page: Page, server: LiveServer, path: str) -> str:
    """The newest link to `path…` in the dev mailbox (the worker polls every second)."""
    page.goto(server.url("/dev/mail"))
    links = page.locator(f'a[href^="{server.url(path)}"]')
    wait_for(page, lambda: links.count() > 0, MAIL_WAIT_SECONDS)
    href = links.first.get_attribute("href")
    assert href is not None
    return href


def _tally(server: LiveServer) -> tuple[int, list[SignatureStatus]]:
    with server.database.read() as session:
        count = session.scalar(
            select(LetterTally.verified_count).join(Letter).where(Letter.slug == SLUG)
        )
        statuses = list(
            session.scalars(select(Signature.status).join(Letter).where(Letter.slug == SLUG))
        )
    assert count is not None
    return count, statuses


def test_an_organizer_runs_a_letter_from_the_browser(
    browser: Browser, live_server: LiveServer
) -> None:
    with live_server.database.write() as session:
        create_organizer(session, email=ORGANIZER)

    organizer = browser.new_context(viewport={"width": 1280, "height": 900})
    page = organizer.new_page()
    seen = watch(page)

    # 1. Ask for a sign-in link; the answer says nothing about whether we have an account.
    page.goto(live_server.url("/login"))
    page.get_by_role("textbox", name="Email address").fill(ORGANIZER)
    page.get_by_role("button", name="Email me a sign-in link").click()
    page.wait_for_url("**/login/sent")
    screenshot(page, "organizer-01-login-sent")

    # 2. The link from the dev mailbox opens a page with a button; the button signs in.
    page.goto(_link_from_mailbox(page, live_server, "/login/"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dashboard")
    assert page.get_by_role("heading", level=1).inner_text() == "Your letters"
    screenshot(page, "organizer-02-dashboard")

    # 3. A new letter, previewed, then saved as a draft.
    page.get_by_role("link", name="New letter").first.click()
    page.get_by_role("textbox", name="Title").fill("Cancel the contract")
    page.get_by_role("textbox", name="Address (slug)").fill(SLUG)
    page.get_by_role("textbox", name="Text").fill("We ask you to **cancel** the contract.")
    page.get_by_role("textbox", name="Addressed to").fill("The board")
    page.get_by_role("button", name="Preview the text").first.click()
    page.wait_for_load_state()
    assert page.locator("strong", has_text="cancel").count() >= 1, "the preview renders Markdown"
    assert page.get_by_role("textbox", name="Title").input_value() == "Cancel the contract"
    screenshot(page, "organizer-03-preview")
    page.get_by_role("button", name="Create the draft").click()
    page.wait_for_url(f"**/dashboard/letters/{SLUG}*")
    assert page.get_by_role("heading", level=1).inner_text() == "Cancel the contract"

    # A draft is nobody else's business.
    assert page.request.get(live_server.url(f"/letters/{SLUG}")).status == 404

    # 4. Publish.
    page.get_by_role("button", name="Publish").click()
    page.wait_for_url(f"**/dashboard/letters/{SLUG}*")
    assert page.get_by_role("button", name="Close").is_visible()
    screenshot(page, "organizer-04-published")

    # 5. Someone else signs and confirms, in their own browser.
    signer_context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    signer = signer_context.new_page()
    signer.goto(live_server.url(f"/letters/{SLUG}"))
    signer.get_by_role("textbox", name="Full name").fill("Grace Hopper")
    signer.get_by_role("textbox", name="Email").fill("grace@example.net")
    signer.get_by_role("button", name="Sign the letter").click()
    signer.wait_for_url(f"**/letters/{SLUG}/check-email")
    signer.goto(_link_from_mailbox(signer, live_server, "/verify/"))
    signer.get_by_role("button", name="Confirm my signature").click()
    signer.wait_for_url(f"**/letters/{SLUG}#thanks")
    assert signer.locator("[data-live-count]").inner_text() == "1"
    assert _tally(live_server) == (1, [SignatureStatus.VERIFIED])

    # 6. The organizer sees the signature and removes it; the count drops everywhere.
    page.goto(live_server.url(f"/dashboard/letters/{SLUG}/signatures"))
    assert "Grace Hopper" in page.locator("main").inner_text()
    screenshot(page, "organizer-05-signatures")
    page.get_by_role("button", name="Remove signature #1").click()
    page.wait_for_url(f"**/dashboard/letters/{SLUG}/signatures*")
    assert _tally(live_server) == (0, [SignatureStatus.REMOVED])
    page.goto(live_server.url(f"/dashboard/letters/{SLUG}"))
    facts = page.locator("dl.letter-facts dd")
    assert facts.nth(1).inner_text().strip() == "0"
    screenshot(page, "organizer-06-after-removal")

    signer.goto(live_server.url(f"/letters/{SLUG}"))
    assert signer.locator("[data-live-count]").inner_text() == "0"
    assert "Grace Hopper" not in signer.locator("main").inner_text()

    # 7. The audit log tells the story, and sign-out ends the session.
    page.goto(live_server.url(f"/dashboard/letters/{SLUG}/audit"))
    log = page.locator("main").inner_text()
    for action in ("letter.create", "letter.publish", "signature.remove"):
        assert action in log, f"{action} missing from the audit log"
    page.get_by_role("button", name=f"Sign out ({ORGANIZER})").click()
    page.wait_for_url("**/login")
    assert page.request.get(live_server.url("/dashboard"), max_redirects=0).status == 303

    origin = live_server.url("/")
    assert [url for url in seen.requests if not url.startswith(origin)] == []
    assert seen.errors == []
    signer_context.close()
    organizer.close()
