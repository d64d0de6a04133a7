"""Receipts as a signer uses them: Chromium (Playwright) against a live server.

Sign, open the confirmation link from the dev mailbox (its fragment holds the receipt
code), confirm: the thanks box shows the receipt, once. After a sequencer pass the
receipt link's page checks the receipt in the browser: counted; after a withdrawal,
withdrawn; a second signer removed by a moderator as a duplicate, removed
(duplicate). Every request the check makes is recorded: none carries the secret or the
whole commitment (only `receipt_prefix` digits of it), no entries are fetched, the
inclusion proofs asked for are the reader's and up to 31 others of its bucket, and no
cookie goes with them. A log whose answers were tampered with (the reader's own entry
rewritten; a checkpoint's root replaced and re-signed with the real key) makes the
check fail.

So that the bucket prefix is exercised, 1,100 other entries (random commitments) join
the log between the two signers: the log then has 1,102 entries and `receipt_prefix` is
1, so a bucket holds about 69 entries, of which the check asks for 32 proofs."""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, utcnow
from app.letters.demo import create_demo_letters
from app.letters.models import Letter
from app.mail.backends import DevMailbox
from app.organizers.service import SHELL
from app.signatures.models import RemovalReason, Signature
from app.signatures.moderation import remove_signature
from app.signlog import entries, keys
from app.signlog.models import LogCheckpoint, LogEntry, LogReason
from app.signlog.receipts import parse_receipt_code
from app.signlog.sequencer import sequence_all
from app.transparency.note import Checkpoint, Signer, sign_checkpoint
from tests.support.browser import axe_violations, chromium
from tests.support.config import make_settings
from tests.support.factories import sign
from tests.support.live import serve
from tests.support.ports import free_socket
from tests.web.test_browser import MAIL_WAIT_SECONDS, screenshot, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request

pytestmark = pytest.mark.browser

SLUG = "ice-out"
CODE = r"[a-z0-9]+(?:-[a-z0-9]+)*:[A-Za-z0-9_-]{43}"
VERIFY = re.compile(r"(https?://\S+/verify/[A-Za-z0-9_.\-]+)#(" + CODE + r")(?![A-Za-z0-9_-])")
MANAGE = re.compile(r"https?://\S+/signature/[A-Za-z0-9_.\-]+")
FILLER = 1100
RESULT_WAIT_MS = 20_000
APOS = "\u2019"  # the typographic apostrophe of the page's sentences


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@dataclass
class Live:
    base_url: str
    settings: Settings
    database: Database

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def sequence(self) -> None:
        """Sequencer passes until nothing is queued (the worker may run them too)."""
        while sequence_all(self.database, self.settings):
            pass

    def mails(self) -> list[str]:
        """The dev mailbox's text parts, newest first."""
        texts = []
        for message in DevMailbox(self.settings.data_dir / "dev-mail").messages():
            part = message.get_body(("plain",))
            assert part is not None
            texts.append(str(part.get_content()))
        return texts


def awkward_key(name: str) -> Signer:
    """A log key whose published form has both "+" and "/" in its base64 (a key read by
    splitting at every "+" would break)."""
    while True:
        signer = Signer.generate(name)
        encoded = signer.verifier.vkey().split("+", 2)[2]
        if "+" in encoded and "/" in encoded:
            return signer


@pytest.fixture
def live(tmp_path: Path, sqlite_template: Path) -> Iterator[Live]:
    path = tmp_path / "receipts.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite:///{path}"
    database = Database(database_url)
    with database.write() as session:
        assert SLUG in create_demo_letters(session)
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database_url, base_url=base_url, run_mail_worker=True)
    (tmp_path / keys.KEY_FILE).write_text(awkward_key(keys.log_host(settings)).skey())
    try:
        with serve(sock, settings):
            yield Live(base_url, settings, database)
    finally:
        database.dispose()


@dataclass
class Recorded:
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    """(url, body, headers) of every request."""
    errors: list[str] = field(default_factory=list)


def record(page: Page) -> Recorded:
    seen = Recorded()

    def on_request(request: Request) -> None:
        seen.requests.append((request.url, request.post_data or "", request.headers))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.errors.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))
    return seen


@dataclass
class Checked:
    verdict: str
    text: str
    seen: Recorded
    failure: str = ""
    """What the script found wrong, when the check failed."""


