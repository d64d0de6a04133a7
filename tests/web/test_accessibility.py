"""Accessibility of every page a person sees: axe-core in Chromium, and the keyboard.

axe-core (the copy bundled in axe-playwright-python, so nothing is fetched from the
network) runs with the WCAG 2.0, 2.1 and 2.2 A and AA rules on each page, on a desktop
and on a phone viewport, and must find nothing. A keyboard test walks the letter page
with Tab: skip link first, then every field of the sign form in order, each with a
visible focus indicator.

The app runs once per module in uvicorn (same approach as test_browser.py), seeded with
the demo letters, a closed letter, public and anonymous verified signers, a pending
signature (for the confirm page) and its email in the dev mailbox.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from app.config import Settings
from app.db import Database
from app.letters.demo import create_demo_letters
from app.letters.models import Letter, LetterStatus
from app.mail.backends import DevMailbox
from app.mail.worker import deliver_due
from app.signatures.service import notify_pending, verify_signature
from tests.support.browser import axe_violations
from tests.support.browser import chromium as launch_chromium
from tests.support.config import make_settings, skip_or_fail
from tests.support.factories import make_letter, sign, verify_token
from tests.support.live import serve
from tests.support.ports import free_socket
from tests.web.flows import expired_token

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

SLUG = "ice-out"
VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Chromium as test_browser.py launches it (skips, or fails in CI, when missing)."""
    try:
        import axe_playwright_python  # noqa: F401
    except ImportError as exc:
        skip_or_fail(f"{exc.name} is not installed")
    with launch_chromium() as browser:
        yield browser


@dataclass
class Site:
    base_url: str
    confirm_token: str
    verified_token: str
    expired_token: str
    closed_slug: str

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def _seed(database: Database, settings: Settings) -> tuple[str, str, str, str]:
    """Signers and tokens; returns (pending, verified, expired) tokens and the closed slug."""
    with database.write() as session:
        assert SLUG in create_demo_letters(session)
        closed = make_letter(
            session, slug="closed-letter", title="A closed letter", status=LetterStatus.CLOSED
        )
        letter = session.scalars(select(Letter).where(Letter.slug == SLUG)).one()
        people: list[dict[str, Any]] = [
            {"name": "Grace Hopper", "title": "Rear Admiral", "organization": "US Navy"},
            {"name": "Alan Turing", "title": "", "organization": "", "city": "Manchester"},
            {"name": "Hidden Person", "display": "anonymous"},
            {"name": "Another Hidden", "display": "anonymous", "city": ""},
        ]
        verified = ""
        for person in people:
            signature = sign(session, letter, settings, **person)
            verified = verify_token(settings, signature)
            verify_signature(session, token=verified, settings=settings)
        pending = sign(session, letter, settings, name="Ada Lovelace", email="ada@example.org")
        stale = sign(session, letter, settings, name="Old Link", email="old@example.org")
        tokens = (
            verify_token(settings, pending),
            verified,
            expired_token(settings, stale.public_id),
            closed.slug,
        )
    # The confirmation emails, into the dev mailbox (the server runs no mail worker).
    with database.write() as session:
        assert notify_pending(session, settings=settings)
    assert deliver_due(database, DevMailbox(settings.data_dir / "dev-mail"), settings=settings)
    return tokens


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("a11y")
    path = tmp_path / "a11y.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite:///{path}"
    database = Database(database_url)

    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database_url, base_url=base_url, run_mail_worker=False)
    pending, verified, expired, closed_slug = _seed(database, settings)
    try:
        with serve(sock, settings):
            yield Site(base_url, pending, verified, expired, closed_slug)
    finally:
        database.dispose()


# --- The pages -------------------------------------------------------------------------


def _open(path: str, status: int = 200) -> Callable[[Page, Site], None]:
    def go(page: Page, site: Site) -> None:
        response = page.goto(site.url(path))
        assert response is not None
        assert response.status == status, f"{page.url}: HTTP {response.status}"

    return go


def _open_token(attribute: str, status: int) -> Callable[[Page, Site], None]:
    def go(page: Page, site: Site) -> None:
        _open(f"/verify/{getattr(site, attribute)}", status)(page, site)

    return go


def _letter_with_errors(page: Page, site: Site) -> None:
    _open(f"/letters/{SLUG}")(page, site)
    page.locator("#f-email").fill("not-an-email")
    with page.expect_response(lambda r: r.url.endswith(f"/letters/{SLUG}/sign")) as answer:
        page.locator("form[action$='/sign'] button[type=submit]").click()
    assert answer.value.status == 422
    page.wait_for_load_state()
    assert page.locator("#f-name-error").is_visible()
    assert page.locator("#f-email-error").is_visible()
    assert page.title().startswith("Error:"), "a screen reader hears the failure first"


def _with_cookie(name: str, value: str, path: str) -> Callable[[Page, Site], None]:
    """A page as the browser that just signed or confirmed sees it (a flash cookie)."""

    def go(page: Page, site: Site) -> None:
        page.context.add_cookies([{"name": name, "value": value, "url": site.url(path)}])
        _open(path)(page, site)

    return go


