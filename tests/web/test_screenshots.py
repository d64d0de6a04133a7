"""The main pages at a phone's and a desktop's width, photographed and checked.

Chromium opens each page at 390 x 844 (a phone, with touch) and 1280 x 800 (a laptop)
on the site test_accessibility.py seeds (the demo letters, a letter with every part of
the public page, the dashboard signed in as an admin). A screenshot of the first
screen and one of the whole page go to `test-artifacts/screen-<page>-<width>.png` (and
`-full.png`) for a human to look at, and the test checks what a person sees first:
nothing scrolls sideways, the page's heading is on the first screen, and on the letter
and signer pages so is the count; the screenshot is a picture (many colours, no one
colour covering nearly all of it), not a blank or failed render.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from tests.support.config import REPO_ROOT
from tests.web.test_accessibility import (  # noqa: F401 - the seeded site and Chromium fixtures
    OURS,
    SLUG,
    Site,
    chromium,
    site,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENS: dict[str, dict[str, Any]] = {
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
    "desktop": {"viewport": {"width": 1280, "height": 800}},
}
COUNT = ".tally-count"
SIGNERS_COUNT = "main p:has-text('confirmed signature')"

# name: (path, what must be on the first screen besides the heading, signed in)
PAGES: dict[str, tuple[str, str | None, bool]] = {
    "home": ("/", None, False),
    "letter": (f"/letters/{SLUG}", COUNT, False),
    "letter-ours": (f"/letters/{OURS}", COUNT, False),
    "signers": (f"/letters/{SLUG}/signers", SIGNERS_COUNT, False),
    "dashboard": ("/dashboard", None, True),
    "dashboard-letter": (f"/dashboard/letters/{OURS}", None, True),
}

ON_FIRST_SCREEN = """(el) => {
  const box = el.getBoundingClientRect();
  return box.width > 0 && box.height > 0 && box.top >= 0 && box.left >= 0
    && box.bottom <= innerHeight && box.right <= innerWidth;
}"""


@pytest.fixture(scope="module")
def tabs(chromium: Browser) -> Iterator[dict[str, Page]]:  # noqa: F811
    contexts = {screen: chromium.new_context(**options) for screen, options in SCREENS.items()}
    try:
        yield {screen: context.new_page() for screen, context in contexts.items()}
    finally:
        for context in contexts.values():
            context.close()


def _is_a_picture(png: bytes) -> tuple[bool, str]:
    """Whether a screenshot shows something: a page has text and colours, a blank or a
    failed render is one colour (or nearly)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = image.width * image.height
    colours = image.getcolors(maxcolors=pixels) or []
    most = max(count for count, _ in colours)
    verdict = len(colours) >= 16 and most / pixels < 0.97
    return verdict, f"{len(colours)} colours, the commonest on {most / pixels:.1%} of it"


@pytest.mark.parametrize("screen", list(SCREENS))
@pytest.mark.parametrize("name", list(PAGES))
def test_first_screen(tabs: dict[str, Page], site: Site, name: str, screen: str) -> None:  # noqa: F811
    path, first, signed_in = PAGES[name]
    page = tabs[screen]
    page.context.clear_cookies()
    if signed_in:
        found = site.organizer
        page.context.add_cookies(
            [{"name": found.cookie_name, "value": found.cookie, "url": site.base_url}]
        )
    response = page.goto(site.url(path))
    assert response is not None and response.status == 200, path
    assert page.url == site.url(path), "redirected (not signed in?)"
    page.wait_for_load_state("networkidle")

    width = SCREENS[screen]["viewport"]["width"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = page.screenshot(path=str(ARTIFACTS / f"screen-{name}-{width}.png"))
    page.screenshot(path=str(ARTIFACTS / f"screen-{name}-{width}-full.png"), full_page=True)

    scroll_width, inner_width = page.evaluate(
        "[document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert (scroll_width, inner_width) == (width, width), "the page scrolls sideways or zooms out"
    heading = page.locator("main h1")
    assert heading.count() == 1
    assert heading.evaluate(ON_FIRST_SCREEN), f"the heading is below the first {screen} screen"
    if first is not None:
        shown = page.locator(first).first
        assert shown.evaluate(ON_FIRST_SCREEN), f"{first} is below the first {screen} screen"
    picture, why = _is_a_picture(shot)
    assert picture, f"the screenshot looks blank: {why}"


def test_a_blank_screenshot_is_caught() -> None:
    """The picture check can fail: one colour, or a page almost all of one colour."""
    blank = io.BytesIO()
    Image.new("RGB", (390, 844), "white").save(blank, format="PNG")
    assert not _is_a_picture(blank.getvalue())[0]
    speck = Image.new("RGB", (390, 844), "white")
    for x in range(20):
        speck.putpixel((x, 0), (x * 10, 0, 0))
    almost = io.BytesIO()
    speck.save(almost, format="PNG")
    assert not _is_a_picture(almost.getvalue())[0]
