"""Accessibility of every page a person sees: axe-core in Chromium, and the keyboard.

axe-core (the copy bundled in axe-playwright-python, so nothing is fetched from the
network) runs with the WCAG 2.0, 2.1 and 2.2 A and AA rules on each page, on a desktop
and on a 320 px phone (where nothing may scroll sideways), and must find nothing. A
keyboard test walks the letter page with Tab: skip link first, then every field of the
sign form in order, each with a visible focus indicator. test_html_validity.py runs the
Nu HTML Checker on the same pages.

The app runs once per module in uvicorn (same approach as test_browser.py), seeded with
the demo letters, a closed letter, public and anonymous verified signers, a pending
signature (for the confirm page) and its email in the dev mailbox; and, for the
organizers' pages, an admin who owns a letter with every part the public page can show
(a from line, an edited text, a response, milestones, approved comments), a letter that
hides its signer list, a sign-in link and an unsubscribe link. The browser signs in with
a session cookie made by the services. Full-page screenshots of the pages a new organizer
sees first go to `test-artifacts/a11y-*.png` for a human to look at.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image
from sqlalchemy import select

from app.config import Settings
from app.db import Database, utcnow
from app.letters.accent import set_accent_color
from app.letters.delivery import mark_delivered, record_response
from app.letters.demo import create_demo_letters
from app.letters.images import set_header_image
from app.letters.models import FieldRule, Letter, LetterStatus
from app.letters.schemas import LetterCreate, LetterFields
from app.letters.service import create_letter, current_fields, edit_letter, invite_to_team
from app.mail.backends import DevMailbox
from app.mail.worker import deliver_due
from app.organizers.logins import login_token, request_login_link, send_login_links
from app.organizers.models import LoginLink, Role
from app.organizers.service import Actor, start_session
from app.organizers.web import session_cookie_name
from app.signatures.manage import manage_url
from app.signatures.models import RemovalReason
from app.signatures.moderation import remove_signature, set_comment_approved, set_hidden
from app.signatures.service import notify_pending, verify_signature
from app.signlog.sequencer import sequence_all
from app.updates.schemas import UpdateIn
from app.updates.service import queue_update, unsubscribe_url
from tests.support.browser import axe_violations
from tests.support.browser import chromium as launch_chromium
from tests.support.config import REPO_ROOT, make_settings, skip_or_fail
from tests.support.factories import make_letter, sign, sign_and_confirm, verify_token
from tests.support.live import serve
from tests.support.organizers import make_organizer
from tests.support.ports import free_socket
from tests.web.flows import expired_token

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

SLUG = "ice-out"
OURS = "fund-the-libraries"  # the organizers' letter: every part of the public page
QUIET = "quiet-letter"  # a letter that does not publish its signers
ADMIN = "admin@example.org"
ARTIFACTS = REPO_ROOT / "test-artifacts"
VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    # The narrowest screen pages must fit (WCAG 1.4.10 Reflow: 320 CSS px).
    "phone": {"viewport": {"width": 320, "height": 640}, "is_mobile": True, "has_touch": True},
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
    organizer: Organizers

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@dataclass
class Organizers:
    """What the organizers' pages need: the admin's session cookie, a sign-in link's
    token and a signer's unsubscribe path."""

    cookie_name: str
    cookie: str
    login_token: str
    unsubscribe_path: str
    manage_path: str


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
    # The signature log: a signed checkpoint (the check-count page and the letter's line).
    assert sequence_all(database, settings) >= len(people)
    return tokens


OUR_BODY = """\
We ask the **City Council** to keep every branch library open six days a week.

## Why

- Libraries are the last free indoor public space.
- Closing on Saturdays hurts working families most.

| Branch | Days open now | Days we ask for |
|---|---|---|
| Central | 6 | 6 |
| Eastside | 3 | 6 |
"""


