"""A refused email domain is an AbuseEvent of its kind (throwaway, forbidden by the letter,
outside the letter's required domains), with the letter and the client's network hash
only: through the service, the sign form and the API, on SQLite and PostgreSQL. The
event is committed although the request is refused; the submission is not stored.
The activity page counts them by kind."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.abuse.models import AbuseEvent
from app.abuse.service import EventKind, source_hash
from app.config import Settings
from app.db import Database
from app.errors import InvalidInput
from app.letters.models import Letter
from app.mail.models import OutboxEmail
from app.main import create_app
from app.organizers.models import Role
from app.signatures.models import PendingSignature, Signature
from app.signatures.service import sign_letter
from tests.support.databases import truncate
from tests.support.factories import make_letter, signature_in
from tests.support.organizers import sign_in_as
from tests.web.flows import GOOD_FORM, post_sign_form

CLIENT_IP = "127.0.0.1"

CASES: list[tuple[EventKind, dict[str, list[str]], str]] = [
    (EventKind.DISPOSABLE_DOMAIN, {}, "ada@mailinator.com"),
    (
        EventKind.FORBIDDEN_DOMAIN,
        {"forbidden_domains": ["rival.example"]},
        "ada@mail.rival.example",
    ),
    (EventKind.REQUIRED_DOMAIN, {"required_domains": ["example.com"]}, "ada@private-name.example"),
]
LABELS = {
    EventKind.DISPOSABLE_DOMAIN: "A throwaway-address domain",
    EventKind.FORBIDDEN_DOMAIN: "A domain this letter refuses",
    EventKind.REQUIRED_DOMAIN: "A domain this letter does not accept",
}


def _count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


KEPT = (PendingSignature, Signature, OutboxEmail)


def _nothing_but_events(session: Session, before: dict[Any, int] | None = None) -> None:
    """Nothing kept but the events: none of KEPT's rows, or no more than `before` (a
    shared database may hold other tests' committed rows)."""
    for model in KEPT:
        assert _count(session, model) == (before or {}).get(model, 0), model


@pytest.mark.parametrize(("kind", "domains", "address"), CASES)
def test_the_service_records_each_refusal_of_a_domain(
    session: Session, settings: Settings, kind: EventKind, domains: dict[str, list[str]],
    address: str,
) -> None:  # fmt: skip
    letter = make_letter(session, **domains)
    before = {model: _count(session, model) for model in KEPT}
    with pytest.raises(InvalidInput) as refused:
        sign_letter(
            session,
            slug=letter.slug,
            data=signature_in(email=address),
            settings=settings,
            source_hash="ab" * 32,
        )
    assert set(refused.value.fields) == {"email"}
    [event] = session.scalars(select(AbuseEvent).where(AbuseEvent.letter_id == letter.id))
    assert (event.kind, event.letter_id, event.source_hash) == (kind.value, letter.id, "ab" * 32)
    _nothing_but_events(session, before)


def test_an_accepted_domain_records_no_event(session: Session, settings: Settings) -> None:
    letter = make_letter(session, required_domains=["example.com"], forbidden_domains=["x.org"])
    # Counted before and after, not from zero: a test of another file may have committed
    # rows to the shared database (`clean_database` empties it before a test, not after).
    events, pending = _count(session, AbuseEvent), _count(session, PendingSignature)
    sign_letter(
        session, slug=letter.slug, data=signature_in(email="ada@example.com"), settings=settings
    )
    assert _count(session, AbuseEvent) == events
    assert _count(session, PendingSignature) == pending + 1


def test_refusals_over_http_are_kept_and_counted_on_the_activity_page(
    clean_database: Database, settings: Settings
) -> None:
    """The form and the API answer 422; the request's transaction still commits the
    event (and nothing else); each kind shows on the letter's activity page."""
    try:
        with clean_database.write() as session:
            slugs = {
                kind: make_letter(session, slug=f"domains-{n}", **domains).slug
                for n, (kind, domains, _) in enumerate(CASES)
            }
        app = create_app(settings)
        with TestClient(app, base_url="http://testserver", client=(CLIENT_IP, 50000)) as client:
            for kind, _, address in CASES:
                slug = slugs[kind]
                form = post_sign_form(client, slug, email=address)
                assert form.status_code == 422, kind
                api = client.post(
                    f"/api/v1/letters/{slug}/signatures", json={**GOOD_FORM, "email": address}
                )
                assert api.status_code == 422, api.text
                assert api.json()["error"] == "invalid_input"
                assert set(api.json()["fields"]) == {"email"}

            with clean_database.read() as session:
                letter_ids = {letter.slug: letter.id for letter in session.scalars(select(Letter))}
                events = [
                    (event.kind, event.letter_id, event.source_hash)
                    for event in session.scalars(select(AbuseEvent).order_by(AbuseEvent.id))
                ]
                _nothing_but_events(session)
            network = source_hash(settings.secret, CLIENT_IP)
            assert events == [
                (kind.value, letter_ids[slugs[kind]], network)
                for kind, _, _ in CASES
                for _route in ("form", "api")
            ]

            for kind, _, _ in CASES:
                slug = slugs[kind]
                sign_in_as(client, app, f"{kind}@example.org", letter_slug=slug, role=Role.VIEWER)
                page = client.get(f"/dashboard/letters/{slug}/activity").text
                facts = dict(re.findall(r"<dt>([^<]+)</dt>\s*<dd[^>]*>([^<]+)</dd>", page))
                assert facts["Trapped or refused attempts"] == "2"
                assert re.search(rf"{LABELS[kind]}.*?<td[^>]*>2</td>", page, re.S), kind
                for other in set(LABELS) - {kind}:
                    assert LABELS[other] not in page
                assert "ada@" not in page and "rival.example" not in page
                assert "private-name" not in page
    finally:
        truncate(clean_database)  # the PostgreSQL database is shared by the whole run
