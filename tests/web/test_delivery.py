"""Delivery through the browser's eyes: the dashboard's delivery page and its forms for
each role, CSRF, field errors, the streamed delivery packet, and the response and
milestones on the public letter page."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db import Database, utcnow
from app.letters.models import Letter
from app.organizers.models import AuditEvent, Role
from app.signatures import packet
from app.signatures.models import Signature
from tests.support.organizers import post_form, sign_in_as
from tests.web.flows import add_letter, add_verified_signers

OWNER = "owner@example.org"
TODAY = utcnow().date()
POSTS = ("delivered", "response", "response/clear")
GOOD_RESPONSE = {"date": TODAY.isoformat(), "text": "Thank you.\n\nWe will act.", "link": ""}


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    return add_letter(
        app, title="Fix the bridge", addressed_to="The Mayor", body_markdown="Please **fix** it."
    )


def stored(app: FastAPI, letter: Letter) -> Letter:
    database: Database = app.state.database
    with database.read() as session:
        found = session.get(Letter, letter.id)
        assert found is not None
        return found


def actions(app: FastAPI, letter: Letter) -> list[str]:
    with app.state.database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.letter_id == letter.id)
                .order_by(AuditEvent.id)
            )
        )


def path(letter: Letter, what: str) -> str:
    return f"/dashboard/letters/{letter.slug}/{what}"


def text_of(html: str) -> str:
    """The page's text, tags dropped and spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


# --- Who may do what -----------------------------------------------------------------