def _header_png() -> bytes:
    """A header image as an organizer uploads one: a photo-like gradient, 1200 x 400."""
    image = Image.linear_gradient("L").resize((1200, 400)).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _seed_organizers(database: Database, settings: Settings) -> Organizers:
    """The admin (owner of OURS, with an editor beside them), OURS with every part of
    the public page, QUIET, a sign-in link for the admin and an unsubscribe link."""
    with database.write() as session:
        admin = make_organizer(session, ADMIN, is_admin=True)
        actor = Actor(admin)
        letter = create_letter(
            session,
            data=LetterCreate(
                slug=OURS,
                title="Keep our libraries open",
                summary="Six days a week, in every branch.",
                body_markdown=OUR_BODY,
                addressed_to="The City Council",
                goal=3,
                from_name="Friends of the Library",
                from_url="https://library.example.org/friends",
                field_comment=FieldRule.OPTIONAL,
                status=LetterStatus.OPEN,
            ),
            actor=actor,
        )
        invite_to_team(
            session,
            letter=letter,
            email="editor@example.org",
            role=Role.EDITOR,
            actor=actor,
            settings=settings,
        )
        # Its looks: an accent colour and a header image (the page's contrast with them).
        assert set_accent_color(session, letter=letter, value="#7a1f5c", actor=actor)
        set_header_image(session, letter=letter, data=_header_png(), actor=actor)
        comment = {"comment_public_ok": True, "contact_ok": True}
        people: list[dict[str, Any]] = [
            {"name": "Grace Hopper", "organization": "Readers United", **comment,
             "comment": "I learned to read in the Eastside branch."},
            {"name": "Alan Turing", "city": "Manchester", **comment,
             "comment": "My children do their homework there on Saturdays."},
            {"name": "Anonymous Reader", "display": "anonymous", "comment": "Private note."},
            {"name": "Spam Bot", "email": "bot1@spam.example", "organization": "Buy now"},
            {"name": "Quiet One", "organization": "Readers United"},
        ]  # fmt: skip
        signed = [sign_and_confirm(session, letter, settings, **person) for person in people]
        for signature in signed[:2]:
            assert signature.position is not None
            set_comment_approved(
                session, actor=actor, letter_id=letter.id, position=signature.position,
                approved=True,
            )  # fmt: skip
        assert signed[3].position is not None and signed[4].position is not None
        remove_signature(
            session, actor=actor, letter_id=letter.id, position=signed[3].position,
            reason=RemovalReason.BOT,
        )  # fmt: skip
        set_hidden(
            session, actor=actor, letter_id=letter.id, position=signed[4].position, hidden=True
        )
        fields = current_fields(letter)
        fields["body_markdown"] = OUR_BODY.replace("six days", "seven days")
        assert edit_letter(
            session, letter=letter, data=LetterFields(**fields), actor=actor
        ).new_version
        sign_and_confirm(
            session, letter, settings, name="Late Signer", organization="Library Staff"
        )
        mark_delivered(session, letter=letter, actor=actor, on=utcnow().date())
        record_response(
            session,
            letter=letter,
            actor=actor,
            on=utcnow().date(),
            text="Thank you for your letter.\n\nThe Council will vote on the budget in May.",
            link="https://council.example.org/responses/libraries",
        )
        queue_update(
            session,
            letter=letter,
            actor=actor,
            data=UpdateIn(subject="We delivered the letter", body="It went to the Council."),
        )
        make_letter(session, slug=QUIET, title="A letter with a private list", show_signers=False)
        unsubscribe = unsubscribe_url(settings, signed[0].public_id or "")
        manage = manage_url(settings, signed[0].public_id or "")
        cookie = start_session(session, organizer=admin, settings=settings)
        # A sign-in link for the admin, as the worker sends it.
        request_login_link(session, email=ADMIN)
        assert send_login_links(session, settings=settings) == 1
        link_id = session.scalars(
            select(LoginLink.id).where(LoginLink.organizer_id == admin.id)
        ).one()
    return Organizers(
        cookie_name=session_cookie_name(settings),
        cookie=cookie,
        login_token=login_token(settings, link_id),
        unsubscribe_path=unsubscribe.removeprefix(settings.base_url),
        manage_path=manage.removeprefix(settings.base_url),
    )


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
    organizers = _seed_organizers(database, settings)
    try:
        with serve(sock, settings):
            yield Site(base_url, pending, verified, expired, closed_slug, organizers)
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


def _letter_with_errors(slug: str) -> Callable[[Page, Site], None]:
    def go(page: Page, site: Site) -> None:
        _open(f"/letters/{slug}")(page, site)
        page.locator("#f-email").fill("not-an-email")
        with page.expect_response(lambda r: r.url.endswith(f"/letters/{slug}/sign")) as answer:
            page.locator("form[action$='/sign'] button[type=submit]").click()
        assert answer.value.status == 422
        page.wait_for_load_state()
        assert page.locator("#f-name-error").is_visible()
        assert page.locator("#f-email-error").is_visible()
        assert page.title().startswith("Error:"), "a screen reader hears the failure first"

    return go


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


# --- The organizers' pages --------------------------------------------------------------


