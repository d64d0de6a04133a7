"""Nothing is wider than a 320 px screen (WCAG 1.4.10, Reflow), whatever people type.

A 60-character name, a URL given as an organization, a letter title or a word in a
letter longer than the screen is wide: each must wrap, not widen the page. Tables in a
letter are the one thing allowed to be wider, inside their own box that scrolls.

Chromium (Playwright) at 320 x 640 CSS px against the real app in uvicorn, seeded
through the services (letters) and the signing factories (confirmed signers). Full-page
screenshots go to `test-artifacts/narrow-*.png` for a human to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.config import Settings
from app.db import Database
from app.letters.models import LetterStatus
from app.letters.schemas import LetterCreate
from app.letters.service import create_letter
from app.signatures.service import verify_signature
from tests.support.browser import axe_violations, chromium
from tests.support.config import REPO_ROOT, make_settings
from tests.support.factories import sign, verify_token
from tests.support.live import serve
from tests.support.ports import free_socket

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

WIDTH = 320
SLUG = "long-words"
ARTIFACTS = REPO_ROOT / "test-artifacts"

LONG_NAME = "Wolfeschlegelsteinhausenbergerdorffvoralternwarengewissenhaft"  # 61 letters
LONG_URL = "https://www.example-organization-with-a-very-long-name.org/about/our-people/team"
LONG_WORD = "Donaudampfschifffahrtsgesellschaftskapitänswitwenrentenversicherung"

LETTER = LetterCreate(
    slug=SLUG,
    title=f"A letter whose title holds {LONG_WORD}",
    summary=f"See {LONG_URL} for the {LONG_WORD} details.",
    body_markdown=f"""\
## {LONG_WORD}

We ask {LONG_WORD} to act. Read <{LONG_URL}> and [{LONG_URL}]({LONG_URL}).

> {LONG_WORD} {LONG_URL}

Inline `{LONG_URL}` code, and a block:

    {LONG_URL}?{LONG_WORD}={LONG_WORD}

| Company | Contract | Agency | Value | Source |
|---|---|---|---|---|
| Example Corporation | Data analytics platform | {LONG_WORD} | $10,000,000 | {LONG_URL} |
""",
    addressed_to=f"The {LONG_WORD} board",
    goal=1000,
    status=LetterStatus.OPEN,
)

SIGNERS: list[dict[str, Any]] = [
    {"name": LONG_NAME, "title": LONG_WORD, "organization": LONG_URL, "city": LONG_WORD},
    {"name": (LONG_NAME * 2)[:120], "organization": LONG_WORD},
    {"name": "Grace Hopper", "title": "Rear Admiral", "organization": LONG_URL},
]


@dataclass
class Site:
    base_url: str

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def _seed(database: Database, settings: Settings) -> None:
    with database.write() as session:
        letter = create_letter(session, data=LETTER)
        create_letter(
            session,
            data=LETTER.model_copy(update={"slug": "closed-long", "status": LetterStatus.CLOSED}),
        )
        for person in SIGNERS:
            pending = sign(session, letter, settings, **person)
            verify_signature(session, token=verify_token(settings, pending), settings=settings)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("narrow")
    path = tmp_path / "narrow.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database.url, base_url=base_url, run_mail_worker=False)
    _seed(database, settings)
    try:
        with serve(sock, settings):
            yield Site(base_url)
    finally:
        database.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


PAGES = {
    "home": ("/", 200),
    "letter": (f"/letters/{SLUG}", 200),
    "letter-closed": ("/letters/closed-long", 200),
    "signers": (f"/letters/{SLUG}/signers", 200),
    "check-email": (f"/letters/{SLUG}/check-email", 200),
    "error-not-found": (f"/letters/{'x' * 80}", 404),
    "error-bad-link": ("/verify/not-a-real-token", 400),
}

# Elements that stick out past the right edge of the screen, outside a box that scrolls
# (for the failure message: scrollWidth says that something does, not what).
WIDE_ELEMENTS = """(width) => {
  const wide = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest(".table-scroll")) continue;
    const box = el.getBoundingClientRect();
    if (box.right > width + 0.5) {
      wide.push(`${el.tagName.toLowerCase()}.${el.className}: right=${Math.round(box.right)}`);
    }
  }
  return wide.slice(0, 10);
}"""


def _open(page: Page, site: Site, path: str, status: int) -> None:
    response = page.goto(site.url(path))
    assert response is not None
    assert response.status == status, f"{path}: HTTP {response.status}"
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("name", list(PAGES))
def test_nothing_is_wider_than_a_320px_screen(browser: Browser, site: Site, name: str) -> None:
    path, status = PAGES[name]
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 640}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        _open(page, site, path, status)
        if name in ("letter", "signers"):
            assert LONG_NAME in page.locator("main").inner_text(), "the signers are shown"
        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"narrow-{name}.png"), full_page=True)
        assert scroll_width <= WIDTH, page.evaluate(WIDE_ELEMENTS, WIDTH)
        assert inner_width == WIDTH, "the phone zoomed out to fit something wide"
    finally:
        context.close()


def test_a_wide_table_scrolls_inside_its_own_box(browser: Browser, site: Site) -> None:
    context = browser.new_context(viewport={"width": WIDTH, "height": 640}, is_mobile=True)
    page = context.new_page()
    try:
        _open(page, site, f"/letters/{SLUG}", 200)
        box = page.locator(".letter-body .table-scroll")
        scroll_width, client_width, right = box.evaluate(
            "el => [el.scrollWidth, el.clientWidth, el.getBoundingClientRect().right]"
        )
        assert scroll_width > client_width, "the table fits: the test data is too narrow"
        assert right <= WIDTH
        # A keyboard can reach the box to scroll it; the header row reads as headers.
        assert box.get_attribute("tabindex") == "0"
        assert page.locator(".letter-body th").count() == 5
        weight = page.locator(".letter-body th").first.evaluate(
            "el => getComputedStyle(el).fontWeight"
        )
        assert int(weight) >= 600
    finally:
        context.close()


@pytest.mark.parametrize("name", ["letter", "signers"])
def test_the_long_words_pages_pass_axe_at_320px(browser: Browser, site: Site, name: str) -> None:
    """The scrolling table box, the styled table and the wrapped words, under axe-core's
    WCAG 2.x A and AA rules (as test_accessibility.py runs them on the demo pages)."""
    context = browser.new_context(viewport={"width": WIDTH, "height": 640}, is_mobile=True)
    page = context.new_page()
    try:
        _open(page, site, *PAGES[name])
        violations = [
            (v["id"], [n["html"][:120] for n in v["nodes"]]) for v in axe_violations(page)
        ]
        assert violations == []
    finally:
        context.close()