NO_ED25519 = """
const importKey = crypto.subtle.importKey.bind(crypto.subtle);
crypto.subtle.importKey = (format, key, algorithm, ...rest) =>
  algorithm === "Ed25519" || (algorithm && algorithm.name === "Ed25519")
    ? Promise.reject(new DOMException("Ed25519", "NotSupportedError"))
    : importKey(format, key, algorithm, ...rest);
"""
"""A browser without Ed25519 in WebCrypto (older Safari and Firefox)."""


def check_receipt(
    browser: Browser, live: Live, code: str, *, name: str = "", ed25519: bool = True
) -> Checked:
    """Opens the receipt link in a fresh context (no HTTP cache, no cookie) and waits for
    the check's verdict."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    if not ed25519:
        context.add_init_script(NO_ED25519)
    page = context.new_page()
    seen = record(page)
    response = page.goto(live.url(f"/receipt#{code}"))
    assert response is not None and response.status == 200
    verdict = page.locator("[data-receipt-result]:not([aria-busy]) .receipt-verdict")
    verdict.wait_for(timeout=RESULT_WAIT_MS)
    assert urlsplit(page.url).fragment == "", "the code leaves the address bar"
    assert page.locator("#receipt-code").input_value() == code
    if name:
        screenshot(page, name)
    result = page.locator("[data-receipt-result]")
    checked = Checked(verdict.inner_text(), result.inner_text(), seen)
    checked.failure = result.get_attribute("data-failure") or ""
    context.close()
    return checked


def assert_private(checked: Checked, code: str, live: Live, *, size: int, index: int) -> None:
    """What the check sent: no secret, no whole commitment, a prefix of receipt_prefix
    digits, no entries, and the proofs of its own entry and of up to 31 other entries of
    the same bucket (all of them when the bucket is smaller), no cookie."""
    slug, commitment = parse_receipt_code(code)
    secret = code.rpartition(":")[2]
    api = live.url(f"/api/v1/letters/{slug}/log/")
    calls: dict[str, list[dict[str, list[str]]]] = {}
    for url, body, headers in checked.seen.requests:
        assert secret not in url and secret not in body
        assert commitment not in url.lower() and commitment not in body.lower()
        assert commitment[:8] not in url.lower()
        assert url.startswith(live.base_url), url
        if url.startswith(api):
            assert "cookie" not in {name.lower() for name in headers}
            parts = urlsplit(url)
            query = parse_qs(parts.query, keep_blank_values=True)
            calls.setdefault(parts.path.rsplit("/log/", 1)[1], []).append(query)
    prefix_digits = 1 if size >= 1024 else 0
    prefix = commitment[:prefix_digits]
    assert calls["lookup"] == [{"prefix": [prefix]}]
    assert "entries" not in calls  # no block: with the bucket it would single the entry out
    asked = [int(query["index"][0]) for query in calls["proof/inclusion"]]
    assert {query["size"][0] for query in calls["proof/inclusion"]} == {str(size)}
    with live.database.read() as session:
        bucket = set(
            session.scalars(
                select(LogEntry.seq).where(
                    LogEntry.letter_id
                    == session.scalar(select(Letter.id).where(Letter.slug == slug)),
                    LogEntry.commitment.startswith(prefix),
                    LogEntry.seq < size,
                )
            )
        )
    assert index in asked and len(set(asked)) == len(asked)
    assert set(asked) <= bucket
    assert len(asked) == min(32, len(bucket))
    assert "checkpoint" in calls
    assert checked.seen.errors == []


def latest_checkpoint(session: Session, letter_id: int) -> LogCheckpoint:
    return session.scalars(
        select(LogCheckpoint)
        .where(LogCheckpoint.letter_id == letter_id)
        .order_by(LogCheckpoint.size.desc())
        .limit(1)
    ).one()


def receipt_of(text: str) -> tuple[str, str]:
    """(verify link without its fragment, receipt code) of a confirmation email."""
    found = VERIFY.search(text)
    assert found, text
    code = found.group(2)
    assert f"/receipt#{code}" in text and f"Receipt code: {code}" in text
    return found.group(1), code


def confirm(page: Page, link: str) -> None:
    page.goto(link)
    page.get_by_role("button", name="Confirm my signature").click()
    page.wait_for_url(f"**/letters/{SLUG}#thanks")


def test_a_receipt_from_confirmation_to_removal(browser: Browser, live: Live) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = record(page)

    # 1. Sign; the email's confirm link carries the receipt in its fragment.
    page.goto(live.url(f"/letters/{SLUG}"))
    page.get_by_role("textbox", name="Full name").fill("Receipt Holder")
    page.get_by_role("textbox", name="Email").fill("holder@example.org")
    page.get_by_role("button", name="Sign the letter").click()
    page.wait_for_url(f"**/letters/{SLUG}/check-email")
    page.goto(live.url("/dev/mail"))
    links = page.locator('a[href*="/verify/"]')
    wait_for(page, lambda: links.count() > 0, MAIL_WAIT_SECONDS)
    href = links.first.get_attribute("href")
    assert href is not None
    first_link, first_code = receipt_of(live.mails()[0])
    assert href == f"{first_link}#{first_code}"
    manage = MANAGE.search(live.mails()[0])
    assert manage

    # 2. Confirm from that link: the thanks box shows the receipt, once.
    links.first.click()
    page.wait_for_url("**/verify/**")
    assert urlsplit(page.url).fragment == first_code
    page.get_by_role("button", name="Confirm my signature").click()
    page.wait_for_url(f"**/letters/{SLUG}#thanks")
    thanks = page.locator("#thanks")
    assert thanks.locator("[data-receipt-code]").inner_text() == first_code
    link = thanks.locator("[data-receipt-link]")
    assert link.get_attribute("href") == f"/receipt#{first_code}"
    assert link.inner_text() == live.url(f"/receipt#{first_code}")
    assert not thanks.locator("[data-receipt-fallback]").is_visible()
    assert page.evaluate("sessionStorage.length") == 0, "shown once, then forgotten"
    screenshot(page, "receipt-01-thanks")
    page.reload()
    assert page.locator("[data-receipt-code]").count() == 0
    assert seen.errors == []
    context.close()

    # 3. Other signers' entries, then a second signer (not confirmed yet).
    with live.database.write() as session:
        letter = session.scalars(select(Letter).where(Letter.slug == SLUG)).one()
        letter_id = letter.id
        entries.record(
            session,
            letter_id=letter_id,
            reason=LogReason.CONFIRMED,
            commitments=[os.urandom(32).hex() for _ in range(FILLER)],
            now=utcnow(),
        )
        sign(session, letter, live.settings, name="Second Signer", email="second@example.org")
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while len(mails := live.mails()) < 2:
        assert time.monotonic() < deadline, "the second email did not come"
        time.sleep(0.5)
    second_link, second_code = receipt_of(mails[0])
    live.sequence()

    # 4. Checks: counted; not yet in the log; not a code.
    checked = check_receipt(browser, live, first_code, name="receipt-02-counted")
    size = FILLER + 1
    assert checked.verdict.startswith(
        f"Your signature is entry 1 of this letter{APOS}s log, still counted as of "
        f"checkpoint {size:,}"
    ), (checked.verdict, checked.failure)
    assert f"checked with this site{APOS}s public key" in checked.text  # Chromium has Ed25519
    assert "+" in keys.verifier(live.settings).vkey().split("+", 2)[2]  # the awkward key
    assert_private(checked, first_code, live, size=size, index=0)

    checked = check_receipt(browser, live, second_code)
    assert checked.verdict.startswith("Not in the log yet"), checked.verdict

    confirm_page = browser.new_page()
    confirm(confirm_page, f"{second_link}#{second_code}")
    confirm_page.close()
    live.sequence()
    size += 1
    checked = check_receipt(browser, live, second_code)
    assert checked.verdict.startswith(
        f"Your signature is entry {size:,} of this letter{APOS}s log, still counted as of "
        f"checkpoint {size:,}"
    ), checked.verdict
    assert_private(checked, second_code, live, size=size, index=size - 1)

    # 5. Withdrawn by the signer (the manage link), removed by a moderator.
    page = browser.new_page()
    page.goto(manage.group(0))
    page.get_by_role("button", name="Withdraw my signature").click()
    page.wait_for_url("**?done=withdrawn")
    page.close()
    with live.database.write() as session:
        position = session.scalars(
            select(Signature.position).where(
                Signature.letter_id == letter_id,
                Signature.receipt_commitment == parse_receipt_code(second_code)[1],
            )
        ).one()
        assert remove_signature(
            session,
            actor=SHELL,
            letter_id=letter_id,
            position=position or 0,
            reason=RemovalReason.DUPLICATE,
        )
    live.sequence()
    size += 2
    today = utcnow().strftime("%B %-d, %Y")
    checked = check_receipt(browser, live, first_code, name="receipt-03-withdrawn")
    assert checked.verdict == f"You withdrew your signature on {today}: it is no longer counted."
    assert_private(checked, first_code, live, size=size, index=size - 2)
    checked = check_receipt(browser, live, second_code)
    assert checked.verdict == f"Your signature was removed on {today}, reason: a duplicate."
    assert_private(checked, second_code, live, size=size, index=size - 1)

    # 6. A checkpoint whose signature is not the key's fails the check where the browser
    # verifies Ed25519; elsewhere the page says it could not check that part.
    with live.database.write() as session:
        latest = latest_checkpoint(session, letter_id)
        signed_note = latest.note
        text, _, line = signed_note.rstrip("\n").rpartition("\n")
        name, _, encoded = line.rpartition(" ")
        raw = bytearray(base64.b64decode(encoded))
        raw[10] ^= 1  # in the signature, after the 4-byte key ID
        latest.note = f"{text}\n{name} {base64.b64encode(bytes(raw)).decode()}\n"
    checked = check_receipt(browser, live, second_code)
    assert checked.verdict.startswith("The check failed"), checked.verdict
    assert checked.failure == "signature"
    checked = check_receipt(browser, live, second_code, ed25519=False)
    assert checked.verdict.endswith("reason: a duplicate."), checked.verdict
    assert f"This browser cannot check the checkpoint{APOS}s signature" in checked.text
    with live.database.write() as session:
        latest_checkpoint(session, letter_id).note = signed_note

    # 7. A tampered log fails the check: the signer's own entry rewritten (its removal
    # made to say "bot"): its leaf no longer leads to the signed root...
    with live.database.write() as session:
        own = session.scalars(
            select(LogEntry).where(LogEntry.letter_id == letter_id, LogEntry.seq == size - 1)
        ).one()
        original = own.reason
        own.reason = LogReason.BOT.value
    checked = check_receipt(browser, live, second_code)
    assert checked.verdict.startswith("The check failed"), checked.verdict
    assert checked.failure == "root"
    with live.database.write() as session:
        session.execute(
            update(LogEntry)
            .where(LogEntry.letter_id == letter_id, LogEntry.seq == size - 1)
            .values(reason=original)
        )
    assert check_receipt(browser, live, second_code).verdict.startswith("Your signature was")

    # ... and the latest checkpoint's root replaced, the note re-signed with the real key.
    with live.database.write() as session:
        latest = latest_checkpoint(session, letter_id)
        forged = bytes(32)
        latest.root = forged
        latest.note = sign_checkpoint(
            Checkpoint(keys.origin(live.settings, SLUG), latest.size, forged),
            keys.signer(live.settings),
        )
    for code in (first_code, second_code):
        checked = check_receipt(browser, live, code, name="receipt-04-failed")
        assert checked.verdict.startswith("The check failed"), checked.verdict
        assert checked.failure == "root"


def test_the_receipt_page_by_keyboard_and_axe(browser: Browser, live: Live) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = record(page)
    page.goto(live.url("/receipt"))
    assert axe_violations(page) == []
    page.locator("#receipt-code").focus()
    page.keyboard.type("ice-out:not-a-secret")
    page.keyboard.press("Enter")
    verdict = page.locator("[data-receipt-result] .receipt-verdict")
    verdict.wait_for(timeout=RESULT_WAIT_MS)
    assert verdict.inner_text() == "This is not a receipt code."
    assert urlsplit(page.url).query == "" and urlsplit(page.url).fragment == ""
    assert not any("/api/" in url for url, _, _ in seen.requests)

    # A well-formed code for a letter that does not exist.
    settled = page.locator(
        "[data-receipt-result]:not([aria-busy]) .receipt-verdict", has_text="No published"
    )
    page.locator("#receipt-code").fill("no-such-letter:" + "A" * 43)
    page.keyboard.press("Tab")  # to the Check button
    page.keyboard.press("Enter")
    settled.wait_for(timeout=RESULT_WAIT_MS)
    assert settled.inner_text().startswith("No published")
    assert axe_violations(page) == []
    assert seen.errors == [] or all("404" in error for error in seen.errors)

    # A whole receipt link pasted into the field reads as its code (and "No published"
    # again: the fragment was read, the check ran).
    page.locator("#receipt-code").fill("x")
    page.get_by_role("button", name="Check").click()
    assert verdict.inner_text() == "This is not a receipt code."  # said at once, no request
    page.locator("#receipt-code").fill(live.url("/receipt#other-letter:" + "B" * 42 + "A"))
    page.get_by_role("button", name="Check").click()
    settled.wait_for(timeout=RESULT_WAIT_MS)
    assert settled.inner_text().startswith("No published")
    assert any("/api/v1/letters/other-letter/log/checkpoint" in url for url, _, _ in seen.requests)
    context.close()
