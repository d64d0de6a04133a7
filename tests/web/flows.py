"""Helpers shared by the TestClient web tests: letters, the sign form, the dev mailbox."""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select

from app.config import Settings
from app.letters.models import Letter
from app.mail.backends import DevMailbox
from app.mail.models import OutboxEmail
from app.mail.worker import deliver_due
from app.signatures.models import PendingSignature, Signature
from app.signatures.service import notify_pending
from tests.support.factories import make_letter, sign, sign_and_confirm
from tests.web.conftest import csrf_from

VERIFY_LINK = re.compile(r"(https?://[^/\s\"'<>]+)/verify/([A-Za-z0-9_.\-]+)")
TALLY = re.compile(r"data-live-count>([\d,]+)<")

GOOD_FORM = {
    "name": "Ada Lovelace",
    "email": "ada@example.org",
    "title": "Analyst",
    "organization": "Analytical Engines Ltd",
    "city": "London",
    "display": "public",
}


def add_letter(app: FastAPI, **overrides: Any) -> Letter:
    with app.state.database.write() as session:
        letter: Letter = make_letter(session, **overrides)
    return letter


def add_verified_signers(app: FastAPI, letter: Letter, *people: dict[str, Any]) -> None:
    """Signs and verifies straight through the services (fast set-up)."""
    settings: Settings = app.state.settings
    with app.state.database.write() as session:
        for person in people:
            sign_and_confirm(session, letter, settings, **person)


BROWSER_POST = {"sec-fetch-site": "same-origin"}
"""What every current browser says of a form POST from this site's own page."""


def form_tokens(html: str) -> dict[str, str]:
    """The sign form's hidden fields a browser sends back: the signed moment the form
    was shown (and the CSRF token, when the page carries one: a refused form does)."""
    match = re.search(r'name="form_rendered" value="([^"]+)"', html)
    assert match, "no form_rendered on the page"
    fields = {"form_rendered": match.group(1)}
    if 'name="csrf_token"' in html:
        fields["csrf_token"] = csrf_from(html)
    return fields


def post_sign_form(client: TestClient, slug: str, **fields: Any) -> Response:
    """GETs an open letter page, then POSTs its form as a browser does (saying where
    the POST comes from: the public page carries no CSRF token)."""
    page = client.get(f"/letters/{slug}")
    assert page.status_code == 200
    data = {**GOOD_FORM, **form_tokens(page.text), **fields}
    return client.post(
        f"/letters/{slug}/sign", data=data, headers=BROWSER_POST, follow_redirects=False
    )


def deliver(app: FastAPI) -> int:
    """One pass of the mail worker (new submissions' emails, then delivery); returns how
    many emails were delivered."""
    settings: Settings = app.state.settings
    with app.state.database.write() as session:
        notify_pending(session, settings=settings)
    mailbox = DevMailbox(settings.data_dir / "dev-mail")
    return deliver_due(app.state.database, mailbox, settings=settings)


def tally_on(html: str) -> int:
    match = TALLY.search(html)
    assert match, "no tally on the page"
    return int(match.group(1).replace(",", ""))


def count(app: FastAPI, model: type[Signature] | type[PendingSignature] | type[OutboxEmail]) -> int:
    with app.state.database.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def signatures(app: FastAPI) -> list[Signature]:
    with app.state.database.read() as session:
        return list(session.scalars(select(Signature).order_by(Signature.id)))


def outbox(app: FastAPI) -> list[OutboxEmail]:
    with app.state.database.read() as session:
        return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def pending_signatures(app: FastAPI) -> list[PendingSignature]:
    with app.state.database.read() as session:
        return list(session.scalars(select(PendingSignature).order_by(PendingSignature.id)))


def pending_signature(app: FastAPI, letter: Letter, **overrides: Any) -> PendingSignature:
    settings: Settings = app.state.settings
    with app.state.database.write() as session:
        pending = sign(session, letter, settings, **overrides)
        session.expunge(pending)
    return pending


def expired_token(settings: Settings, public_id: str) -> str:
    """A correctly signed verify token, issued one day past the maximum age."""
    age = settings.verify_max_age_seconds + 24 * 3600

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    serializer = URLSafeTimedSerializer(settings.secret, salt="signature-verify", signer=Past)
    return str(serializer.dumps(public_id))