def _signed_in(go: Callable[[Page, Site], None]) -> Callable[[Page, Site], None]:
    """`go` in a browser signed in as the admin (who owns OURS)."""

    def signed_in(page: Page, site: Site) -> None:
        found = site.organizer
        page.context.add_cookies(
            [{"name": found.cookie_name, "value": found.cookie, "url": site.base_url}]
        )
        go(page, site)
        assert not page.url.endswith("/login"), "the session cookie did not sign in"

    return signed_in


def _dashboard(path: str, status: int = 200) -> Callable[[Page, Site], None]:
    return _signed_in(_open(path, status))


def _submit(page: Page, button: str, status: int) -> None:
    """Presses a form's button and waits for the page it answers with."""
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.locator(button).first.click()
    assert answer.value.status == status, f"{answer.value.url}: HTTP {answer.value.status}"
    page.wait_for_load_state()


@_signed_in
def _new_letter_with_errors(page: Page, site: Site) -> None:
    _open("/dashboard/letters/new")(page, site)
    page.locator("#f-slug").fill("Not A Slug")
    page.locator("#f-goal").fill("0")
    _submit(page, "button[value=save]", 422)
    assert page.locator("#f-title-error").is_visible()
    assert page.locator("#f-slug-error").is_visible()
    assert page.title().startswith("Error:")


@_signed_in
def _new_letter_preview(page: Page, site: Site) -> None:
    _open("/dashboard/letters/new")(page, site)
    page.locator("#f-title").fill("Open the pools in summer")
    page.locator("#f-body").fill(OUR_BODY)
    _submit(page, "button[value=preview]", 200)
    assert page.locator(".preview .letter-body table").count() == 1
    assert page.locator("#f-body").input_value().startswith("We ask the")


@_signed_in
def _signatures_filtered(page: Page, site: Site) -> None:
    _open(f"/dashboard/letters/{OURS}/signatures?status=all&organization=Readers")(page, site)
    assert page.locator(".moderation-table tbody tr").count() == 2


@_signed_in
def _bulk_preview(page: Page, site: Site) -> None:
    _open(f"/dashboard/letters/{OURS}/signatures/bulk?organization=Readers")(page, site)
    assert page.locator(".bulk-confirm button.danger").is_visible()


@_signed_in
def _updates_preview(page: Page, site: Site) -> None:
    _open(f"/dashboard/letters/{OURS}/updates")(page, site)
    page.locator("#f-subject").fill("The vote is on 12 May")
    page.locator("#f-body").fill("Come to the **Council** meeting.\n\n- 6 pm\n- City Hall")
    _submit(page, "button[value=preview]", 200)
    assert page.locator(".update-preview-mail strong").count() >= 1


def _our_letter(page: Page, site: Site) -> None:
    _open(f"/letters/{OURS}")(page, site)
    main = page.locator("main")
    for part in (".from-line a", ".milestones", ".letter-response", ".edit-notice", ".comments"):
        assert main.locator(part).count() == 1, f"{part} is not on the page"


def _changes(page: Page, site: Site) -> None:
    _open(f"/letters/{OURS}/changes")(page, site)
    assert page.locator(".diff ins").count() >= 1


def _unsubscribe(page: Page, site: Site) -> None:
    _open(site.organizer.unsubscribe_path)(page, site)
    assert page.locator("form button[type=submit]").count() == 1


def _manage(page: Page, site: Site) -> None:
    _open(site.organizer.manage_path)(page, site)
    assert "Grace Hopper" in page.locator("main").inner_text()


def _login_link(page: Page, site: Site) -> None:
    _open(f"/login/{site.organizer.login_token}")(page, site)
    assert ADMIN in page.locator("main").inner_text()


