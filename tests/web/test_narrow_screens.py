"""Nothing is wider than a 320 px screen (WCAG 1.4.10, Reflow), whatever people type.

A 60-character name, a URL given as an organization, a letter title or a word in a
letter longer than the screen is wide: each must wrap, not widen the page. Tables in a
letter are the one thing allowed to be wider, inside their own box that scrolls.

The organizers' pages too: the dashboard's tables (letters, signatures, team, audit log,
organizers) hold the same long words, and on a phone each row becomes a card rather
than a column squeezed to one letter a line.

Chromium (Playwright) at 320 x 640 CSS px against the real app in uvicorn, seeded
through the services (letters, moderation, delivery) and the signing factories
(confirmed signers); the dashboard's pages in a browser signed in as an admin with a
session cookie the services made. Full-page screenshots go to
`test-artifacts/narrow-*.png` for a human to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.config import Settings
from app.db import Database, utcnow
from app.letters.delivery import mark_delivered, record_response
from app.letters.models import FieldRule, LetterStatus
from app.letters.schemas import LetterCreate, LetterFields
from app.letters.service import create_letter, current_fields, edit_letter, invite_to_team
from app.organizers.models import Role
from app.organizers.service import Actor, start_session
from app.organizers.web import session_cookie_name
from app.signatures.moderation import set_comment_approved
from app.signatures.service import verify_signature
from tests.support.browser import axe_violations, chromium
from tests.support.config import REPO_ROOT, make_settings
from tests.support.factories import sign, sign_and_confirm, verify_token
from tests.support.live import serve
from tests.support.organizers import make_organizer
from tests.support.ports import free_socket

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

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
    from_name=f"The {LONG_WORD} group",
    from_url=LONG_URL,
    field_comment=FieldRule.OPTIONAL,
    status=LetterStatus.OPEN,
)
ADMIN = f"{LONG_NAME.lower()}@{LONG_URL.split('/')[2]}"

SIGNERS: list[dict[str, Any]] = [
    {"name": LONG_NAME, "title": LONG_WORD, "organization": LONG_URL, "city": LONG_WORD},
    {"name": (LONG_NAME * 2)[:120], "organization": LONG_WORD},
    {"name": "Grace Hopper", "title": "Rear Admiral", "organization": LONG_URL},
]


@dataclass
class Site:
    base_url: str
    cookie: tuple[str, str]
    """The admin's session cookie (name, value), for the dashboard's pages."""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def _seed(database: Database, settings: Settings) -> tuple[str, str]:
    """The letters and signers, and everything the dashboard shows about them: a long
    comment, approved; an edit after signatures; delivery and a response; a team member
    and an admin with long addresses. Returns the admin's session cookie."""
    with database.write() as session:
        letter = create_letter(session, data=LETTER)
        create_letter(
            session,
            data=LETTER.model_copy(update={"slug": "closed-long", "status": LetterStatus.CLOSED}),
        )
        for person in SIGNERS:
            pending = sign(session, letter, settings, **person)
            verify_signature(session, token=verify_token(settings, pending), settings=settings)
        admin = make_organizer(session, ADMIN, is_admin=True)
        actor = Actor(admin)
        commented = sign_and_confirm(
            session, letter, settings, name=LONG_NAME, organization=LONG_URL,
            comment=f"{LONG_WORD} {LONG_URL}", comment_public_ok=True, contact_ok=True,
        )  # fmt: skip
        assert commented.position is not None
        set_comment_approved(
            session, actor=actor, letter_id=letter.id, position=commented.position, approved=True
        )
        fields = current_fields(letter)
        fields["body_markdown"] = f"{LETTER.body_markdown}\n{LONG_WORD} {LONG_URL}\n"
        assert edit_letter(session, letter=letter, data=LetterFields(**fields), actor=actor)
        invite_to_team(
            session, letter=letter, email=f"{LONG_WORD.lower()}@example.org", role=Role.EDITOR,
            actor=actor, settings=settings,
        )  # fmt: skip
        mark_delivered(session, letter=letter, actor=actor, on=utcnow().date())
        record_response(
            session, letter=letter, actor=actor, on=utcnow().date(),
            text=f"{LONG_WORD}\n\n{LONG_URL}", link=f"{LONG_URL}/{LONG_WORD}",
        )  # fmt: skip
        value = start_session(session, organizer=admin, settings=settings)
    return session_cookie_name(settings), value


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("narrow")
    path = tmp_path / "narrow.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database.url, base_url=base_url, run_mail_worker=False)
    cookie = _seed(database, settings)
    try:
        with serve(sock, settings):
            yield Site(base_url, cookie)
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
    "changes": (f"/letters/{SLUG}/changes", 200),
    "login": ("/login", 200),
    "embed": (f"/letters/{SLUG}/embed", 200),
    "privacy": ("/privacy", 200),
}
DASHBOARD = f"/dashboard/letters/{SLUG}"
DASHBOARD_PAGES = {
    "dashboard": ("/dashboard", 200),
    "dashboard-new": ("/dashboard/letters/new", 200),
    "dashboard-overview": (DASHBOARD, 200),
    "dashboard-edit": (f"{DASHBOARD}/edit", 200),
    "dashboard-signatures": (f"{DASHBOARD}/signatures?status=all", 200),
    "dashboard-bulk-preview": (f"{DASHBOARD}/signatures/bulk?domain=example.org", 200),
    "dashboard-updates": (f"{DASHBOARD}/updates", 200),
    "dashboard-delivery": (f"{DASHBOARD}/delivery", 200),
    "dashboard-team": (f"{DASHBOARD}/team", 200),
    "dashboard-audit": (f"{DASHBOARD}/audit", 200),
    "dashboard-organizers": ("/dashboard/organizers", 200),
    "dashboard-packet": (f"{DASHBOARD}/packet", 200),
    "dashboard-looks": (f"{DASHBOARD}/looks", 200),
    "dashboard-translation": (f"{DASHBOARD}/translations/es", 200),
}
PAGES.update(DASHBOARD_PAGES)

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


