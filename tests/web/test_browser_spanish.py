"""The Spanish letter as a person reads and signs it, and the letter page's first screen
on a phone: Chromium (Playwright) against a live server (see tests/web/test_browser.py).

- A Spanish reader (Accept-Language: es) sees the demo letter's Spanish title and text,
  signs it (after the form's time trap), gets the confirmation email in Spanish,
  confirms, and the one tally is one higher on both languages' pages.
- On a phone (390x844, and 320 px wide), with a header image, the count, the goal and
  the sign button are all in the first screen.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from sqlalchemy import select

from app.db import Database
from app.i18n import gettext, use_locale
from app.letters.accent import set_accent_color
from app.letters.demo import TRANSLATIONS, create_demo_letters
from app.letters.images import set_header_image
from app.letters.models import Letter
from app.organizers.models import Role
from app.organizers.service import SHELL, start_session
from app.organizers.web import session_cookie_name
from app.signatures.models import Signature
from tests.support.browser import axe_violations, chromium
from tests.support.config import REPO_ROOT, make_settings
from tests.support.live import serve
from tests.support.organizers import make_organizer
from tests.support.ports import free_socket

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"
MAIL_WAIT_SECONDS = 20.0
FORM_MIN_SECONDS = 2.0
SPANISH = TRANSLATIONS["ice-out"]["es"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@dataclass
class Live:
    base_url: str
    database: Database
    editor_cookie: tuple[str, str]
    """A signed-in editor of `ice-out`: the session cookie's name and value."""


@pytest.fixture
def live(tmp_path: Path, sqlite_template: Path) -> Iterator[Live]:
    """The real app with the demo letters; `ice-out` has a header image and an accent
    colour, and an editor (`Live.editor_cookie`); the sign form's time trap is on (2 s)."""
    path = tmp_path / "spanish.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite:///{path}"
    database = Database(database_url)
    with database.write() as session:
        create_demo_letters(session)
        letter = session.scalars(select(Letter).where(Letter.slug == "ice-out")).one()
        photo = io.BytesIO()
        Image.new("RGB", (2400, 1200), (40, 60, 90)).save(photo, format="JPEG")
        set_header_image(session, letter=letter, data=photo.getvalue(), actor=SHELL)
        set_accent_color(session, letter=letter, value="#7a1f5c", actor=SHELL)
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database_url, base_url=base_url, run_mail_worker=True,
                             form_min_seconds=FORM_MIN_SECONDS)  # fmt: skip
    with database.write() as session:
        letter = session.scalars(select(Letter).where(Letter.slug == "ice-out")).one()
        editor = make_organizer(session, "editor@example.org", letter=letter, role=Role.EDITOR)
        cookie = start_session(session, organizer=editor, settings=settings)
    try:
        with serve(sock, settings):
            yield Live(base_url, database, (session_cookie_name(settings), cookie))
    finally:
        database.dispose()


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _count(page: Page) -> str:
    return page.locator("[data-live-count]").inner_text()