def _signers_short_search(page: Page, site: Site) -> None:
    _open(f"/letters/{SLUG}/signers?q=gr", 422)(page, site)
    assert "at least 3 characters" in page.locator("main").inner_text()


def _closed_letter(page: Page, site: Site) -> None:
    _open(f"/letters/{site.closed_slug}")(page, site)


def _signers_no_match(page: Page, site: Site) -> None:
    _open(f"/letters/{SLUG}/signers?q=zzzqqq")(page, site)
    assert "No public signer matches" in page.locator("main").inner_text()


def _signers(page: Page, site: Site) -> None:
    _open(f"/letters/{SLUG}/signers")(page, site)
    text = page.locator("main").inner_text()
    assert "Grace Hopper" in text
    assert "Anonymous" in text


def _dev_mail(page: Page, site: Site) -> None:
    _open("/dev/mail")(page, site)
    assert page.locator("article.mail").count() >= 1


PAGES: dict[str, Callable[[Page, Site], None]] = {
    "home": _open("/"),
    "letter": _open(f"/letters/{SLUG}"),
    "letter-errors": _letter_with_errors,
    "letter-thanks": _with_cookie("thanks", SLUG, f"/letters/{SLUG}"),
    "letter-closed": _closed_letter,
    "check-email": _with_cookie(
        "sent_to", "a%E2%80%A2%E2%80%A2%E2%80%A2%40example.org", f"/letters/{SLUG}/check-email"
    ),
    "confirm": _open_token("confirm_token", 200),
    "confirm-already": _open_token("verified_token", 200),
    "link-invalid": _open("/verify/not-a-real-token", 400),
    "link-expired": _open_token("expired_token", 400),
    "signers": _signers,
    "signers-no-match": _signers_no_match,
    "signers-short-search": _signers_short_search,
    "not-found": _open("/no-such-page", 404),
    "letter-not-found": _open("/letters/no-such-letter", 404),
    "dev-mail": _dev_mail,
}


def _report(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:160]}")
    return "\n".join(lines)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("name", list(PAGES))
def test_no_axe_violations(chromium: Browser, site: Site, name: str, viewport: str) -> None:
    context = chromium.new_context(**VIEWPORTS[viewport])
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        PAGES[name](page, site)
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        assert violations == [], f"{name} on {viewport}:\n{_report(violations)}"
        # Reflow (WCAG 1.4.10): nothing scrolls sideways.
        scroll_width, inner_width = page.evaluate(
            "[document.scrollingElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, f"{name} scrolls sideways on {viewport}"
        # axe came from the package, not from the network.
        assert all(url.startswith(site.base_url) for url in requests), requests
    finally:
        context.close()


# --- The keyboard ----------------------------------------------------------------------

FOCUS_INFO = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(), id: el.id, cls: el.className, type: el.type || "",
    inMain: !!el.closest("main"),
    outlineStyle: style.outlineStyle, outlineWidth: style.outlineWidth,
    boxShadow: style.boxShadow,
    visible: box.width > 0 && box.height > 0 && box.right > 0 && box.bottom > 0
      && box.left < innerWidth && box.top < innerHeight,
  };
}"""

FORM_ORDER = [
    "f-name",
    "f-email",
    "f-title",
    "f-organization",
    "f-city",
    "f-display",  # the checked radio of the group
    "f-contact_ok",
    "submit",
]


def _has_focus_indicator(info: dict[str, Any]) -> bool:
    outline = info["outlineStyle"] != "none" and info["outlineWidth"] not in ("0px", "")
    return outline or info["boxShadow"] not in ("none", "")


def test_keyboard_reaches_skip_link_and_every_field(chromium: Browser, site: Site) -> None:
    context = chromium.new_context(**VIEWPORTS["desktop"])
    page = context.new_page()
    try:
        _open(f"/letters/{SLUG}")(page, site)
        page.wait_for_load_state("networkidle")

        page.keyboard.press("Tab")
        info = page.evaluate(FOCUS_INFO)
        assert "skip-link" in info["cls"], f"first Tab stop is not the skip link: {info}"
        assert info["visible"], "the focused skip link is off screen"
        assert _has_focus_indicator(info), f"no focus indicator on the skip link: {info}"

        page.keyboard.press("Enter")
        info = page.evaluate(FOCUS_INFO)
        assert (info["tag"], info["id"]) == ("main", "main"), f"focus after skip link: {info}"

        seen: list[str] = []
        for _ in range(60):
            page.keyboard.press("Tab")
            info = page.evaluate(FOCUS_INFO)
            label = "submit" if info["type"] == "submit" else info["id"] or info["tag"]
            assert info["inMain"], f"Tab left main before the form was done: {info}"
            assert info["visible"], f"focused element is not on screen: {info}"
            assert _has_focus_indicator(info), f"no visible focus indicator: {info}"
            if label in FORM_ORDER:
                seen.append(label)
            if label == "submit":
                break
        assert seen == FORM_ORDER
    finally:
        context.close()