# Table cells narrower than a line of words: on a phone a dashboard table's rows stack
# as cards, each cell a full-width line, instead of columns a few letters wide.
SQUEEZED_CELLS = """(least) => [
  ...document.querySelectorAll(".dashboard-table td, .moderation-table td"),
].filter(td => td.getBoundingClientRect().width < least)
  .map(td => td.innerText.slice(0, 40))"""


@pytest.fixture(scope="module")
def phone(browser: Browser) -> Iterator[dict[str, Page]]:
    """A phone's browser with one tab, shared by the pages' tests (opening a tab costs
    more than loading a page); `_phone_tab` gives each test a clean one."""
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 640}, is_mobile=True, has_touch=True
    )
    try:
        yield {"tab": context.new_page()}
    finally:
        context.close()


def _phone_tab(phone: dict[str, Page], site: Site, name: str) -> Page:
    """The phone's tab as a new one is (no cookies, no HTTP cache, a blank page; a new
    tab if a failed test closed it), signed in as the admin for the dashboard's pages.
    The app stores nothing else in a browser (no localStorage or service worker)."""
    page = phone["tab"]
    if page.is_closed():
        page = phone["tab"] = page.context.new_page()
    if not getattr(page, "_narrow_no_cache", False):
        page.context.new_cdp_session(page).send("Network.setCacheDisabled", {"cacheDisabled": True})
        page._narrow_no_cache = True  # type: ignore[attr-defined]
    context: BrowserContext = page.context
    context.clear_cookies()
    page.goto("about:blank")
    assert context.cookies() == []
    if name in DASHBOARD_PAGES:
        cookie_name, cookie_value = site.cookie
        context.add_cookies([{"name": cookie_name, "value": cookie_value, "url": site.base_url}])
    return page


def _open(page: Page, site: Site, path: str, status: int) -> None:
    response = page.goto(site.url(path))
    assert response is not None
    assert response.status == status, f"{path}: HTTP {response.status}"
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("name", list(PAGES))
def test_nothing_is_wider_than_a_320px_screen(
    phone: dict[str, Page], site: Site, name: str
) -> None:
    path, status = PAGES[name]
    page = _phone_tab(phone, site, name)
    _open(page, site, path, status)
    if name in ("letter", "signers", "dashboard-signatures", "dashboard-packet"):
        assert LONG_NAME in page.locator("main").inner_text(), "the signers are shown"
    if name in DASHBOARD_PAGES:
        assert not page.url.endswith("/login"), "the session cookie did not sign in"
    scroll_width, inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"narrow-{name}.png"), full_page=True)
    assert scroll_width <= WIDTH, page.evaluate(WIDE_ELEMENTS, WIDTH)
    assert inner_width == WIDTH, "the phone zoomed out to fit something wide"
    assert page.evaluate(SQUEEZED_CELLS, WIDTH - 80) == [], "a table's rows should stack"


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


@pytest.mark.parametrize(
    "name", ["letter", "signers", "dashboard", "dashboard-signatures", "dashboard-audit"]
)
def test_the_long_words_pages_pass_axe_at_320px(
    phone: dict[str, Page], site: Site, name: str
) -> None:
    """The scrolling table box, the styled table and the wrapped words, and the
    dashboard's tables as cards, under axe-core's WCAG 2.x A and AA rules (as
    test_accessibility.py runs them on the demo pages)."""
    page = _phone_tab(phone, site, name)
    _open(page, site, *PAGES[name])
    violations = [(v["id"], [n["html"][:120] for n in v["nodes"]]) for v in axe_violations(page)]
    assert violations == []
