"""The activity page (/dashboard/letters/{slug}/activity) over HTTP: who may see it,
what it shows of an attack (and never: a name or an address, another letter's rows),
and owners' links into bulk invalidation, followed to the preview they prefill."""

from __future__ import annotations

import html
import re
import secrets
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.abuse.models import AbuseEvent
from app.db import utcnow
from app.organizers.models import Role
from app.signatures.models import (
    PendingSignature,
    PendingState,
    Signature,
    SignatureDisplay,
    SignatureStatus,
)
from tests.support.factories import make_letter
from tests.support.organizers import sign_in_as

SLUG, OTHER = "flooded", "quiet"
PAGE = f"/dashboard/letters/{SLUG}/activity"
NETWORK = "c0ffee12" + "9" * 56
THEIR_NETWORK = "deadbeef" + "7" * 56
SECRETS = ("Secret Signer", "secret.person", "Pending Person", "pending.person")
"""Names and addresses in the rows: never on the page."""


def window_start(now: datetime) -> datetime:
    """The hour window's start for a request made at `now`."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1) - timedelta(hours=1)


@pytest.fixture
def seeded(app: FastAPI) -> None:
    """A letter under a flood from flood.test (4 counted and 1 removed in the last few
    minutes; one older, before the window), usually signed from example.org; a flooding
    network; trapped attempts. Another letter with rows of its own."""
    now = utcnow()
    positions = iter(range(1, 1000))
    with app.state.database.write() as session:
        ours, theirs = make_letter(session, slug=SLUG), make_letter(session, slug=OTHER)

        def signature(letter_id: int, at: datetime, domain: str, status: SignatureStatus) -> None:
            session.add(
                Signature(
                    letter_id=letter_id,
                    position=next(positions),
                    status=status,
                    display=SignatureDisplay.PUBLIC,
                    name="Secret Signer",
                    email=f"secret.person@{domain}",
                    contact_ok=True,
                    email_hash=secrets.token_hex(32),
                    email_domain=domain,
                    public_id=secrets.token_urlsafe(16),
                    verified_at=at,
                )
            )

        def submission(letter_id: int, at: datetime, domain: str, source: str) -> None:
            session.add(
                PendingSignature(
                    public_id=secrets.token_urlsafe(18),
                    letter_id=letter_id,
                    state=PendingState.WAITING,
                    name="Pending Person",
                    email=f"pending.person@{domain}",
                    email_hash=secrets.token_hex(32),
                    email_domain=domain,
                    source_hash=source,
                    created_at=at,
                    due_at=at,
                    expires_at=now + timedelta(days=7),
                )
            )

        verified, removed = SignatureStatus.VERIFIED, SignatureStatus.REMOVED
        for _ in range(9):
            signature(ours.id, now - timedelta(days=3), "example.org", verified)
        signature(ours.id, now - timedelta(hours=2), "flood.test", verified)
        for _ in range(4):
            signature(ours.id, now - timedelta(minutes=2), "flood.test", verified)
        signature(ours.id, now - timedelta(minutes=2), "flood.test", removed)
        signature(ours.id, now - timedelta(minutes=2), "example.org", verified)
        submission(ours.id, now - timedelta(days=2), "example.org", "1" * 64)
        for _ in range(3):
            submission(ours.id, now - timedelta(minutes=1), "waiting.test", NETWORK)
        for kind in ("honeypot", "honeypot", "too_fast"):
            session.add(AbuseEvent(letter_id=ours.id, kind=kind, created_at=now))
        for _ in range(5):
            signature(theirs.id, now - timedelta(minutes=2), "other-letter.test", verified)
            submission(theirs.id, now - timedelta(minutes=2), "other-letter.test", THEIR_NETWORK)
        session.add(AbuseEvent(letter_id=theirs.id, kind="disposable_domain", created_at=now))


def bulk_links(page: str) -> list[str]:
    return [
        html.unescape(href) for href in re.findall(r'href="([^"]*/signatures/bulk\?[^"]*)"', page)
    ]


def test_signed_out_goes_to_login(app: FastAPI, client: TestClient, seeded: None) -> None:
    response = client.get(PAGE, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert "flood.test" not in response.text


def test_without_a_role_the_letter_does_not_exist(
    app: FastAPI, client: TestClient, seeded: None
) -> None:
    sign_in_as(client, app, "stranger@example.org", letter_slug=OTHER, role=Role.OWNER)
    response = client.get(PAGE)
    missing = client.get("/dashboard/letters/no-such-letter/activity")
    assert response.status_code == missing.status_code == 404
    assert "flood.test" not in response.text


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_a_viewer_or_editor_sees_the_attack_without_bulk_links(
    app: FastAPI, client: TestClient, seeded: None, role: Role
) -> None:
    sign_in_as(client, app, f"{role}@example.org", letter_slug=SLUG, role=role)
    response = client.get(PAGE)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert f'<a href="{PAGE}" aria-current="page">Activity</a>' in page
    assert "flood.test" in page and "waiting.test" in page
    assert bulk_links(page) == []
    assert "Owners can invalidate these in bulk." in page


def test_the_page_shows_the_flood_and_nothing_else(
    app: FastAPI, client: TestClient, seeded: None
) -> None:
    sign_in_as(client, app, "viewer@example.org", letter_slug=SLUG, role=Role.VIEWER)
    page = client.get(PAGE).text
    # The totals of the window: 6 confirmed (the removed one included, the one two
    # hours ago not), 3 submissions, 3 trapped attempts.
    facts = dict(re.findall(r"<dt>([^<]+)</dt>\s*<dd[^>]*>([^<]+)</dd>", page))
    assert facts["Confirmed signatures"] == "6"
    assert facts["Submissions of the sign form"] == "3"
    assert facts["Trapped or refused attempts"] == "3"
    # Domains on the rise, in order: flood.test (5 of the 9 seen now, 4 counted and 1
    # removed, against 10% before), waiting.test (3 of 9, never seen before); not
    # example.org (1 of 9, against 90%).
    domains = re.findall(r'<th scope="row" class="long domain">([^<]+)</th>', page)
    assert domains == ["flood.test", "waiting.test"]
    assert "(1 removed since)" in page
    # The network, as a short label only.
    assert '<code class="network">c0ffee12</code>' in page
    assert NETWORK not in page and NETWORK[8:] not in page
    # Trapped attempts by kind.
    assert re.search(r"Filled in the hidden trap field.*?<td[^>]*>2</td>", page, re.S)
    assert re.search(r"Sent the form too fast to be a person.*?<td[^>]*>1</td>", page, re.S)
    # The chart: drawn by the server, with a text alternative; no script, no inline style.
    assert page.count('class="chart-bar"') == 2  # one minute of each series
    assert re.search(r'<svg [^>]*role="img" aria-labelledby="chart-confirmed-title"', page)
    assert '<title id="chart-confirmed-title">Confirmed signatures per minute: 6' in page
    assert "<script" not in page and "style=" not in page
    # Never a name or an address; nothing of the other letter.
    for secret in SECRETS:
        assert secret not in page, secret
    for theirs in ("other-letter.test", THEIR_NETWORK[:8], "A throwaway-address domain"):
        assert theirs not in page, theirs


def test_an_owners_links_prefill_bulk_invalidation(
    app: FastAPI, client: TestClient, seeded: None
) -> None:
    sign_in_as(client, app, "owner@example.org", letter_slug=SLUG, role=Role.OWNER)
    before = window_start(utcnow())
    page = client.get(PAGE).text
    after = window_start(utcnow())
    # Only flood.test has counted signatures to remove (waiting.test's are submissions).
    [link] = bulk_links(page)
    parts = urlsplit(link)
    assert parts.path == f"/dashboard/letters/{SLUG}/signatures/bulk"
    query = parse_qs(parts.query)
    assert query["domain"] == ["flood.test"]
    assert query["from"][0] in {moment.strftime("%Y-%m-%d %H:%M") for moment in (before, after)}
    assert set(query) == {"domain", "from"}
    assert "Nothing counted to remove." in page
    # Followed: the bulk page previews the 4 counted signatures confirmed in the window
    # (not the removed one, not the one from two hours ago, not another letter's).
    preview = client.get(link)
    assert preview.status_code == 200
    assert "This will remove 4 counted signatures" in preview.text
    assert 'value="flood.test"' in preview.text


def test_an_admin_gets_the_links_too(app: FastAPI, client: TestClient, seeded: None) -> None:
    sign_in_as(client, app, "admin@example.org", is_admin=True)
    assert len(bulk_links(client.get(PAGE).text)) == 1


def test_the_last_24_hours_and_a_window_that_does_not_exist(
    app: FastAPI, client: TestClient, seeded: None
) -> None:
    sign_in_as(client, app, "viewer@example.org", letter_slug=SLUG, role=Role.VIEWER)
    day = client.get(PAGE, params={"window": "day"})
    assert day.status_code == 200
    assert f'<a href="{PAGE}?window=day" aria-current="page">' in day.text
    assert "Every hour&#39;s numbers" in day.text or "Every hour's numbers" in day.text
    facts = dict(re.findall(r"<dt>([^<]+)</dt>\s*<dd[^>]*>([^<]+)</dd>", day.text))
    assert facts["Confirmed signatures"] == "7"  # the one two hours ago too
    assert client.get(PAGE, params={"window": "week"}).status_code == 422