ORGANIZER_PAGES: dict[str, Callable[[Page, Site], None]] = {
    "login": _open("/login"),
    "login-sent": _open("/login/sent"),
    "login-link": _login_link,
    "login-link-invalid": _open("/login/not-a-real-token", 400),
    "dashboard": _dashboard("/dashboard"),
    "new-letter": _dashboard("/dashboard/letters/new"),
    "new-letter-errors": _new_letter_with_errors,
    "new-letter-preview": _new_letter_preview,
    "overview": _dashboard(f"/dashboard/letters/{OURS}"),
    "overview-closed": _dashboard("/dashboard/letters/closed-letter"),
    "edit": _dashboard(f"/dashboard/letters/{OURS}/edit"),
    "signatures": _dashboard(f"/dashboard/letters/{OURS}/signatures"),
    "signatures-filtered": _signatures_filtered,
    "bulk": _dashboard(f"/dashboard/letters/{OURS}/signatures/bulk"),
    "bulk-preview": _bulk_preview,
    "updates": _dashboard(f"/dashboard/letters/{OURS}/updates"),
    "updates-preview": _updates_preview,
    "delivery": _dashboard(f"/dashboard/letters/{OURS}/delivery"),
    "team": _dashboard(f"/dashboard/letters/{OURS}/team"),
    "audit": _dashboard(f"/dashboard/letters/{OURS}/audit"),
    "activity": _dashboard(f"/dashboard/letters/{OURS}/activity"),
    "organizers": _dashboard("/dashboard/organizers"),
    "packet": _dashboard(f"/dashboard/letters/{OURS}/packet"),
    "our-letter": _our_letter,
    "our-letter-errors": _letter_with_errors(OURS),
    "changes": _changes,
    "our-signers": _open(f"/letters/{OURS}/signers"),
    "signers-not-public": _open(f"/letters/{QUIET}/signers"),
    "unsubscribe": _unsubscribe,
    "manage": _manage,
    "manage-invalid": _open("/signature/not-a-real-token", 400),
    "logout": _dashboard("/logout"),
    "looks": _dashboard(f"/dashboard/letters/{OURS}/looks"),
    "translation": _dashboard(f"/dashboard/letters/{OURS}/translations/es"),
}


PAGES: dict[str, Callable[[Page, Site], None]] = {
    "home": _open("/"),
    "letter": _open(f"/letters/{SLUG}"),
    "letter-errors": _letter_with_errors(SLUG),
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
    "privacy": _open("/privacy"),
    "embed": _open(f"/letters/{SLUG}/embed"),
    "letter-spanish": _open(f"/letters/{SLUG}?lang=es"),
    "check-count": _open(f"/letters/{SLUG}/log"),
    "receipt": _open("/receipt"),
    **ORGANIZER_PAGES,
}


def _report(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:160]}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def tabs(chromium: Browser) -> Iterator[dict[str, Page]]:
    """One browser context and tab per viewport, shared by the pages' tests: opening a
    tab costs more than loading a page. `_clean_tab` gives each test a clean one."""
    contexts = {
        viewport: chromium.new_context(**options) for viewport, options in VIEWPORTS.items()
    }
    try:
        yield {viewport: context.new_page() for viewport, context in contexts.items()}
    finally:
        for context in contexts.values():
            context.close()


def _clean_tab(tabs: dict[str, Page], viewport: str) -> Page:
    """The viewport's tab as a new one is: no cookies, no HTTP cache (so each test sees
    every request its page makes), on a blank page (a new tab in the same context if a
    failed test closed it). The app stores nothing else in a browser (no localStorage,
    sessionStorage or service worker)."""
    page = tabs[viewport]
    if page.is_closed():
        page = tabs[viewport] = page.context.new_page()
    if not getattr(page, "_a11y_no_cache", False):
        page.context.new_cdp_session(page).send("Network.setCacheDisabled", {"cacheDisabled": True})
        page._a11y_no_cache = True  # type: ignore[attr-defined]
    page.context.clear_cookies()
    page.goto("about:blank")
    assert page.context.cookies() == []
    return page


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("name", list(PAGES))
def test_no_axe_violations(tabs: dict[str, Page], site: Site, name: str, viewport: str) -> None:
    page = _clean_tab(tabs, viewport)
    requests: list[str] = []

    def record(request: Any) -> None:
        requests.append(request.url)

    page.on("request", record)
    try:
        PAGES[name](page, site)
        page.wait_for_load_state("networkidle")
        if name in ORGANIZER_PAGES:  # for a human to look at
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / f"a11y-{name}-{viewport}.png"
            page.screenshot(path=str(shot), full_page=True)
        violations = axe_violations(page)
        assert violations == [], f"{name} on {viewport}:\n{_report(violations)}"
        # Reflow (WCAG 1.4.10): nothing scrolls sideways.
        scroll_width, inner_width = page.evaluate(
            "[document.scrollingElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, f"{name} scrolls sideways on {viewport}"
        width = VIEWPORTS[viewport]["viewport"]["width"]
        assert inner_width == width, f"{name}: the {viewport} zoomed out to fit something wide"
        # axe came from the package, not from the network.
        assert all(url.startswith(site.base_url) for url in requests), requests
    finally:
        page.remove_listener("request", record)


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