def test_signed_out_goes_to_login(client: TestClient, letter: Letter) -> None:
    for what in ("delivery", "packet"):
        response = client.get(path(letter, what), follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login")
    for what in POSTS:
        response = post_form(client, path(letter, what), GOOD_RESPONSE)
        assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_an_organizer_without_a_role_finds_nothing(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    other = add_letter(app)
    sign_in_as(client, app, OWNER, letter_slug=other.slug, role=Role.OWNER)
    for what in ("delivery", "packet"):
        assert client.get(path(letter, what)).status_code == 404
    for what in POSTS:
        assert post_form(client, path(letter, what), GOOD_RESPONSE).status_code == 404
    assert client.get("/dashboard/letters/no-such-letter/delivery").status_code == 404
    assert stored(app, letter).delivered_on is None
    assert actions(app, letter) == []


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_viewers_and_editors_see_the_page_but_change_nothing(
    app: FastAPI, client: TestClient, letter: Letter, role: Role
) -> None:
    with app.state.database.write() as session:
        found = session.get(Letter, letter.id)
        assert found is not None
        found.delivered_on = TODAY
        found.response_on = TODAY
        found.response_text = "We said yes."
    sign_in_as(client, app, f"{role.value}@example.org", letter_slug=letter.slug, role=role)

    page = client.get(path(letter, "delivery"))
    assert page.status_code == 200
    assert "We said yes." in page.text
    assert "delivered" in text_of(page.text)
    assert 'action="/dashboard/letters/' not in page.text.replace('action="/logout"', "")
    assert path(letter, "packet") not in page.text
    assert "Only the letter&#39;s owners" in page.text or "Only the letter's owners" in page.text

    assert client.get(path(letter, "packet")).status_code == 403
    for what in POSTS:
        assert post_form(client, path(letter, what), GOOD_RESPONSE).status_code == 403
    after = stored(app, letter)
    assert (after.delivered_on, after.response_text) == (TODAY, "We said yes.")
    assert actions(app, letter) == []


def test_owner_sees_both_forms_and_the_packet_link(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    page = client.get(path(letter, "delivery"))
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert f'action="{path(letter, "delivered")}"' in page.text
    assert f'action="{path(letter, "response")}"' in page.text
    assert f'href="{path(letter, "packet")}"' in page.text
    # The delivered date defaults to today; every input has its label.
    assert (
        f'id="delivered-date" name="date" type="date" required\n        value="{TODAY}"'
        in page.text
    )
    for field in ("delivered-date", "response-date", "response-text", "response-link"):
        assert f'<label for="{field}">' in page.text
    assert "No response has been recorded." in page.text
    assert "published" in text_of(page.text)
    assert 'role="status"' not in page.text
    odd = client.get(path(letter, "delivery") + "?saved=%3Cscript%3E")
    assert odd.status_code == 200
    assert 'role="status"' not in odd.text and "<script>" not in odd.text


def test_an_admin_acts_as_an_owner(app: FastAPI, client: TestClient, letter: Letter) -> None:
    sign_in_as(client, app, "admin@example.org", is_admin=True)
    response = post_form(client, path(letter, "delivered"), {"date": TODAY.isoformat()})
    assert response.status_code == 303
    assert stored(app, letter).delivered_on == TODAY


@pytest.mark.parametrize("what", POSTS)
def test_every_post_checks_csrf_first(
    app: FastAPI, client: TestClient, letter: Letter, what: str
) -> None:
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    client.get(path(letter, "delivery"))  # sets the CSRF cookie
    missing = client.post(path(letter, what), data=GOOD_RESPONSE, follow_redirects=False)
    wrong = client.post(
        path(letter, what), data={**GOOD_RESPONSE, "csrf_token": "x" * 43}, follow_redirects=False
    )
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert "This form has expired" in missing.text
    assert stored(app, letter).delivered_on is None
    assert stored(app, letter).response_on is None
    assert actions(app, letter) == []


# --- Owners' actions -----------------------------------------------------------------


def test_mark_as_delivered(app: FastAPI, client: TestClient, letter: Letter) -> None:
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    response = post_form(client, path(letter, "delivered"), {"date": TODAY.isoformat()})
    assert response.status_code == 303
    assert response.headers["location"] == f"{path(letter, 'delivery')}?saved=delivered"
    assert stored(app, letter).delivered_on == TODAY
    assert actions(app, letter) == ["letter.deliver"]

    page = client.get(response.headers["location"])
    assert "The delivery date is saved." in page.text
    assert f'<time datetime="{TODAY.isoformat()}">' in page.text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Enter a date."),
        ("not a date", "Enter a real date"),
        ("2025-02-30", "Enter a real date"),
        ((TODAY + timedelta(days=3)).isoformat(), "The date cannot be in the future."),
        ((TODAY - timedelta(days=3)).isoformat(), "before the letter was published"),
    ],
)
def test_bad_delivery_dates_are_422_with_the_error_at_the_field(
    app: FastAPI, client: TestClient, letter: Letter, value: str, message: str
) -> None:
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    response = post_form(client, path(letter, "delivered"), {"date": value})
    assert response.status_code == 422
    assert response.text.count(message) == 2  # the summary and the field
    assert 'href="#delivered-date"' in response.text
    assert 'aria-invalid="true" aria-describedby="delivered-date-error"' in response.text
    assert f'value="{value}"' in response.text  # what was typed comes back
    assert "<title>Error:" in response.text
    assert stored(app, letter).delivered_on is None
    assert actions(app, letter) == []


def test_record_and_clear_the_response(app: FastAPI, client: TestClient, letter: Letter) -> None:
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    response = post_form(
        client,
        path(letter, "response"),
        {
            "date": TODAY.isoformat(),
            "text": "Dear all,\r\n\r\nWe <agree>.\r\nSoon.",
            "link": "https://city.example/answer",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"{path(letter, 'delivery')}?saved=response"
    found = stored(app, letter)
    assert (found.response_on, found.response_text, found.response_url) == (
        TODAY,
        "Dear all,\n\nWe <agree>.\nSoon.",
        "https://city.example/answer",
    )

    page = client.get(response.headers["location"])
    assert "The response is saved." in page.text
    assert "<p>We &lt;agree&gt;.<br>Soon.</p>" in page.text
    assert f'action="{path(letter, "response/clear")}"' in page.text

    cleared = post_form(client, path(letter, "response/clear"))
    assert cleared.status_code == 303
    assert cleared.headers["location"] == f"{path(letter, 'delivery')}?saved=cleared"
    found = stored(app, letter)
    assert (found.response_on, found.response_text, found.response_url) == (None, "", "")
    assert actions(app, letter) == ["letter.record_response", "letter.clear_response"]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"text": ""}, "response-text", "Enter the text of the response."),
        ({"text": "  \n \n "}, "response-text", "Enter the text of the response."),
        ({"text": "x" * 20_001}, "response-text", "Use at most 20,000 characters."),
        ({"link": "javascript:alert(1)"}, "response-link", "starts with https://"),
        ({"link": "example.org/answer"}, "response-link", "starts with https://"),
        ({"link": "https://"}, "response-link", "Enter a web address that starts with https://"),
        ({"date": "31/12/2024"}, "response-date", "Enter a real date"),
        ({"date": (TODAY + timedelta(days=5)).isoformat()}, "response-date", "in the future"),
    ],
)
def test_bad_responses_are_422_with_the_error_at_the_field(
    app: FastAPI,
    client: TestClient,
    letter: Letter,
    fields: dict[str, str],
    field: str,
    message: str,
) -> None:
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    response = post_form(client, path(letter, "response"), {**GOOD_RESPONSE, **fields})
    assert response.status_code == 422
    assert response.text.count(message) == 2
    assert f'href="#{field}"' in response.text
    assert f'id="{field}-error"' in response.text
    assert stored(app, letter).response_on is None
    assert actions(app, letter) == []


