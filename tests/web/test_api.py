"""The JSON API, /api/v1: shapes exactly as in the SPEC, and JSON errors."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from app import tokens
from app.config import Settings
from app.db import Database, utcnow
from app.letters.models import FieldRule, Letter, LetterStatus
from app.mail.backends import DevMailbox
from app.mail.models import OutboxEmail
from app.main import create_app
from app.signatures.models import PendingSignature, Signature, SignatureStatus
from app.signatures.service import encode_cursor
from tests.support.databases import truncate
from tests.support.factories import make_letter, tampered
from tests.web.flows import (
    GOOD_FORM,
    add_letter,
    add_verified_signers,
    count,
    deliver,
    expired_token,
    outbox,
    pending_signature,
    pending_signatures,
    signatures,
)

LETTER_KEYS = {"slug", "title", "summary", "status", "signature_count", "goal", "closes_at", "url"}
DETAIL_KEYS = LETTER_KEYS | {
    "body_html",
    "addressed_to",
    "published_at",
    "signer_fields",
    "allow_anonymous",
    "show_signers",
    "signers",
    "language",
    "translations",
}
SIGNER_KEYS = {
    "name",
    "title",
    "organization",
    "city",
    "verified_domain",
    "verified_company",
    "organizer_confirmed",
    "signed_on",
}


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    return add_letter(
        app,
        slug="ice-out",
        title="Cancel the contracts",
        goal=100,
        addressed_to="The CEO",
        summary="Short.",
    )


def _is_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def _signatures_url(slug: str) -> str:
    return f"/api/v1/letters/{slug}/signatures"


# --- letters ---


def test_letters_list_has_exactly_the_spec_fields(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    closes = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    other = add_letter(app, title="Other", goal=None, closes_at=closes)
    add_letter(app, title="Draft", status=LetterStatus.DRAFT)
    add_verified_signers(app, letter, {}, {})

    response = client.get("/api/v1/letters")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items"}
    assert [item["slug"] for item in body["items"]] == ["ice-out", other.slug]
    first, second = body["items"]
    assert set(first) == LETTER_KEYS
    assert first == {
        "slug": "ice-out",
        "title": "Cancel the contracts",
        "summary": "Short.",
        "status": "open",
        "signature_count": 2,
        "goal": 100,
        "closes_at": None,
        "url": "http://testserver/letters/ice-out",
    }
    assert second["goal"] is None
    assert datetime.fromisoformat(second["closes_at"]) == closes


def test_letter_detail_adds_body_recipient_and_publication_date(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    response = client.get("/api/v1/letters/ice-out")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == DETAIL_KEYS
    assert body["body_html"] == "<p>We ask for <strong>one thing</strong>.</p>\n"
    assert (body["language"], body["translations"]) == ("en", [])  # tests/web/test_letter_looks.py
    assert body["addressed_to"] == "The CEO"
    published = datetime.fromisoformat(body["published_at"])
    assert abs(published - utcnow()) < timedelta(minutes=1)
    assert body["signature_count"] == 0
    # What the sign form asks for, so that an API client can build its own.
    assert body["signer_fields"] == {
        "title": "optional",
        "organization": "optional",
        "city": "optional",
        "comment": "off",
    }
    assert body["allow_anonymous"] is True
    assert body["show_signers"] is True


def test_letter_detail_says_which_signer_fields_a_letter_asks_for(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(
        app,
        field_title="off",
        field_organization="required",
        field_comment="optional",
        allow_anonymous=False,
        show_signers=False,
    )
    body = client.get(f"/api/v1/letters/{letter.slug}").json()
    assert body["signer_fields"] == {
        "title": "off",
        "organization": "required",
        "city": "optional",
        "comment": "optional",
    }
    assert (body["allow_anonymous"], body["show_signers"]) == (False, False)


def test_unknown_or_draft_letters_are_json_404(app: FastAPI, client: TestClient) -> None:
    draft = add_letter(app, status=LetterStatus.DRAFT)
    for slug in ("nope", draft.slug):
        _is_error(client.get(f"/api/v1/letters/{slug}"), 404, "letter_not_found")
        _is_error(client.get(_signatures_url(slug)), 404, "letter_not_found")
    assert draft.slug not in client.get("/api/v1/letters").text


# --- signatures list ---


def test_signatures_list_shape_and_anonymous_signers(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    add_verified_signers(
        app,
        letter,
        {
            "name": "Grace Hopper",
            "title": "Rear Admiral",
            "organization": "US Navy",
            "city": "Arlington",
        },
        {
            "name": "Hidden Person",
            "title": "Secret",
            "organization": "Hidden Org",
            "city": "Hidden City",
            "display": "anonymous",
        },
        {"name": "Bare Name", "title": "", "organization": "", "city": ""},
    )

    response = client.get(_signatures_url("ice-out"))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    bare, anonymous, grace = body["items"]  # newest first
    for item in body["items"]:
        assert set(item) == SIGNER_KEYS
        assert date.fromisoformat(item["signed_on"]) == utcnow().date()
    assert grace == {
        "name": "Grace Hopper",
        "title": "Rear Admiral",
        "organization": "US Navy",
        "city": "Arlington",
        "verified_domain": None,
        "verified_company": None,
        "organizer_confirmed": False,
        "signed_on": grace["signed_on"],
    }
    assert anonymous == {
        **dict.fromkeys(SIGNER_KEYS),
        "organizer_confirmed": False,
        "signed_on": anonymous["signed_on"],
    }
    assert bare["name"] == "Bare Name"
    assert (bare["title"], bare["organization"], bare["city"]) == (None, None, None)
    assert "Hidden" not in response.text


def test_pending_signatures_are_not_listed(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    pending_signature(app, letter, name="Not Yet")
    response = client.get(_signatures_url("ice-out"))
    assert response.json() == {"items": [], "next_cursor": None}


def test_signatures_cursor_walks_every_signer_once(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    names = [f"Signer {n}" for n in range(7)]
    add_verified_signers(app, letter, *({"name": name} for name in names))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        body = client.get(_signatures_url("ice-out"), params=params).json()
        seen += [item["name"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
        assert not cursor.isdigit()  # opaque: not a row id
    assert pages == 3
    assert seen == list(reversed(names))


def test_signatures_search(app: FastAPI, client: TestClient, letter: Letter) -> None:
    add_verified_signers(
        app,
        letter,
        {"name": "Ada Lovelace", "organization": "Engines"},
        {"name": "Alan Turing", "organization": "Bletchley"},
        {"name": "Joan Clarke", "organization": "Bletchley"},
    )
    by_org = client.get(_signatures_url("ice-out"), params={"q": " bletchley "}).json()
    assert sorted(item["name"] for item in by_org["items"]) == ["Alan Turing", "Joan Clarke"]
    by_name = client.get(_signatures_url("ice-out"), params={"q": "LOVE"}).json()
    assert [item["name"] for item in by_name["items"]] == ["Ada Lovelace"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "-1"}, "cursor"),
        ({"cursor": "1.5"}, "cursor"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "²"}, "cursor"),
        ({"cursor": "99999999999999999999"}, "cursor"),  # a number is not a cursor
        ({"cursor": "2147483648"}, "cursor"),
        ({"cursor": "1" * 201}, "cursor"),
        ({"q": "ab"}, "q"),  # too short to search with an index
        ({"q": "x" * 101}, "q"),
        ({"q": "a\x00b"}, "q"),  # PostgreSQL refuses NUL in text
        ({"q": "a\nb"}, "q"),
    ],
)
def test_bad_list_parameters_are_json_422(
    client: TestClient, letter: Letter, params: dict[str, Any], field: str
) -> None:
    body = _is_error(client.get(_signatures_url("ice-out"), params=params), 422, "invalid_input")
    assert field in body["fields"]


def test_limit_bounds_are_inclusive(app: FastAPI, client: TestClient, letter: Letter) -> None:
    add_verified_signers(app, letter, {}, {})
    assert len(client.get(_signatures_url("ice-out"), params={"limit": 1}).json()["items"]) == 1
    assert len(client.get(_signatures_url("ice-out"), params={"limit": 100}).json()["items"]) == 2


# --- signing ---


def test_signing_answers_202_pending_for_new_pending_and_verified_addresses(
    app: FastAPI, app_settings: Settings, client: TestClient, letter: Letter
) -> None:
    url = _signatures_url("ice-out")
    new = client.post(url, json=GOOD_FORM)
    pending = client.post(url, json={**GOOD_FORM, "email": "Ada+x@EXAMPLE.org"})
    deliver(app)
    first = pending_signatures(app)[0]
    token = tokens.issue(app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, first.public_id)
    assert client.post("/api/v1/signatures/verify", json={"token": token}).status_code == 200
    verified = client.post(url, json={**GOOD_FORM, "display": "anonymous"})

    for response in (new, pending, verified):
        assert response.status_code == 202
        assert response.json() == {"status": "pending"}
    assert new.content == pending.content == verified.content
    assert new.headers.get("set-cookie") is None  # the API sets no cookie
    assert count(app, Signature) == 1
    deliver(app)
    assert [email.kind for email in outbox(app)] == ["verify", "verify", "already_signed"]
    assert signatures(app)[0].display.value == "public"


def test_signing_stores_a_pending_signature_and_its_email(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    response = client.post(_signatures_url("ice-out"), json={**GOOD_FORM, "contact_ok": True})
    assert response.status_code == 202
    [pending] = pending_signatures(app)
    assert pending.contact_ok is True
    assert pending.email_domain == "example.org"
    assert signatures(app) == []
    assert deliver(app) == 1
    [message] = DevMailbox(app.state.settings.data_dir / "dev-mail").messages()
    assert message["To"] == "ada@example.org"
    body = message.get_body(("plain",))
    assert body is not None
    assert re.search(r"http://testserver/verify/\S+", body.get_content())
    [email] = outbox(app)
    assert (email.to_address, email.text_body) == (None, "")  # sent: forgotten


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in GOOD_FORM.items() if k != "name"}, "name"),
        ({**GOOD_FORM, "name": ""}, "name"),
        ({**GOOD_FORM, "email": "not an email"}, "email"),
        ({**GOOD_FORM, "email": None}, "email"),
        ({**GOOD_FORM, "name": "x" * 121}, "name"),
        ({**GOOD_FORM, "organization": "x" * 201}, "organization"),
        ({**GOOD_FORM, "name": "Ada\u202eLovelace"}, "name"),
        ({**GOOD_FORM, "title": "A\x00B"}, "title"),
        ({**GOOD_FORM, "display": "everyone"}, "display"),
        ({**GOOD_FORM, "name": 42}, "name"),
        ({**GOOD_FORM, "contact_ok": "perhaps"}, "contact_ok"),
    ],
)
def test_bad_signatures_are_json_422_with_field_errors_and_store_nothing(
    app: FastAPI, client: TestClient, letter: Letter, body: dict[str, Any], field: str
) -> None:
    response = client.post(_signatures_url("ice-out"), json=body)

    error = _is_error(response, 422, "invalid_input")
    assert set(error["fields"]) == {field}
    assert isinstance(error["fields"][field], str) and error["fields"][field]
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0


NOT_JSON = "The body is not valid JSON."
NOT_AN_OBJECT = "Send a JSON object, with Content-Type: application/json."


@pytest.mark.parametrize(
    ("content", "content_type", "problem"),
    [
        (b"{not json", "application/json", NOT_JSON),
        (b"\xff\xfe\xfa", "application/json", NOT_JSON),  # not UTF-8: FastAPI says 400
        (b"[" * 50_000, "application/json", NOT_JSON),  # too deep for the parser
        (b"[]", "application/json", NOT_AN_OBJECT),
        (b'"just a string"', "application/json", NOT_AN_OBJECT),
        (b"null", "application/json", NOT_AN_OBJECT),
        (b"", "application/json", NOT_AN_OBJECT),
        (b"name=Ada&email=ada%40example.org", "application/x-www-form-urlencoded", NOT_AN_OBJECT),
        (b'{"name": "Ada", "email": "ada@example.org"}', "text/plain", NOT_AN_OBJECT),
        (b'{"name": "Ada", "email": "ada@example.org"}', "", NOT_AN_OBJECT),
    ],
)
def test_malformed_bodies_are_json_422_and_store_nothing(
    app: FastAPI,
    client: TestClient,
    letter: Letter,
    content: bytes,
    content_type: str,
    problem: str,
) -> None:
    # A cross-site HTML form can only send form encodings: the API must refuse them. A
    # wrong Content-Type is a 422 like any other body that is not a JSON object (the
    # schema says so), not a 415.
    headers = {"content-type": content_type} if content_type else {}
    for url in (_signatures_url("ice-out"), "/api/v1/signatures/verify"):
        response = client.post(url, content=content, headers=headers)
        body = _is_error(response, 422, "invalid_input")
        assert body["fields"] == {"body": problem}, url
    assert count(app, PendingSignature) == 0


def test_a_json_subtype_is_json(client: TestClient, letter: Letter) -> None:
    response = client.post(
        _signatures_url("ice-out"),
        content=json.dumps(GOOD_FORM),
        headers={"content-type": "application/merge-patch+json; charset=utf-8"},
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    "slug",
    [
        "a%00b",  # PostgreSQL refuses a NUL in text: it must never reach a query
        "ice-out%00",
        "%00",
        "ice-out%0A",
        "Ice-Out",
        "ice_out",
        "-ice-out",
        "ice--out",
        "%C3%A9t%C3%A9",
        "%ED%A0%80",  # a lone surrogate, percent-encoded
        "x" * 81,
    ],
)
def test_a_slug_no_letter_can_have_is_json_404_before_any_query(
    settings: Settings, slug: str
) -> None:
    """On SQLite and PostgreSQL alike (the `settings` fixture runs on both)."""
    with TestClient(create_app(settings)) as client:
        for response in (
            client.get(f"/api/v1/letters/{slug}"),
            client.get(_signatures_url(slug)),
            client.post(_signatures_url(slug), json=GOOD_FORM),
        ):
            _is_error(response, 404, "letter_not_found")


def test_nul_in_a_query_parameter_is_json_422_on_every_database(settings: Settings) -> None:
    # Checked before the letter is looked up, so no NUL ever reaches a query.
    with TestClient(create_app(settings)) as client:
        for params in ({"q": "a\x00b"}, {"cursor": "1\x00"}, {"limit": "1\x00"}):
            response = client.get(_signatures_url("nope"), params=params)
            assert set(_is_error(response, 422, "invalid_input")["fields"]) == set(params)
        _is_error(client.get(_signatures_url("nope")), 404, "letter_not_found")


def test_the_largest_cursor_works_on_every_database(
    clean_database: Database, settings: Settings
) -> None:
    """Positions are 32-bit on PostgreSQL: a bigger one was a 500 there (when cursors
    were plain numbers). Cursors are signed now; the bound still holds for a forged one."""
    try:
        with clean_database.write() as session:
            make_letter(session, slug="bounds")
        with TestClient(create_app(settings)) as client:
            url = _signatures_url("bounds")
            largest = encode_cursor(settings, 2**31 - 1)
            assert client.get(url, params={"cursor": largest}).json() == {
                "items": [],
                "next_cursor": None,
            }
            beyond = client.get(url, params={"cursor": encode_cursor(settings, 2**31)})
            assert _is_error(beyond, 422, "invalid_input")["fields"] == {"cursor": "not a cursor"}
    finally:
        truncate(clean_database)  # the PostgreSQL database is shared by the whole run


def test_signing_an_unknown_letter_is_json_404(app: FastAPI, client: TestClient) -> None:
    _is_error(client.post(_signatures_url("nope"), json=GOOD_FORM), 404, "letter_not_found")
    assert count(app, PendingSignature) == 0


def test_signing_a_closed_letter_is_json_409(app: FastAPI, client: TestClient) -> None:
    closed = add_letter(app, status=LetterStatus.CLOSED)
    expired = add_letter(app, closes_at=utcnow() - timedelta(seconds=1))
    for slug in (closed.slug, expired.slug):
        _is_error(client.post(_signatures_url(slug), json=GOOD_FORM), 409, "letter_not_open")
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0


def test_a_huge_body_is_json_413(app: FastAPI, client: TestClient, letter: Letter) -> None:
    response = client.post(
        _signatures_url("ice-out"), json={**GOOD_FORM, "comment": "x" * (65 * 1024)}
    )
    assert _is_error(response, 413, "too_large")["detail"] == "What you sent is too large."
    assert count(app, PendingSignature) == 0


def test_wrong_method_is_json_405(client: TestClient, letter: Letter) -> None:
    body = _is_error(client.delete("/api/v1/letters/ice-out"), 405, "method_not_allowed")
    assert body["detail"] == "This address does not accept that kind of request."
    _is_error(client.get("/api/v1/signatures/verify"), 405, "method_not_allowed")


# --- verifying ---


def test_verify_counts_once(
    app: FastAPI, app_settings: Settings, client: TestClient, letter: Letter
) -> None:
    signature = pending_signature(app, letter)
    token = tokens.issue(app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)

    first = client.post("/api/v1/signatures/verify", json={"token": token})
    second = client.post("/api/v1/signatures/verify", json={"token": token})

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"status": "verified"}
    assert client.get("/api/v1/letters/ice-out").json()["signature_count"] == 1
    assert signatures(app)[0].status == SignatureStatus.VERIFIED


def test_bad_tokens_are_json_400(
    app: FastAPI, app_settings: Settings, client: TestClient, letter: Letter
) -> None:
    signature = pending_signature(app, letter)
    good = tokens.issue(app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)
    bad = [
        tampered(good),
        "garbage",
        tokens.issue(app_settings.secret, tokens.Purpose.UNSUBSCRIBE, signature.public_id),
        tokens.issue(app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, {"id": 1}),
    ]
    for token in bad:
        _is_error(
            client.post("/api/v1/signatures/verify", json={"token": token}), 400, "invalid_token"
        )
    expired = client.post(
        "/api/v1/signatures/verify",
        json={"token": expired_token(app_settings, signature.public_id)},
    )
    assert _is_error(expired, 400, "invalid_token")["expired"] is True
    assert signatures(app) == []
    assert client.get("/api/v1/letters/ice-out").json()["signature_count"] == 0


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": "x" * 501}, {"token": 5}])
def test_verify_without_a_usable_token_is_json_422(
    client: TestClient, body: dict[str, Any]
) -> None:
    _is_error(client.post("/api/v1/signatures/verify", json=body), 422, "invalid_input")


def test_verify_after_the_letter_closed_is_json_409(
    app: FastAPI, app_settings: Settings, client: TestClient, letter: Letter
) -> None:
    signature = pending_signature(app, letter)
    token = tokens.issue(app_settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)
    with app.state.database.write() as session:
        session.execute(update(Letter).values(status=LetterStatus.CLOSED))
    _is_error(
        client.post("/api/v1/signatures/verify", json={"token": token}), 409, "letter_not_open"
    )
    assert signatures(app) == []


# --- documentation and health ---


def test_openapi_documents_the_api(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert set(paths["/api/v1/letters"]) == {"get"}
    assert set(paths["/api/v1/letters/{slug}"]) == {"get"}
    assert set(paths["/api/v1/letters/{slug}/signatures"]) == {"get", "post"}
    assert set(paths["/api/v1/signatures/verify"]) == {"post"}
    assert "202" in paths["/api/v1/letters/{slug}/signatures"]["post"]["responses"]
    assert "/healthz" not in paths


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_no_swagger_or_redoc_they_would_load_a_cdn(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# --- each letter's rules for its signers ---


def test_a_required_field_left_empty_is_json_422_and_stores_nothing(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, field_title=FieldRule.REQUIRED, field_comment=FieldRule.REQUIRED)
    response = client.post(_signatures_url(letter.slug), json={**GOOD_FORM, "title": ""})

    error = _is_error(response, 422, "invalid_input")
    assert error["fields"] == {"title": "required", "comment": "required"}
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0


def test_anonymous_on_a_letter_that_refuses_it_is_json_422(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, allow_anonymous=False)
    response = client.post(_signatures_url(letter.slug), json={**GOOD_FORM, "display": "anonymous"})

    error = _is_error(response, 422, "invalid_input")
    assert error["fields"] == {"display": "not allowed"}
    assert "does not accept anonymous signatures" in error["detail"]
    assert count(app, PendingSignature) == 0


@pytest.mark.parametrize(
    "comment", ["x" * 1001, "bell\x07", "\u202eevil"], ids=["too-long", "control", "bidi"]
)
def test_a_bad_comment_is_json_422(app: FastAPI, client: TestClient, comment: str) -> None:
    letter = add_letter(app, field_comment=FieldRule.OPTIONAL)
    response = client.post(_signatures_url(letter.slug), json={**GOOD_FORM, "comment": comment})
    assert _is_error(response, 422, "invalid_input")["fields"].keys() == {"comment"}
    assert count(app, PendingSignature) == 0


def test_the_api_stores_what_the_letter_asks_for_and_nothing_else(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(
        app, field_organization=FieldRule.OFF, field_comment=FieldRule.OPTIONAL, version=4
    )
    body = {**GOOD_FORM, "comment": "Line one\nLine two", "comment_public_ok": True}
    response = client.post(_signatures_url(letter.slug), json=body)
    assert response.status_code == 202
    assert response.json() == {"status": "pending"}
    [pending] = pending_signatures(app)
    assert pending.organization == ""  # the letter does not ask for it
    assert (pending.title, pending.city) == (GOOD_FORM["title"], GOOD_FORM["city"])
    assert (pending.comment, pending.comment_public_ok) == ("Line one\nLine two", True)
    assert pending.version == 4


def test_a_letter_that_does_not_publish_its_signers_answers_404_signers_not_public(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, show_signers=False)
    add_verified_signers(app, letter, {"name": "Grace Hopper"})

    for params in ({}, {"q": "Grace"}, {"limit": 1}):
        response = client.get(_signatures_url(letter.slug), params=params)
        error = _is_error(response, 404, "signers_not_public")
        assert "Grace" not in response.text
        assert "do not publish" in error["detail"]
    assert client.get(f"/api/v1/letters/{letter.slug}").json()["signature_count"] == 1
    _is_error(client.get(_signatures_url("no-such-letter")), 404, "letter_not_found")


def test_hidden_signers_are_left_out_of_the_api_list(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    add_verified_signers(app, letter, {"name": "Shown Signer"}, {"name": "Hidden Signer"})
    with app.state.database.write() as session:
        session.execute(
            update(Signature).where(Signature.name == "Hidden Signer").values(hidden=True)
        )
    names = [item["name"] for item in client.get(_signatures_url(letter.slug)).json()["items"]]
    assert names == ["Shown Signer"]
    assert client.get(f"/api/v1/letters/{letter.slug}").json()["signature_count"] == 2


def test_openapi_documents_the_comment_and_the_letters_rules(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    signature_in = schema["components"]["schemas"]["SignatureIn"]
    comment = signature_in["properties"]["comment"]
    assert comment["maxLength"] == 1000
    assert "approves" in comment["description"]
    assert re.fullmatch(comment["pattern"], "line\r\nline\tx")
    assert not re.fullmatch(comment["pattern"], "bell\x07")
    assert signature_in["properties"]["comment_public_ok"]["type"] == "boolean"
    assert "required" in signature_in["properties"]["organization"]["description"]
    assert "anonymous" in signature_in["properties"]["display"]["description"]
    listing = schema["paths"]["/api/v1/letters/{slug}/signatures"]["get"]
    assert "signers_not_public" in listing["responses"]["404"]["description"]
    signing = schema["paths"]["/api/v1/letters/{slug}/signatures"]["post"]
    assert "required" in signing["responses"]["422"]["description"]
