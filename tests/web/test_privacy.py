"""`/privacy` (D81): generated from the running configuration and the code's retention
constants; linked from every page's footer and from the sign form; no axe violations.

The page states no number of its own: a test changes settings and constants and sees
the page follow, and another checks that every number on the page is one of them."""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import jobs
from app.abuse import proof
from app.config import MailBackend, Settings
from app.letters import models as letter_models
from app.letters.models import LetterStatus
from app.mail import service as mail_service
from app.main import create_app
from app.privacy import privacy_facts
from tests.support.browser import axe_violations, chromium
from tests.support.config import make_settings
from tests.support.live import serve
from tests.support.ports import free_socket
from tests.web.flows import add_letter

REDIS_URL = os.environ.get("UNDERSIGNED_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _settings(tmp_path: Path, template: Path, **overrides: Any) -> Settings:
    path = tmp_path / "privacy.db"
    shutil.copy(template, path)
    return make_settings(tmp_path, f"sqlite:///{path}", **overrides)


def _page(settings: Settings) -> str:
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        response = client.get("/privacy")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def _article(html: str) -> str:
    """The page's own text (not the header and footer every page has), tags removed."""
    match = re.search(r"<article class=\"privacy\">(.*?)</article>", html, re.S)
    assert match, "no privacy article"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def _item(html: str, item_id: str) -> str:
    match = re.search(rf'<li id="{item_id}">(.*?)</li>', html, re.S)
    assert match, f"no item {item_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def test_the_defaults_as_the_page_states_them(tmp_path: Path, sqlite_template: Path) -> None:
    html = _page(_settings(tmp_path, sqlite_template, rate_limits=True))

    assert "The link works for 7 days" in _item(html, "pending")
    assert "by default 90 days" in _item(html, "contact")
    assert "deleted after 7 days" in _item(html, "outbox")
    assert "deleted after 7 days" in _item(html, "dev-mailbox")  # the test app's dev backend
    assert "capped at 5/hour." in _item(html, "mail-admin")
    assert "deleted after 30 days" in _item(html, "abuse-events")
    assert "in the memory of the server process" in _item(html, "rate-limits")
    assert "more than 120/minute sign requests" in _item(html, "proof-of-work")
    assert "remembered for 30 minutes" in _item(html, "proof-of-work")
    assert "keeps no access log" in _item(html, "access-log")
    assert "works for 15 minutes; a sign-in lasts 14 days" in _item(html, "who-organizers")
    assert "10 or 50" in _item(html, "badge")
    assert "last 10 minutes after you sign" in _item(html, "who-nobody")
    assert "overwritten in the database file" in _item(html, "erasure")  # SQLite


def test_changing_the_settings_changes_the_page(tmp_path: Path, sqlite_template: Path) -> None:
    html = _page(
        _settings(
            tmp_path,
            sqlite_template,
            verify_max_age_days=3,
            rate_limit_emails="2/hour",
            rate_limits=False,
            proof_of_work="always",
            access_log=True,
            organizer_session_days=1,
            mail_backend=MailBackend.SMTP,
        )
    )

    assert "The link works for 3 days" in _item(html, "pending")
    assert "capped at 2/hour." in _item(html, "mail-admin")
    assert "Rate limits are turned off" in _item(html, "rate-limits")
    proof_item = _item(html, "proof-of-work")
    assert "asks your browser for a small proof of work, computed" in proof_item
    assert "120/minute" not in proof_item  # not "auto": no threshold to name
    assert "client IP address" in _item(html, "access-log")
    assert "a sign-in lasts 1 day." in _item(html, "who-organizers")  # singular
    assert 'id="dev-mailbox"' not in html  # SMTP: no files of emails on this server

    off = _page(_settings(tmp_path, sqlite_template, proof_of_work="off"))
    assert _item(off, "proof-of-work") == "The sign form asks for no proof of work."


def test_redis_rate_limits_are_named_without_their_url(
    tmp_path: Path, sqlite_template: Path
) -> None:
    with_password = REDIS_URL.replace("redis://", "redis://:hunter2@", 1)
    facts = privacy_facts(_settings(tmp_path, sqlite_template, rate_limit_storage=with_password))
    assert facts.rate_limit_storage == "redis"  # the kind only: never the URL
    settings = _settings(tmp_path, sqlite_template, rate_limits=True, rate_limit_storage=REDIS_URL)
    html = _page(settings)
    item = _item(html, "rate-limits")
    assert "shared Redis store" in item
    assert REDIS_URL not in html and "6379" not in html


def test_changing_the_code_s_constants_changes_the_page(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "ABUSE_EVENT_RETENTION", timedelta(days=45))
    monkeypatch.setattr(mail_service, "SENT_RETENTION", timedelta(days=2))
    monkeypatch.setattr(letter_models, "DEFAULT_CONTACT_RETENTION_DAYS", 120)
    monkeypatch.setattr(letter_models, "NAME_THRESHOLDS", (5, 25))
    monkeypatch.setattr(proof, "CHALLENGE_LIFETIME", timedelta(minutes=1))

    html = _page(_settings(tmp_path, sqlite_template))

    assert "deleted after 45 days" in _item(html, "abuse-events")
    assert "deleted after 2 days" in _item(html, "outbox")
    assert "by default 120 days" in _item(html, "contact")
    assert "5 or 25" in _item(html, "badge")
    assert "remembered for 1 minute," in _item(html, "proof-of-work")


@pytest.mark.parametrize(
    "overrides",
    [{}, {"verify_max_age_days": 11, "organizer_session_days": 33, "rate_limit_emails": "4/day"}],
)
def test_every_number_on_the_page_comes_from_the_configuration(
    tmp_path: Path, sqlite_template: Path, overrides: dict[str, Any]
) -> None:
    settings = _settings(tmp_path, sqlite_template, **overrides)
    facts = privacy_facts(settings)
    allowed = {str(value) for value in vars(facts).values() if isinstance(value, int)}
    allowed |= {str(n) for n in facts.name_thresholds}
    for rate in (facts.rate_limit_emails, facts.proof_of_work_above):
        allowed |= set(re.findall(r"\d+", rate))

    numbers = set(re.findall(r"\d+", _article(_page(settings))))

    assert numbers, "the page states no number at all"
    assert numbers <= allowed, f"typed into the page, not configured: {numbers - allowed}"
    for key, value in overrides.items():
        assert str(value) in _article(_page(settings)), key


def test_every_page_s_footer_links_to_the_privacy_page(client: TestClient) -> None:
    app: Any = client.app
    letter = add_letter(app, title="Cancel the contracts")
    closed = add_letter(app, status=LetterStatus.CLOSED)
    for path, status in (
        ("/", 200),
        (f"/letters/{letter.slug}", 200),
        (f"/letters/{closed.slug}", 200),
        (f"/letters/{letter.slug}/signers", 200),
        ("/privacy", 200),
        ("/login", 200),
        ("/letters/no-such-letter", 404),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        footer = response.text.split('<footer class="site-footer">', 1)[1]
        assert 'href="/privacy"' in footer, path


def test_the_sign_form_is_followed_by_the_privacy_link(client: TestClient) -> None:
    letter = add_letter(client.app, title="Cancel the contracts")  # type: ignore[arg-type]

    html = client.get(f"/letters/{letter.slug}").text

    form_end = html.index("</form>")
    link = html.index('<p class="privacy-link"><a href="/privacy">')
    footer = html.index('<footer class="site-footer">')
    assert form_end < link < footer
    # Nothing but the end of the sign form's section between the form and the link.
    assert re.fullmatch(r"\s*(</[a-z]+>\s*)*", html[form_end + len("</form>") : link])


def test_the_email_field_says_what_a_personal_or_work_address_means(client: TestClient) -> None:
    """Item 8: next to the email field (its hint, read out with it), signers learn that a
    personal address keeps their employer from seeing the confirmation email and that a
    work address earns the badge. (The hint's words are helper A's; this holds them to
    the point.)"""
    letter = add_letter(client.app)  # type: ignore[arg-type]

    html = client.get(f"/letters/{letter.slug}").text

    field = re.search(r'<input id="f-email"[^>]*aria-describedby="([^"]+)"', html)
    assert field, "the email field has no hint"
    hints = " ".join(
        _strip(m.group(1))
        for hint_id in field.group(1).split()
        if (m := re.search(rf'id="{hint_id}"[^>]*>(.*?)</(?:p|div|span)>', html, re.S))
    ).lower()
    assert "personal" in hints and "employer" in hints, hints
    assert "work" in hints and ("badge" in hints or "verified" in hints), hints


def _strip(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.mark.browser
def test_the_privacy_page_has_no_axe_violations(tmp_path: Path, sqlite_template: Path) -> None:
    sock, base_url = free_socket()
    settings = _settings(tmp_path, sqlite_template, base_url=base_url)
    with serve(sock, settings), chromium() as browser:
        for viewport in ({"width": 1280, "height": 900}, {"width": 360, "height": 800}):
            page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
            response = page.goto(f"{base_url}/privacy")
            assert response is not None and response.status == 200
            assert page.locator("h1").inner_text().startswith("Privacy")
            violations = axe_violations(page)
            assert violations == [], [v["id"] for v in violations]
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= viewport["width"], "the page scrolls sideways"
            page.close()
