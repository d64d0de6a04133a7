"""Receipts without a browser: the confirmation email carries the receipt (a link with the
code in its fragment, the code as text, and the confirm link carrying it too); the code
reads back to the commitment kept on the submission and then on the signature and in its
log entry; the secret itself is in no table once the email is sent; /receipt is one page
for everyone; the thanks box never holds a receipt from the server.

The browser half (the page's own check) is tests/web/test_browser_receipts.py."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.db import Database
from app.jobs import forget_in_files
from app.mail.backends import SmtpBackend
from app.mail.worker import deliver_due
from app.main import create_app
from app.signatures.models import PendingSignature, Signature
from app.signatures.service import notify_pending
from app.signlog import keys
from app.signlog.models import LogEntry
from app.signlog.receipts import parse_receipt_code
from app.templating import render_blocks
from tests.support.factories import make_letter
from tests.support.smtp import SmtpServer
from tests.test_forgetting import _dump
from tests.web.conftest import csrf_from
from tests.web.flows import BROWSER_POST, GOOD_FORM

CODE = r"[a-z0-9]+(?:-[a-z0-9]+)*:[A-Za-z0-9_-]{43}"
RECEIPT_LINK = re.compile(r"(https?://[^/\s\"'<>]+)/receipt#(" + CODE + r")(?![A-Za-z0-9_-])")
VERIFY_LINK = re.compile(r"/verify/([A-Za-z0-9_.\-]+)#(" + CODE + r")(?![A-Za-z0-9_-])")


def test_the_verify_template_shows_the_receipt_and_carries_it_in_the_confirm_link() -> None:
    code = "ice-out:" + "A" * 42 + "E"
    context = {
        "letter": {"title": "Cancel the contracts"},
        "letter_url": "https://letters.example.org/letters/ice-out",
        "verify_url": "https://letters.example.org/verify/abc.def",
        "max_age_days": 7,
        "receipt_code": code,
        "receipt_url": f"https://letters.example.org/receipt#{code}",
    }
    parts = render_blocks("emails/verify.jinja", context)
    assert f"https://letters.example.org/verify/abc.def#{code}\n" in parts["text"]
    assert f"https://letters.example.org/receipt#{code}\n" in parts["text"]
    assert f"Receipt code: {code}\n" in parts["text"]
    assert "It says nothing about who you are." in parts["text"]
    links = re.findall(r'<a href="([^"]+)"', parts["html"])
    assert links[0] == f"https://letters.example.org/verify/abc.def#{code}"  # still first
    assert f"https://letters.example.org/receipt#{code}" in links
    assert f"<code>{code}</code>" in parts["html"]
    # Without a receipt (an email rendered before issue 12's worker): no stray "#".
    del context["receipt_code"], context["receipt_url"]
    parts = render_blocks("emails/verify.jinja", context)
    assert "abc.def#" not in parts["text"] + parts["html"]
    assert "/receipt" not in parts["text"] + parts["html"]


def test_the_receipt_reaches_the_signer_only(
    clean_database: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = smtp_settings
    with clean_database.write() as session:
        slug = make_letter(session).slug
    app = create_app(settings)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        page = client.get(f"/letters/{slug}")
        assert page.status_code == 200
        form_rendered = re.search(r'name="form_rendered" value="([^"]+)"', page.text)
        assert form_rendered
        response = client.post(
            f"/letters/{slug}/sign",
            data={**GOOD_FORM, "form_rendered": form_rendered.group(1)},
            headers=BROWSER_POST,
            follow_redirects=False,
        )
        assert response.status_code == 303

        # The worker renders the email: the secret exists now, in the outbox only.
        with clean_database.write() as session:
            assert notify_pending(session, settings=settings) == 1
        with clean_database.read() as session:
            pending = session.scalars(select(PendingSignature)).one()
        assert pending.receipt_commitment is not None
        assert re.fullmatch(r"[0-9a-f]{64}", pending.receipt_commitment)
        before = _dump(clean_database)

        assert deliver_due(clean_database, SmtpBackend(settings), settings=settings) == 1
        [message] = smtp_server.messages()
        text_part = message.get_body(("plain",))
        html_part = message.get_body(("html",))
        assert text_part is not None and html_part is not None
        text = text_part.get_content()
        markup = html.unescape(html_part.get_content())

        found = RECEIPT_LINK.search(text)
        assert found, text
        assert found.group(1) == settings.base_url
        code = found.group(2)
        assert f"Receipt code: {code}" in text
        assert f'href="{settings.base_url}/receipt#{code}"' in markup
        verify = VERIFY_LINK.search(text)
        assert verify and verify.group(2) == code, "the confirm link carries the receipt"
        assert f"/verify/{verify.group(1)}#{code}" in markup

        parsed_slug, commitment = parse_receipt_code(code)
        assert parsed_slug == slug
        assert commitment == pending.receipt_commitment
        secret = code.rpartition(":")[2]
        assert secret.encode() in before, "the search finds the secret where it was"

        # Confirm (as the link does, the fragment never reaching the server).
        link = f"/verify/{verify.group(1)}"
        token = csrf_from(client.get(link).text)
        thanked = client.post(link, data={"csrf_token": token})
        assert thanked.status_code == 200
        # The thanks box has a place for the receipt, which only the page's script fills.
        assert f'data-receipt-thanks="{slug}"' in thanked.text
        assert "is in the confirmation email" in thanked.text
        assert secret not in thanked.text
        assert "/receipt#" not in thanked.text
        with clean_database.read() as session:
            signature = session.scalars(select(Signature)).one()
            entry = session.scalars(select(LogEntry)).one()
        assert signature.receipt_commitment == commitment
        assert (entry.event, entry.reason, entry.commitment) == ("add", "confirmed", commitment)

    forget_in_files(clean_database)
    after = _dump(clean_database)
    assert commitment.encode() in after  # what the log keeps: the commitment
    assert secret.encode() not in after
    assert code.encode() not in after


def test_the_receipt_page_is_the_same_for_everyone(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        first = client.get("/receipt")
    with TestClient(app, cookies={"thanks": "ice-out", "other": "x"}) as client:
        second = client.get("/receipt")
    assert first.status_code == second.status_code == 200
    assert first.text == second.text
    for response in (first, second):
        assert "set-cookie" not in response.headers
        assert response.headers["cache-control"].startswith("public")
    page = first.text
    assert f'data-key="{keys.verifier(settings).vkey()}"' in page
    assert re.search(r'<script src="/static/receipt\.[0-9a-f]{12}\.js" defer></script>', page)
    assert 'id="receipt-code"' in page
    # The field has no name: even without the script, no form puts a code in a URL.
    field = re.search(r'<input id="receipt-code"[^>]*>', page)
    assert field and "name=" not in field.group(0)
    assert 'aria-live="polite"' in page
    assert "{entry}" in page and "{size}" in page  # the script's placeholders


def test_the_receipt_page_is_not_for_search_engines(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        robots = client.get("/robots.txt").text
    assert "Disallow: /receipt\n" in robots
