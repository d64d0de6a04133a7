"""The server-rendered pages: reading, signing, confirming, and every way to get it wrong."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import update

from app import tokens
from app.config import MailBackend, Settings
from app.db import Database, utcnow
from app.letters.models import FieldRule, Letter, LetterStatus
from app.mail.models import OutboxEmail
from app.main import create_app
from app.signatures.models import PendingSignature, PendingState, Signature, SignatureStatus
from tests.support.config import make_settings
from tests.support.factories import make_letter, tampered
from tests.web.conftest import csrf_from
from tests.web.flows import (
    BROWSER_POST,
    GOOD_FORM,
    VERIFY_LINK,
    add_letter,
    add_verified_signers,
    count,
    deliver,
    expired_token,
    outbox,
    pending_signature,
    pending_signatures,
    post_sign_form,
    signatures,
    tally_on,
)


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    return add_letter(app, slug="ice-out", title="Cancel the contracts", goal=100)


def _mailbox_links(client: TestClient) -> list[str]:
    page = client.get("/dev/mail")
    assert page.status_code == 200
    found = [token for _, token in VERIFY_LINK.findall(html.unescape(page.text))]
    return [f"/verify/{token}" for token in dict.fromkeys(found)]  # href and text: once


# --- reading ---


def test_home_lists_published_letters_open_first_with_tallies(
    app: FastAPI, client: TestClient
) -> None:
    closed = add_letter(app, title="An old closed letter")
    small = add_letter(app, title="A quiet open letter")
    big = add_letter(app, title="A popular open letter", goal=1000)
    add_letter(app, title="A draft nobody may see", status=LetterStatus.DRAFT)
    add_verified_signers(app, big, {}, {}, {})
    add_verified_signers(app, closed, {})
    with app.state.database.write() as session:
        session.execute(
            update(Letter).where(Letter.id == closed.id).values(status=LetterStatus.CLOSED)
        )

    page = client.get("/")

    assert page.status_code == 200
    assert "A draft nobody may see" not in page.text
    positions = [page.text.index(letter.title) for letter in (big, small, closed)]
    assert positions == sorted(positions), "open letters first, biggest tally first"
    cards = re.findall(
        r'<li class="card">(.*?)</li>\s*(?=<li class="card">|</ul>)', page.text, re.S
    )
    assert [tally_on(card) for card in cards] == [3, 0, 1]
    assert f'href="/letters/{big.slug}"' in page.text
    assert "Goal: 1,000" in cards[0]
    assert "Closed" in cards[2] and "Closed" not in cards[0]


def test_home_without_letters_says_so(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "There are no published letters yet." in page.text


def test_letter_page_shows_title_tally_progress_and_sign_form(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    add_verified_signers(app, letter, {"name": "Grace Hopper"}, {"name": "Alan Turing"})

    page = client.get(f"/letters/{letter.slug}")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Cancel the contracts</h1>" in page.text
    assert "<strong>one thing</strong>" in page.text  # the Markdown body, rendered
    assert tally_on(page.text) == 2
    assert re.search(r'<progress max="100" value="2"', page.text)
    assert "Goal: 100" in page.text
    assert re.search(f'<form method="post" action="/letters/{letter.slug}/sign[#"]', page.text)
    assert 'name="csrf_token"' not in page.text  # the same page for everyone (cached)
    assert "set-cookie" not in page.headers
    for field in ("name", "email", "title", "organization", "city", "display", "contact_ok"):
        assert f'name="{field}"' in page.text
    assert 'name="comment"' not in page.text  # a letter asks for no comment unless told to
    assert "Grace Hopper" in page.text and "Alan Turing" in page.text


def test_progress_never_overshoots_the_goal(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, goal=1)
    add_verified_signers(app, letter, {}, {})
    page = client.get(f"/letters/{letter.slug}")
    assert tally_on(page.text) == 2
    assert '<progress max="1" value="1"' in page.text


def test_closed_letter_shows_no_form(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, status=LetterStatus.CLOSED)
    page = client.get(f"/letters/{letter.slug}")
    assert page.status_code == 200
    assert "This letter is closed" in page.text
    assert '<form method="post"' not in page.text
    assert 'name="csrf_token"' not in page.text


# --- signing and confirming ---


def test_signing_redirects_to_check_email_and_stores_one_pending_signature_and_email(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    response = post_sign_form(client, letter.slug)

    assert response.status_code == 303
    assert response.headers["location"] == f"/letters/{letter.slug}/check-email"
    [pending] = pending_signatures(app)
    assert pending.state == PendingState.WAITING
    assert (pending.name, pending.organization) == ("Ada Lovelace", "Analytical Engines Ltd")
    assert signatures(app) == []
    assert outbox(app) == []  # the worker decides what to send
    assert deliver(app) == 1
    [email] = outbox(app)
    assert email.kind == "verify"

    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert "Check your email" in page.text
    assert "Cancel the contracts" in page.text
    # Where the link went, masked, from a short-lived cookie: never in the URL.
    assert "a•••@example.org" in page.text
    assert "ada@" not in response.headers["location"] + page.text
    assert page.headers["cache-control"] == "no-store"


def test_the_answer_is_identical_for_new_pending_verified_and_capped_addresses(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    new = post_sign_form(client, letter.slug)
    pending = post_sign_form(client, letter.slug, email="ada+letters@example.org")
    deliver(app)
    client.post(_mailbox_links(client)[0], headers=BROWSER_POST)
    assert signatures(app)[0].status == SignatureStatus.VERIFIED
    verified = post_sign_form(client, letter.slug, name="Someone Else")
    cap = app.state.settings.email_cap[0]  # 2 emails went, so `verified` and these fill it
    for _ in range(cap - 2):
        post_sign_form(client, letter.slug, name="Flood")
    capped = post_sign_form(client, letter.slug, name="Over The Cap")

    def answer(response: Response) -> tuple[object, ...]:
        return (response.status_code, response.headers.get("location"), response.content,
                response.headers.get("set-cookie"))  # fmt: skip

    answers = [answer(r) for r in (new, pending, verified, capped)]
    assert answers[0] == answers[1] == answers[2] == answers[3]
    assert answers[0][:2] == (303, f"/letters/{letter.slug}/check-email")
    assert count(app, Signature) == 1
    # What differs goes by email to the address's owner only, at most `cap` an hour.
    deliver(app)
    kinds = [email.kind for email in outbox(app)]
    assert kinds == ["verify", "verify"] + ["already_signed"] * (cap - 2)
    assert signatures(app)[0].name == "Ada Lovelace"  # a confirmed signature is not rewritten


def test_full_loop_through_the_dev_mailbox(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    post_sign_form(client, letter.slug, name="Katherine Johnson", organization="NASA")
    assert deliver(app) == 1

    mailbox = client.get("/dev/mail")
    assert "Confirm your signature: Cancel the contracts" in mailbox.text
    [link] = _mailbox_links(client)

    confirm = client.get(link)
    assert confirm.status_code == 200
    assert "Confirm my signature" in confirm.text
    assert "Katherine Johnson" in confirm.text
    assert f'action="{link}"' in confirm.text
    assert "Deleted once you confirm" in confirm.text  # what happens to the address
    assert confirm.headers["cache-control"] == "no-store"
    # Looking at the link (as a mail scanner does) changes nothing.
    client.get(link)
    assert signatures(app) == []
    assert tally_on(client.get(f"/letters/{letter.slug}").text) == 0

    done = client.post(link, data={"csrf_token": csrf_from(confirm.text)}, follow_redirects=False)

    assert done.status_code == 303
    assert done.headers["location"] == f"/letters/{letter.slug}#thanks"
    thanks = client.get(done.headers["location"])
    assert tally_on(thanks.text) == 1
    assert "Your signature is confirmed" in thanks.text
    assert 'action="/letters/ice-out/sign"' not in thanks.text  # no sign form after signing
    assert thanks.headers["cache-control"] == "no-store"
    assert "Katherine Johnson" in thanks.text
    # The thank-you belongs to this browser, once: not to a shared URL, not on reload.
    assert "Your signature is confirmed" not in client.get(done.headers["location"]).text
    with TestClient(app) as stranger:
        shared = stranger.get(f"/letters/{letter.slug}?signed=1#thanks")
        assert "Your signature is confirmed" not in shared.text
    signers = client.get(f"/letters/{letter.slug}/signers")
    assert "Katherine Johnson" in signers.text and "NASA" in signers.text
    [signature] = signatures(app)
    assert signature.status == SignatureStatus.VERIFIED
    assert signature.email is None  # forgotten: contact_ok was not ticked
    assert [row.email for row in pending_signatures(app)] == [None]

    # Confirming twice is harmless; the link now says it is done.
    again = client.post(link, headers=BROWSER_POST, follow_redirects=False)
    assert again.status_code == 303
    assert tally_on(client.get(f"/letters/{letter.slug}").text) == 1
    assert "already confirmed" in client.get(link).text


def test_contact_ok_keeps_the_address_after_verification(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    post_sign_form(client, letter.slug, contact_ok="yes")
    deliver(app)
    client.post(_mailbox_links(client)[0], headers=BROWSER_POST)
    [signature] = signatures(app)
    assert signature.status == SignatureStatus.VERIFIED
    assert signature.email == "ada@example.org"


def test_an_anonymous_signer_is_counted_but_never_shown(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    secret = {
        "name": "Zelda Secretname",
        "title": "Undercover Analyst",
        "organization": "Hidden Agency Inc",
        "city": "Secretville",
    }
    post_sign_form(client, letter.slug, display="anonymous", **secret)
    deliver(app)
    client.post(_mailbox_links(client)[0], headers=BROWSER_POST)
    assert signatures(app)[0].status == SignatureStatus.VERIFIED

    pages = {
        "letter": client.get(f"/letters/{letter.slug}"),
        "signers": client.get(f"/letters/{letter.slug}/signers"),
        "search": client.get(f"/letters/{letter.slug}/signers", params={"q": "Zelda"}),
        "home": client.get("/"),
        "api letters": client.get("/api/v1/letters"),
        "api letter": client.get(f"/api/v1/letters/{letter.slug}"),
        "api signers": client.get(f"/api/v1/letters/{letter.slug}/signatures"),
        "api search": client.get(
            f"/api/v1/letters/{letter.slug}/signatures", params={"q": "Hidden"}
        ),
    }
    for where, response in pages.items():
        assert response.status_code == 200, where
        for value in secret.values():
            assert value not in response.text, f"{value!r} leaked on {where}"
    assert tally_on(pages["letter"].text) == 1
    assert "<em>Anonymous</em>" in pages["signers"].text
    assert "No public signer matches" in pages["search"].text
    [item] = pages["api signers"].json()["items"]
    assert item["name"] is None
    assert pages["api search"].json()["items"] == []


def test_signers_list_searches_and_pages_by_keyset(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    people = [{"name": f"Person {n:02d}", "organization": "Plain Org"} for n in range(54)]
    people.insert(20, {"name": "Needle Haystack", "organization": "Plain Org"})
    people.insert(30, {"name": "Someone Else", "organization": "Needleworks"})
    add_verified_signers(app, letter, *people)
    row = re.compile(r"<tr>\s*<td>(.*?)</td>", re.S)

    first = client.get(f"/letters/{letter.slug}/signers")
    assert first.status_code == 200
    assert "56 confirmed signatures." in first.text
    first_names = row.findall(first.text)
    assert len(first_names) == 50
    assert first_names[0] == "Person 53"  # newest first
    older = re.search(r'href="([^"]*after=([^"&]+))" rel="next"', first.text)
    assert older, "no link to older signers"

    second = client.get(html.unescape(older.group(1)))
    second_names = row.findall(second.text)
    assert len(second_names) == 6
    assert 'rel="next"' not in second.text
    assert set(first_names).isdisjoint(second_names)
    assert sorted(first_names + second_names) == sorted(p["name"] for p in people)

    found = client.get(f"/letters/{letter.slug}/signers", params={"q": "needle"})
    assert sorted(row.findall(found.text)) == ["Needle Haystack", "Someone Else"]
    # LIKE wildcards are matched literally.
    assert row.findall(client.get(f"/letters/{letter.slug}/signers?q=%25%25%25").text) == []
    assert row.findall(client.get(f"/letters/{letter.slug}/signers?q=___").text) == []
    # Too short to search: said by the search box; everyone is listed.
    short = client.get(f"/letters/{letter.slug}/signers", params={"q": "ne"})
    assert short.status_code == 422
    assert "Type at least 3 characters to search." in short.text
    assert len(row.findall(short.text)) == 50


# --- bad links ---


@pytest.fixture
def bad_tokens(app: FastAPI, app_settings: Settings, letter: Letter) -> Iterator[dict[str, str]]:
    signature = pending_signature(app, letter)
    good = tokens.issue(app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)
    yield {
        "tampered": tampered(good),
        "garbage": "not-a-token",
        "truncated": good[: len(good) // 2],
        "other purpose": tokens.issue(
            app_settings.secret, tokens.Purpose.SIGNATURE_MANAGE, signature.public_id
        ),
        "other key": tokens.issue(
            "another-key", tokens.Purpose.SIGNATURE_VERIFY, signature.public_id
        ),
        "expired": expired_token(app_settings, signature.public_id),
        "unknown signature": tokens.issue(
            app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, "no-such-signature"
        ),
    }


def test_bad_or_expired_links_get_a_page_that_explains_how_to_get_a_new_one(
    app: FastAPI, client: TestClient, letter: Letter, bad_tokens: dict[str, str]
) -> None:
    for kind, token in bad_tokens.items():
        for response in (
            client.get(f"/verify/{token}"),
            client.post(f"/verify/{token}", headers=BROWSER_POST, follow_redirects=False),
        ):
            assert response.status_code == 400, kind
            assert response.headers["content-type"].startswith("text/html"), kind
            assert "Confirm my signature" not in response.text, kind
            assert "go back to the letter and sign again" in response.text, kind
            expired = "This link has expired" in response.text
            assert expired == (kind == "expired"), kind
            gone = "This link no longer works" in response.text
            assert gone == (kind == "unknown signature"), kind
    assert signatures(app) == []
    assert tally_on(client.get(f"/letters/{letter.slug}").text) == 0


def test_confirming_after_the_letter_closed_is_refused(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    post_sign_form(client, letter.slug)
    deliver(app)
    [link] = _mailbox_links(client)
    with app.state.database.write() as session:
        session.execute(update(Letter).values(status=LetterStatus.CLOSED))

    response = client.post(link, headers=BROWSER_POST)

    assert response.status_code == 409
    assert "closed before your signature was confirmed" in response.text
    assert signatures(app) == []


def test_dev_mailbox_is_absent_with_the_smtp_backend(
    tmp_path: Path, app_settings: Settings
) -> None:
    settings = make_settings(tmp_path, app_settings.database_url, mail_backend=MailBackend.SMTP)
    with TestClient(create_app(settings)) as client:
        response = client.get("/dev/mail")
    assert response.status_code == 404
    assert "Page not found" in response.text


# --- bad input: a clear answer, never a 500, nothing stored ---

BAD_FIELDS = [
    pytest.param({"name": ""}, "name", "This field is required.", id="missing-name"),
    pytest.param({"name": "   "}, "name", "This field is required.", id="blank-name"),
    pytest.param({"email": ""}, "email", "This field is required.", id="missing-email"),
    pytest.param(
        {"email": "ada-at-example.org"},
        "email",
        "Enter an email address like name@example.org.",
        id="invalid-email",
    ),
    pytest.param(
        {"email": "ada@"},
        "email",
        "Enter an email address like name@example.org.",
        id="email-without-domain",
    ),
    pytest.param({"name": "N" * 121}, "name", "Use at most 120 characters.", id="long-name"),
    pytest.param(
        {"email": "a" * 250 + "@example.org"},
        "email",
        "Use at most 254 characters.",
        id="long-email",
    ),
    pytest.param({"title": "T" * 121}, "title", "Use at most 120 characters.", id="long-title"),
    pytest.param(
        {"organization": "A" * 201},
        "organization",
        "Use at most 200 characters.",
        id="long-organization",
    ),
    pytest.param({"city": "L" * 121}, "city", "Use at most 120 characters.", id="long-city"),
    pytest.param(
        {"name": "Ada\u202eecalevoL"},
        "name",
        "Remove invisible or control characters.",
        id="bidi-override",
    ),
    pytest.param(
        {"name": "Ada \u2067Lovelace"},
        "name",
        "Remove invisible or control characters.",
        id="bidi-isolate",
    ),
    pytest.param(
        {"name": "Ada\x00Lovelace"},
        "name",
        "Remove invisible or control characters.",
        id="nul-in-name",
    ),
    pytest.param(
        {"name": "Ada\x1b[31m"},
        "name",
        "Remove invisible or control characters.",
        id="escape-in-name",
    ),
    pytest.param(
        {"organization": "Evil\u202eCorp"},
        "organization",
        "Remove invisible or control characters.",
        id="bidi-in-organization",
    ),
    pytest.param(
        {"city": "Two\nlines"},
        "city",
        "Remove invisible or control characters.",
        id="newline-in-city",
    ),
    pytest.param(
        {"display": "everyone"}, "display", "Choose one of the options.", id="unknown-display"
    ),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD_FIELDS)
def test_bad_input_re_renders_the_form_with_errors_and_stores_nothing(
    app: FastAPI,
    client: TestClient,
    letter: Letter,
    fields: dict[str, str],
    field: str,
    message: str,
) -> None:
    response = post_sign_form(client, letter.slug, **fields)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "Please correct the fields marked below." in response.text
    if field == "display":
        assert f'<p class="error">{message}</p>' in response.text
    else:
        assert f'<p class="error" id="f-{field}-error">{message}</p>' in response.text
    if field != "display":
        assert f'id="f-{field}" name="{field}"' in response.text
        assert 'aria-invalid="true"' in response.text
    assert response.text.count('class="error"') == 1, "only the bad field is marked"
    # What was typed is kept, so nobody retypes the whole form.
    kept = {**GOOD_FORM, **fields}
    for name in ("name", "email", "title", "organization", "city"):
        assert (
            f'name="{name}" type="{"email" if name == "email" else "text"}" '
            f'value="{html.escape(kept[name])}"' in response.text
        ), name
    assert csrf_from(response.text) == client.cookies["csrf"]
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0


def test_anonymous_choice_is_kept_when_the_form_comes_back(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    response = post_sign_form(client, letter.slug, name="", display="anonymous", contact_ok="yes")
    assert response.status_code == 422
    assert re.search(r'value="anonymous"\s+checked', response.text)
    assert re.search(r'name="contact_ok" value="yes"\s+checked', response.text)


def test_several_bad_fields_are_all_reported(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    response = post_sign_form(client, letter.slug, name="", email="nope", title="x" * 500)
    assert response.status_code == 422
    for field in ("name", "email", "title"):
        assert f'id="f-{field}-error"' in response.text
    assert count(app, PendingSignature) == 0


def test_unknown_letters_are_404_pages(app: FastAPI, client: TestClient, letter: Letter) -> None:
    draft = add_letter(app, status=LetterStatus.DRAFT)
    for slug in ("no-such-letter", draft.slug):
        for response in (
            client.get(f"/letters/{slug}"),
            client.get(f"/letters/{slug}/signers"),
            client.get(f"/letters/{slug}/check-email"),
            client.post(f"/letters/{slug}/sign", data=GOOD_FORM, headers=BROWSER_POST),
        ):
            assert response.status_code == 404, response.url
            assert response.headers["content-type"].startswith("text/html")
            assert "Page not found" in response.text
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0


@pytest.mark.parametrize("how", ["status", "closes_at"])
def test_signing_a_closed_letter_is_409_and_stores_nothing(
    app: FastAPI, client: TestClient, letter: Letter, how: str
) -> None:
    with app.state.database.write() as session:
        if how == "status":
            session.execute(update(Letter).values(status=LetterStatus.CLOSED))
        else:
            session.execute(update(Letter).values(closes_at=utcnow() - timedelta(minutes=1)))

    response = client.post(
        f"/letters/{letter.slug}/sign",
        data=GOOD_FORM,
        headers=BROWSER_POST,
        follow_redirects=False,
    )

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("text/html")
    assert "not open for signatures" in response.text
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/letters/ice-out", "GET"),
        ("PUT", "/letters/ice-out", "GET"),
        ("GET", "/letters/ice-out/sign", "POST"),
        ("DELETE", "/verify/some-token", "GET"),
        ("POST", "/", "GET"),
    ],
)
def test_wrong_method_is_a_405_page(
    client: TestClient, letter: Letter, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("text/html")
    assert "That did not work" in response.text
    assert "This address does not accept that kind of request." in response.text
    assert allowed in response.headers["allow"]


def test_a_huge_form_is_refused_with_413_and_stores_nothing(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    response = post_sign_form(client, letter.slug, title="x" * (65 * 1024))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "What you sent is too large." in response.text
    assert count(app, PendingSignature) == 0


def test_a_huge_chunked_form_is_refused_too(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:

    def chunks() -> Iterator[bytes]:
        yield b"name=Ada&email=ada%40example.org&title="
        for _ in range(70):
            yield b"x" * 1024

    response = client.post(
        f"/letters/{letter.slug}/sign",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded", **BROWSER_POST},
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert count(app, PendingSignature) == 0


@pytest.mark.parametrize(
    "query",
    [
        "after=0",
        "after=-5",
        "after=abc",
        "after=99999999999999999999",
        "after=" + "x" * 201,
        "q=" + "x" * 101,
        "q=a%00b",
    ],
)
def test_bad_signer_list_parameters_are_422_pages(
    client: TestClient, letter: Letter, query: str
) -> None:
    response = client.get(f"/letters/{letter.slug}/signers?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "<!doctype html>" in response.text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b"name=Ada&email=ada%40example.org&csrf_token=%ff%fe",
            "application/x-www-form-urlencoded",
        ),
        (b'{"name": "Ada"}', "application/json"),
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken multipart", "multipart/form-data; boundary=x"),
        (b"", "text/plain"),
    ],
)
def test_odd_sign_requests_never_500_and_store_nothing(
    app: FastAPI, client: TestClient, letter: Letter, body: bytes, content_type: str
) -> None:
    client.get(f"/letters/{letter.slug}")  # has the CSRF cookie; the body has no token
    response = client.post(
        f"/letters/{letter.slug}/sign", content=body, headers={"content-type": content_type}
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("text/html")
    assert count(app, PendingSignature) == 0


def test_errors_are_html_pages_outside_the_api_and_json_inside(client: TestClient) -> None:
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text

    api = client.get("/api/v1/no/such/thing")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/json"
    assert api.json() == {"error": "not_found", "detail": "There is nothing at this address."}


def test_odd_slugs_are_404_pages_on_every_database(
    clean_database: Database, settings: Settings
) -> None:
    """PostgreSQL refuses a NUL byte in text: a slug no letter can have is answered
    before any query (it was a 500 there)."""
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        for slug in ("a%00b", "%00", "A-B", "x" * 81, "a--b", "%ff"):
            for response in (
                client.get(f"/letters/{slug}"),
                client.get(f"/letters/{slug}/signers"),
                client.get(f"/letters/{slug}/check-email"),
            ):
                assert response.status_code == 404, (slug, response.url)
                assert "Page not found" in response.text
        with clean_database.write() as session:
            make_letter(session, slug="real-letter")
        assert client.get("/letters/real-letter").status_code == 200
        response = client.post(
            "/letters/a%00b/sign", data=GOOD_FORM, headers=BROWSER_POST, follow_redirects=False
        )
        assert response.status_code == 404


# --- each letter's rules for its signers ---


def _sign_form(page_html: str) -> str:
    match = re.search(
        r'<form method="post" action="/letters/[^"]+/sign".*?</form>', page_html, re.S
    )
    assert match, "no sign form"
    return match.group(0)


def test_the_form_asks_only_for_what_the_letter_asks_for(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(
        app,
        field_title=FieldRule.OFF,
        field_organization=FieldRule.REQUIRED,
        field_city=FieldRule.OPTIONAL,
        field_comment=FieldRule.OPTIONAL,
        allow_anonymous=False,
    )
    form = _sign_form(client.get(f"/letters/{letter.slug}").text)

    assert 'name="title"' not in form
    assert re.search(
        r'<label for="f-organization">Organization <span class="req">\(required\)', form
    )
    assert re.search(r'id="f-organization" name="organization"[^>]* required', form)
    assert "Required unless you sign anonymously" not in form  # no anonymous choice here
    assert re.search(r'<label for="f-city">City</label>', form)
    assert not re.search(r'id="f-city" name="city"[^>]* required', form)
    # The comment: a text area with its hint, and the consent to show it.
    assert re.search(r'<label for="f-comment">Why I signed</label>', form)
    assert re.search(r'<textarea id="f-comment" name="comment" rows="4" maxlength="1000"', form)
    assert 'aria-describedby="f-comment-hint"' in form
    hint = re.search(r'<p class="hint" id="f-comment-hint">([^<]+)</p>', form)
    assert hint and "organizers read it" in hint.group(1)
    assert "only if you tick the box below and an organizer approves it" in hint.group(1)
    assert re.search(
        r'<input type="checkbox" id="f-comment_public_ok" name="comment_public_ok"', form
    )
    # No anonymous choice, and the form says why.
    assert 'name="display"' not in form
    assert "does not accept anonymous signatures" in form


def test_the_default_form_has_no_comment_and_offers_anonymity(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    form = _sign_form(client.get(f"/letters/{letter.slug}").text)
    for field in ("name", "email", "title", "organization", "city", "contact_ok"):
        assert f'name="{field}"' in form, field
    assert 'name="comment"' not in form and 'name="comment_public_ok"' not in form
    assert 'value="anonymous"' in form
    assert form.count("(required)") == 2  # name and email


def test_a_required_comment_is_marked_and_required_fields_for_public_signers_say_so(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, field_comment=FieldRule.REQUIRED, field_city=FieldRule.REQUIRED)
    form = _sign_form(client.get(f"/letters/{letter.slug}").text)
    assert re.search(r'<label for="f-comment">Why I signed <span class="req">\(required\)', form)
    assert re.search(r'<textarea id="f-comment"[^>]* required', form)
    assert re.search(r'id="f-city-hint">Required unless you sign anonymously.<', form)


def test_required_fields_left_empty_re_render_the_form_and_store_nothing(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(
        app, field_organization=FieldRule.REQUIRED, field_comment=FieldRule.REQUIRED
    )
    response = post_sign_form(client, letter.slug, organization=" ", comment="")

    assert response.status_code == 422
    assert "Please correct the fields marked below." in response.text
    assert '<p class="error" id="f-organization-error">This field is required.</p>' in response.text
    assert '<p class="error" id="f-comment-error">This field is required.</p>' in response.text
    assert re.search(r'<textarea id="f-comment"[^>]* aria-invalid="true"', response.text)
    summary = re.findall(r'<li><a href="#f-(\w+)">([^<]+)</a></li>', response.text)
    assert summary == [
        ("organization", "Organization: This field is required."),
        ("comment", "Why I signed: This field is required."),
    ]
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0


def test_schema_errors_and_the_letters_rules_are_reported_together(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, field_city=FieldRule.REQUIRED)
    response = post_sign_form(client, letter.slug, email="nope", city="")
    assert response.status_code == 422
    summary = [
        field for field, _ in re.findall(r'<li><a href="#f-(\w+)">([^<]+)</a>', response.text)
    ]
    assert summary == ["email", "city"]  # in the form's order
    assert count(app, PendingSignature) == 0


def test_anonymous_signing_refused_by_the_letter_is_a_422_with_a_clear_message(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, allow_anonymous=False)
    response = post_sign_form(client, letter.slug, display="anonymous")

    assert response.status_code == 422
    message = "This letter does not accept anonymous signatures: sign with your name."
    assert f'<p class="error" id="f-display" tabindex="-1">{message}</p>' in response.text
    assert f'<a href="#f-display">Anonymous signature: {message}</a>' in response.text
    assert count(app, PendingSignature) == 0


def test_a_comment_too_long_is_a_422(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, field_comment=FieldRule.OPTIONAL)
    response = post_sign_form(client, letter.slug, comment="x" * 1001)
    assert response.status_code == 422
    assert '<p class="error" id="f-comment-error">Use at most 1000 characters.</p>' in response.text
    assert count(app, PendingSignature) == 0


def test_the_comment_is_kept_as_typed_and_shown_on_the_verify_page(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, field_comment=FieldRule.OPTIONAL, field_city=FieldRule.OFF)
    typed = "Because <b>we</b> care.\r\nAll of us."
    refused = post_sign_form(client, letter.slug, name="", comment=typed, comment_public_ok="yes")
    assert refused.status_code == 422  # what was typed comes back, escaped
    assert "Because &lt;b&gt;we&lt;/b&gt; care." in refused.text
    assert re.search(r'name="comment_public_ok" value="yes"\s+checked', refused.text)

    response = post_sign_form(client, letter.slug, comment=typed, comment_public_ok="yes")
    assert response.status_code == 303
    [pending] = pending_signatures(app)
    assert (pending.comment, pending.comment_public_ok) == (
        "Because <b>we</b> care.\nAll of us.",
        True,
    )
    assert pending.city == ""  # sent, but the letter does not ask for it
    deliver(app)
    [link] = _mailbox_links(client)
    page = client.get(link)
    assert (
        '<span class="comment-text">Because &lt;b&gt;we&lt;/b&gt; care.\nAll of us.</span>'
        in page.text
    )
    assert "shown in public only if an organizer approves it" in page.text
    client.post(link, data={"csrf_token": csrf_from(page.text)})
    [signature] = signatures(app)
    assert (signature.comment, signature.comment_public_ok) == (pending.comment, True)
    assert signature.public_id and signature.version == 1
    assert pending_signatures(app)[0].comment == ""


def test_a_letter_that_keeps_its_signers_to_itself(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, show_signers=False)
    add_verified_signers(app, letter, {"name": "Grace Hopper", "organization": "Navy"})

    page = client.get(f"/letters/{letter.slug}")
    assert page.status_code == 200
    assert tally_on(page.text) == 1  # the tally stays public
    assert "Grace Hopper" not in page.text and "Recent signers" not in page.text
    assert f'href="/letters/{letter.slug}/signers"' not in page.text

    for params in ({}, {"q": "Grace"}):
        signers = client.get(f"/letters/{letter.slug}/signers", params=params)
        assert signers.status_code == 200
        assert "chose not to publish the list of signers" in signers.text
        assert "Grace Hopper" not in signers.text and "Navy" not in signers.text
        assert tally_on(signers.text) == 1