def test_a_spanish_reader_signs_the_spanish_demo_letter(browser: Browser, live: Live) -> None:
    base_url, database = live.base_url, live.database
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="es-MX",
        extra_http_headers={"accept-language": "es-MX,es;q=0.9"},
    )  # fmt: skip
    page = context.new_page()
    english = browser.new_context(extra_http_headers={"accept-language": "en"}).new_page()
    english.goto(f"{base_url}/letters/ice-out")
    assert english.locator("h1").inner_text().startswith("ICE out")
    assert _count(english) == "0"

    # 1. The letter in Spanish: its title, its text, the interface.
    page.goto(f"{base_url}/letters/ice-out")
    shown = time.monotonic()
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.locator("h1").inner_text() == SPANISH["title"]
    assert "Cancelen todos los contratos" in page.locator(".letter-body").inner_text()
    assert _count(page) == "0"
    _screenshot(page, "spanish-01-letter")

    # 2. Sign, no sooner than a person would (the form's time trap).
    page.locator("#f-name").fill("Ana Hernández")
    page.locator("#f-email").fill("ana@example.org")
    page.locator("#f-organization").fill("Máquinas Analíticas")
    time.sleep(max(0.0, FORM_MIN_SECONDS + 0.5 - (time.monotonic() - shown)))
    page.locator("form[action$='/sign'] button[type=submit]").click()
    page.wait_for_url("**/letters/ice-out/check-email")
    with use_locale("es"):
        check_email = gettext("Check your email")
        subject = gettext("Confirm your signature: %(title)s") % {"title": ""}
        confirm = gettext("Confirm my signature")
    assert subject.strip() != "Confirm your signature:", "no Spanish catalog"
    assert page.get_by_role("heading", level=1).inner_text() == check_email
    assert SPANISH["title"] in page.locator("main").inner_text()

    # 3. The email, in Spanish.
    page.goto(f"{base_url}/dev/mail")
    links = page.locator('a[href*="/verify/"]')
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while links.count() == 0:
        assert time.monotonic() < deadline, "no confirmation email"
        time.sleep(0.5)
        page.reload()
    mail = page.locator("article.mail").first
    assert subject.strip() in mail.locator("h2").inner_text()
    _screenshot(page, "spanish-02-mail")

    # 4. Confirm: counted once, on the Spanish page and the English one.
    links.first.click()
    page.wait_for_url("**/verify/**")
    assert SPANISH["title"] in page.locator("main").inner_text()
    page.get_by_role("button", name=confirm).click()
    page.wait_for_url("**/letters/ice-out#thanks")
    assert page.locator("h1").inner_text() == SPANISH["title"]
    assert _count(page) == "1"
    _screenshot(page, "spanish-03-thanks")
    english.reload()
    assert english.locator("h1").inner_text().startswith("ICE out")
    assert _count(english) == "1"
    with database.read() as session:
        assert session.scalars(select(Signature.locale)).all() == ["es"]
    context.close()
    english.context.close()


@pytest.mark.parametrize(("width", "height"), [(390, 844), (320, 640)])
def test_count_goal_and_sign_button_lead_on_a_phone(
    browser: Browser, live: Live, width: int, height: int
) -> None:
    base_url = live.base_url
    context = browser.new_context(viewport={"width": width, "height": height}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{base_url}/letters/ice-out")
    page.wait_for_load_state("networkidle")
    header = page.locator("img.header-image")
    assert header.get_attribute("alt") == ""
    assert page.evaluate("document.querySelector('img.header-image').naturalWidth") == 1600
    for selector in (".tally-count", "progress", ".goal", ".sign-jump"):
        box = page.locator(selector).first.bounding_box()
        assert box is not None, selector
        assert box["y"] + box["height"] <= height, f"{selector} is below the fold at {width}px"
    # The accent colour from its stylesheet, on the sign button.
    background = page.evaluate(
        "getComputedStyle(document.querySelector('.sign-jump')).backgroundColor"
    )
    assert background == "rgb(122, 31, 92)"
    scroll_width, inner_width = page.evaluate(
        "[document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= inner_width
    page.screenshot(path=str(ARTIFACTS / f"looks-phone-{width}.png"))
    # Printed: no navigation, no form; the text and the count.
    page.emulate_media(media="print")
    assert page.locator(".site-header nav").is_hidden()
    assert page.locator("form[action$='/sign']").is_hidden()
    assert page.locator(".letter-body").is_visible() and page.locator(".tally-count").is_visible()
    context.close()


def test_the_looks_pages_and_the_themed_letter_pass_axe(browser: Browser, live: Live) -> None:
    """The letter page with its header image and accent colour, in both languages, and
    the dashboard's looks and translation pages: no axe-core violation (WCAG 2.2 AA)."""
    base_url = live.base_url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    name, value = live.editor_cookie
    context.add_cookies([{"name": name, "value": value, "url": base_url}])
    page = context.new_page()
    for path in (
        "/letters/ice-out?lang=en",
        "/letters/ice-out?lang=es",
        "/?lang=es",
        "/dashboard/letters/ice-out/looks",
        "/dashboard/letters/ice-out/translations/es",
    ):
        response = page.goto(f"{base_url}{path}")
        assert response is not None and response.status == 200, path
        assert axe_violations(page) == [], path
        if path.startswith("/dashboard/"):
            _screenshot(page, "looks-" + path.rsplit("/", 1)[-1])
    # The forms' errors too.
    page.goto(f"{base_url}/dashboard/letters/ice-out/looks")
    page.locator("#f-accent_color").fill("#ffff00")
    page.locator("form[action$='/looks'] button[value=save]").click()
    page.wait_for_load_state()
    assert "#ffff00" in page.locator("#f-accent_color-error").inner_text()
    assert axe_violations(page) == []
    context.close()