def test_a_bad_response_keeps_what_was_typed_escaped(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    response = post_form(
        client,
        path(letter, "response"),
        {"date": TODAY.isoformat(), "text": "</textarea><script>x()</script>", "link": "ftp://x"},
    )
    assert response.status_code == 422
    assert "&lt;/textarea&gt;&lt;script&gt;x()&lt;/script&gt;</textarea>" in response.text
    assert "<script>x()" not in response.text
    assert 'value="ftp://x"' in response.text


def test_a_draft_cannot_be_delivered(app: FastAPI, client: TestClient) -> None:
    draft = add_letter(app, status="draft")
    sign_in_as(client, app, OWNER, letter_slug=draft.slug, role=Role.OWNER)
    response = post_form(client, path(draft, "delivered"), {"date": TODAY.isoformat()})
    assert response.status_code == 422
    assert "Publish the letter first" in response.text
    assert "Nothing yet: this letter is a draft." in client.get(path(draft, "delivery")).text


# --- The packet ------------------------------------------------------------------------

SIGNERS = [
    {"name": "Zoe <b>Z</b>", "organization": "Bridge Club", "title": "Chair"},
    {"name": "Ann", "organization": "", "title": "Engineer"},
    {"name": "Ben", "organization": "ACME", "title": ""},
    {"name": "Cal", "organization": "acme", "title": "Welder"},
    {"name": "Dee", "organization": "", "title": ""},
    {"name": "Ed", "organization": "Bridge Club", "title": ""},
    {"name": "Anon", "display": "anonymous"},
    {"name": "Anon 2", "display": "anonymous"},
    {"name": "Hidden Person", "organization": "ACME"},
]


@pytest.fixture
def signed_letter(app: FastAPI, letter: Letter) -> Letter:
    add_verified_signers(app, letter, *SIGNERS)
    with app.state.database.write() as session:
        hidden = session.scalars(select(Signature).where(Signature.name == "Hidden Person")).one()
        hidden.hidden = True
    return letter


def packet_text(client: TestClient, letter: Letter) -> str:
    response = client.get(path(letter, "packet"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.text.rstrip().endswith("</html>")
    return response.text


def test_the_packet_lists_the_public_signers_by_organization(
    app: FastAPI, client: TestClient, signed_letter: Letter
) -> None:
    sign_in_as(client, app, OWNER, letter_slug=signed_letter.slug, role=Role.OWNER)
    html = packet_text(client, signed_letter)

    assert re.search(r'<link rel="stylesheet" href="/static/delivery\.[0-9a-f]{12}\.css">', html)
    assert '<h1 id="packet-title">Fix the bridge</h1>' in html
    assert "The Mayor" in html
    assert "<p>Please <strong>fix</strong> it.</p>" in html  # the sanitized body, as is
    assert f'<time datetime="{TODAY.isoformat()}">' in html
    assert "<strong>9</strong> confirmed signatures" in html
    text = text_of(html)
    assert (
        "ACME Ben Cal , Welder "
        "Bridge Club Zoe <b>Z</b> , Chair Ed "
        "Individuals Ann , Engineer Dee "
        "and 2 people who signed anonymously."
    ) in text
    assert "Zoe &lt;b&gt;Z&lt;/b&gt;" in html  # names are escaped
    assert "Hidden Person" not in html
    assert "Anon" not in text.replace("anonymously", "")
    assert re.findall(r"<h[1-3]", html) == ["<h1", "<h2", "<h3", "<h3", "<h3"]
    assert actions(app, signed_letter) == ["letter.download_packet"]


def test_the_packet_is_read_in_batches_and_comes_out_whole(
    app: FastAPI, client: TestClient, signed_letter: Letter, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in_as(client, app, OWNER, letter_slug=signed_letter.slug, role=Role.OWNER)
    whole = packet_text(client, signed_letter)

    batches: list[int] = []
    real = packet.signers_batch

    def counting(*args: object, **kwargs: object) -> list[packet.PacketSigner]:
        batch = real(*args, **kwargs)  # type: ignore[arg-type]
        batches.append(len(batch))
        return batch

    monkeypatch.setattr(packet, "BATCH_SIZE", 2)
    monkeypatch.setattr(packet, "signers_batch", counting)
    monkeypatch.setattr("app.signatures.delivery.CHUNK_CHARS", 64)
    with client.stream("GET", path(signed_letter, "packet")) as response:
        chunks = list(response.iter_text())
    batched = "".join(chunks)

    assert batches == [2, 2, 2, 0]  # six listed signers, two at a time
    assert len(chunks) > 5  # sent as it is made, not in one piece
    strip = re.compile(r"Prepared on .*? UTC\.")
    assert strip.sub("", batched) == strip.sub("", whole)


def test_a_packet_without_signers(app: FastAPI, client: TestClient, letter: Letter) -> None:
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    html = packet_text(client, letter)
    assert "<strong>0</strong> confirmed signatures" in html
    assert "No signer is listed by name." in html
    assert "Individuals" not in html


def test_the_packet_is_made_to_print() -> None:
    from app.config import STATIC_DIR

    css = (STATIC_DIR / "delivery.css").read_text()
    print_rules = css[css.index("@media print") :]
    assert ".packet-toolbar" in print_rules and "display: none" in print_rules
    assert "break-before: page" in print_rules
    assert "pt;" in print_rules  # a print font size


# --- The public page -------------------------------------------------------------------


def test_the_public_page_shows_nothing_before_any_milestone(
    client: TestClient, letter: Letter
) -> None:
    html = client.get(f"/letters/{letter.slug}").text
    assert 'class="milestones"' not in html
    assert "letter-response" not in html
    assert "Delivered on" not in html


def test_the_public_page_shows_the_response_and_milestones(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    reached = datetime(2025, 4, 2, 10, 0, tzinfo=UTC)
    with app.state.database.write() as session:
        found = session.get(Letter, letter.id)
        assert found is not None
        found.goal_reached_at = reached
    sign_in_as(client, app, OWNER, letter_slug=letter.slug, role=Role.OWNER)
    post_form(client, path(letter, "delivered"), {"date": TODAY.isoformat()})
    post_form(
        client,
        path(letter, "response"),
        {
            "date": TODAY.isoformat(),
            "text": "We hear you.\n\n<script>alert(1)</script>\nSigned, the Mayor",
            "link": "https://city.example/answer?a=1&b=2",
        },
    )

    html = client.get(f"/letters/{letter.slug}").text
    text = text_of(html)
    assert "Goal of 100 signatures reached on 2 April 2025" in text
    day = f"{TODAY.day} {TODAY.strftime('%B %Y')}"
    assert f"Delivered on {day}" in text
    assert '<h2 id="letter-response-title">Response from The Mayor</h2>' in html
    assert f"Responded on {day}" in text
    assert "<p>We hear you.</p>" in html
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt;<br>Signed, the Mayor</p>" in html
    assert "<script>alert(1)" not in html
    assert (
        '<a href="https://city.example/answer?a=1&amp;b=2" rel="noopener noreferrer nofollow">'
        in html
    )
    # Under the letter's h1, before the letter's text.
    assert html.index("<h1>") < html.index("letter-response-title") < html.index("letter-body")


def test_goal_milestone_without_a_goal_and_response_without_an_addressee(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, addressed_to="")
    with app.state.database.write() as session:
        found = session.get(Letter, letter.id)
        assert found is not None
        found.goal = None
        found.goal_reached_at = datetime(2025, 4, 2, tzinfo=UTC)
        found.response_on = date(2025, 4, 3)
        found.response_text = "Noted."
    text = text_of(client.get(f"/letters/{letter.slug}").text)
    assert "Goal reached on 2 April 2025" in text
    assert "Response Responded on 3 April 2025 Noted." in text
    assert "Read the full response" not in text
