"""The manage page, `/signature/{token}`, through the app: private headers, the
invalid-link page, CSRF, and each change."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.signatures import manage
from app.signatures.models import Signature, SignatureStatus
from tests.support.factories import sign, sign_and_confirm, tampered
from tests.web.conftest import csrf_from
from tests.web.flows import add_letter, tally_on

NAME = "Philippa Manageworth"


def _signed(app: FastAPI) -> tuple[str, str, int]:
    """A letter with one confirmed signature: (slug, manage path, signature id)."""
    letter = add_letter(app)
    with app.state.database.write() as session:
        signature = sign_and_confirm(session, letter, app.state.settings, name=NAME,
                                     email="philippa@works.example", contact_ok=True)  # fmt: skip
        assert signature.public_id
        token = manage.manage_token(app.state.settings, signature.public_id)
        return letter.slug, f"/signature/{token}", signature.id


def _row(app: FastAPI, signature_id: int) -> Signature:
    with app.state.database.read() as session:
        row: Signature = session.get_one(Signature, signature_id)
        return row


def _private(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert "noindex" in headers["x-robots-tag"]


def test_the_page_shows_the_signature_privately_and_changes_nothing(
    app: FastAPI, client: TestClient
) -> None:
    _, path, signature_id = _signed(app)
    page = client.get(path)
    assert page.status_code == 200
    _private(page)
    assert '<meta name="robots" content="noindex, nofollow">' in page.text
    assert NAME in page.text and "philippa@works.example" not in page.text
    assert "Withdraw my signature" in page.text and "Stop updates" in page.text
    assert _row(app, signature_id).status == SignatureStatus.VERIFIED


def test_a_tampered_link_gets_the_invalid_link_page(app: FastAPI, client: TestClient) -> None:
    _, path, _ = _signed(app)
    page = client.get(tampered(path))
    assert page.status_code == 400
    _private(page)
    assert "This link does not work" in page.text
    assert NAME not in page.text


def test_a_link_never_confirmed_says_so(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    with app.state.database.write() as session:
        pending = sign(session, letter, app.state.settings)
        token = manage.manage_token(app.state.settings, pending.public_id)
    page = client.get(f"/signature/{token}")
    assert page.status_code == 400
    _private(page)
    assert "This signature was never confirmed" in page.text


def test_changes_need_the_csrf_token(app: FastAPI, client: TestClient) -> None:
    _, path, signature_id = _signed(app)
    client.get(path)  # the CSRF cookie
    for action in ("withdraw", "stop-updates", "display"):
        response = client.post(f"{path}/{action}", data={"display": "anonymous"})
        assert response.status_code == 403, action
    row = _row(app, signature_id)
    assert row.status == SignatureStatus.VERIFIED and row.name == NAME and row.email


def test_anonymous_then_stop_updates_then_withdraw(app: FastAPI, client: TestClient) -> None:
    slug, path, signature_id = _signed(app)
    assert tally_on(client.get(f"/letters/{slug}").text) == 1

    page = client.get(path)
    response = client.post(f"{path}/stop-updates", data={"csrf_token": csrf_from(page.text)},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == f"{path}?done=updates"
    _private(response)
    assert _row(app, signature_id).email is None

    page = client.get(path)
    response = client.post(f"{path}/display", data={"csrf_token": csrf_from(page.text),
                           "display": "anonymous"})  # fmt: skip
    assert response.status_code == 200 and "Saved." in response.text
    assert NAME not in response.text
    assert _row(app, signature_id).name == ""
    assert NAME not in client.get(f"/letters/{slug}").text

    page = client.get(path)
    response = client.post(f"{path}/withdraw", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 200
    assert "Your signature is withdrawn" in response.text
    assert tally_on(client.get(f"/letters/{slug}").text) == 0
    # Again (a second tab): still withdrawn, counted once.
    response = client.post(f"{path}/withdraw", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 200
    assert tally_on(client.get(f"/letters/{slug}").text) == 0
    with app.state.database.read() as session:
        status = session.scalar(select(Signature.status).where(Signature.id == signature_id))
    assert status == SignatureStatus.WITHDRAWN


def test_a_refused_change_says_why(app: FastAPI, client: TestClient) -> None:
    _, path, signature_id = _signed(app)
    page = client.get(path)
    response = client.post(f"{path}/display", data={"csrf_token": csrf_from(page.text),
                           "display": "public", "name_threshold": "10"})  # fmt: skip
    # A threshold without the badge is simply not kept: nothing to refuse.
    assert response.status_code == 200 and "Nothing needed changing" in response.text
    form = {"display": "public", "show_domain": "yes", "name_threshold": "7"}
    response = client.post(f"{path}/display", data={"csrf_token": csrf_from(page.text), **form})
    assert response.status_code == 422
    assert "Choose one of the offered numbers" in response.text
    assert _row(app, signature_id).show_domain is False
