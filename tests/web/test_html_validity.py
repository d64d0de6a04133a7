"""Every page is valid HTML: the W3C Nu HTML Checker (npm `vnu-jar`) finds no error.

The pages are the ones test_accessibility.py runs axe on, in the states it brings them
to (the same seeded site: every public page, the letter in its states, a form answered
with errors, the confirm, manage and unsubscribe pages, the error pages, the dev mailbox,
and the dashboard signed in as an admin). Chromium opens each as a person would; the
HTML the server sent for the page (the document's own response, not the browser's
re-serialized DOM, which would hide parse errors) is written to a file, and vnu checks
all the files in one run: one JVM start takes seconds. The test fails listing every
error, page by page. The files stay in `test-artifacts/html/` to look at.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from tests.support.config import REPO_ROOT
from tests.support.tools import vnu_command, vnu_errors
from tests.web.test_accessibility import (  # noqa: F401 - the seeded site and Chromium fixtures
    PAGES,
    VIEWPORTS,
    Site,
    chromium,
    site,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUT = REPO_ROOT / "test-artifacts" / "html"


def _document_html(page: Page, site: Site, name: str) -> str:  # noqa: F811
    """Brings the page to its state (PAGES[name]) and returns the HTML the server sent
    for the document the tab now shows."""
    documents: list[Response] = []

    def record(response: Response) -> None:
        if response.request.is_navigation_request() and response.frame == page.main_frame:
            documents.append(response)

    page.on("response", record)
    try:
        PAGES[name](page, site)
        page.wait_for_load_state()
    finally:
        page.remove_listener("response", record)
    assert documents, f"{name}: no page was loaded"
    last = documents[-1]
    assert last.url.startswith(site.base_url), last.url
    assert "text/html" in (last.headers.get("content-type") or ""), f"{name}: {last.headers}"
    return last.text()


CONTROL = (
    '<!doctype html><html lang="en"><head><title>Control</title></head>'
    '<body><p id="a">One</p><p id="a">Two</p></div></body></html>'
)
"""A page with two errors (a duplicate id, a stray end tag), checked with the others: the
run must report it, so a clean report means the pages were really checked."""


def test_every_page_is_valid_html(chromium: Browser, site: Site) -> None:  # noqa: F811
    vnu_command()  # skips (fails in CI) before the pages are opened if vnu cannot run
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    control = OUT / "_control.html"
    control.write_text(CONTROL, encoding="utf-8")
    files = [control]
    context = chromium.new_context(**VIEWPORTS["desktop"])
    try:
        for name in PAGES:
            # A tab as a new one is: no cookie (a flash, a session) carries over.
            context.clear_cookies()
            page = context.new_page()
            html = _document_html(page, site, name)
            page.close()
            path = OUT / f"{name}.html"
            path.write_text(html, encoding="utf-8")
            files.append(path)
    finally:
        context.close()

    errors = vnu_errors(files)
    caught = " ".join(error.message for error in errors if error.file == control.name)
    assert "Duplicate ID" in caught and "Stray end tag" in caught, "vnu checked nothing?"
    errors = [error for error in errors if error.file != control.name]
    if errors:
        pytest.fail(f"{len(errors)} HTML errors:\n" + "\n".join(map(str, errors)), pytrace=False)
