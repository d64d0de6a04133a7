"""The sign form's traps, through the real app: a hidden honeypot field and the signed
moment the form was shown. A form that falls into one gets the same `303` as anyone's,
and nothing is kept but the AbuseEvent that counts it.

These tests turn the minimum time back on (`form_min_seconds=2`; the other tests run
with 0) and make "old enough" timestamps with the app's own key, as a person's browser
would carry after reading the letter for a while.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from app.abuse.models import AbuseEvent
from app.abuse.service import form_timestamp, source_hash
from app.letters.models import Letter
from app.mail.models import OutboxEmail
from app.main import create_app
from app.signatures.models import PendingSignature
from tests.support.config import make_settings
from tests.web.flows import BROWSER_POST, GOOD_FORM, add_letter, count, deliver, form_tokens

CLIENT_IP = "198.51.100.23"


@pytest.fixture
def app(tmp_path: Path, sqlite_template: Path) -> FastAPI:
    path = tmp_path / "traps.db"
    shutil.copy(sqlite_template, path)
    return create_app(make_settings(tmp_path, f"sqlite:///{path}", form_min_seconds=2))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver", client=(CLIENT_IP, 40000)) as client:
        yield client


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    return add_letter(app)


def _read_a_while(app: FastAPI, seconds: float = 30) -> str:
    """A timestamp as the form carries it after a person read the letter for a while."""
    return form_timestamp(app.state.settings.secret, now=time.time() - seconds)


def _post(client: TestClient, slug: str, **fields: Any) -> Response:
    page = client.get(f"/letters/{slug}")
    assert page.status_code == 200
    data = {**GOOD_FORM, **form_tokens(page.text), **fields}
    data = {name: value for name, value in data.items() if value is not None}
    return client.post(
        f"/letters/{slug}/sign", data=data, headers=BROWSER_POST, follow_redirects=False
    )


def _events(app: FastAPI) -> list[tuple[str, int | None, str]]:
    with app.state.database.read() as session:
        rows = session.scalars(select(AbuseEvent).order_by(AbuseEvent.id))
        return [(row.kind, row.letter_id, row.source_hash) for row in rows]


def _answer(response: Response) -> tuple[int, str, list[str]]:
    """What a client can see of a sign answer: status, where it goes, cookies it sets
    (name, value and attributes)."""
    cookies = sorted(response.headers.get_list("set-cookie"))
    return response.status_code, response.headers.get("location", ""), cookies


def test_the_form_carries_a_hidden_honeypot_and_its_render_time(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    page = client.get(f"/letters/{letter.slug}").text
    form = re.search(r'<form method="post" action="/letters/[^"]+/sign".*?</form>', page, re.S)
    assert form
    honeypot = re.search(
        r'<div class="visually-hidden" aria-hidden="true">\s*'
        r'<label for="f-homepage">Leave this field empty</label>\s*'
        r'<input id="f-homepage" name="homepage" type="text" value="" tabindex="-1" '
        r'autocomplete="off">\s*</div>',
        form.group(0),
    )
    assert honeypot, "no hidden honeypot with its label"
    rendered = form_tokens(page)["form_rendered"]
    assert re.search(
        rf'<input type="hidden" name="form_rendered" value="{re.escape(rendered)}">', page
    )
    # Signed with the app's key: a form shown now is too fresh to be sent back at once.
    assert _post(client, letter.slug).status_code == 303
    assert count(app, PendingSignature) == 0
    assert [kind for kind, *_ in _events(app)] == ["too_fast"]


def test_a_person_who_took_their_time_signs(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    response = _post(client, letter.slug, form_rendered=_read_a_while(app))
    assert response.status_code == 303
    assert response.headers["location"] == f"/letters/{letter.slug}/check-email"
    [pending] = _pending(app)
    assert pending.source_hash == source_hash(app.state.settings.secret, CLIENT_IP)
    assert _events(app) == []
    # A form left open for days is a person's too (the timestamp never expires).
    days = 3 * 86400
    assert _post(client, letter.slug, form_rendered=_read_a_while(app, days)).status_code == 303
    assert count(app, PendingSignature) == 2


def _pending(app: FastAPI) -> list[PendingSignature]:
    with app.state.database.read() as session:
        return list(session.scalars(select(PendingSignature).order_by(PendingSignature.id)))


TRAPS: dict[str, dict[str, Any]] = {
    "honeypot": {"homepage": "http://cheap-pills.example"},
    "too_fast": {"form_rendered": "shown a second ago"},
    "no_timestamp": {"form_rendered": None},
    "forged_timestamp": {"form_rendered": "eyJ0IjoxfQ.forged.signature"},
}


@pytest.mark.parametrize("trap", list(TRAPS))
def test_a_trapped_form_gets_anyones_answer_and_nothing_is_kept(
    app: FastAPI, client: TestClient, letter: Letter, trap: str
) -> None:
    person = _post(client, letter.slug, form_rendered=_read_a_while(app))
    assert count(app, PendingSignature) == 1

    fields: dict[str, Any] = {"form_rendered": _read_a_while(app), **TRAPS[trap]}
    if trap == "too_fast":
        fields["form_rendered"] = _read_a_while(app, seconds=1)
    bot = _post(client, letter.slug, email="target@example.org", **fields)

    # The same answer: 303 to check-email, the same cookie (its value: the masked
    # address each typed, which differ only in their first letter here).
    assert _answer(bot)[:2] == _answer(person)[:2]
    assert [c.replace("t%E2%80%A2", "a%E2%80%A2") for c in _answer(bot)[2]] == _answer(person)[2]
    # Nothing kept: no submission, no email; the event counted, with its source.
    assert count(app, PendingSignature) == 1
    deliver(app)
    assert count(app, OutboxEmail) == 1  # the person's link only
    kind = "no_timestamp" if trap == "forged_timestamp" else trap
    source = source_hash(app.state.settings.secret, CLIENT_IP)
    assert _events(app) == [(kind, letter.id, source)]
    # The check-email page it lands on is anyone's.
    landing = client.get(bot.headers["location"])
    assert landing.status_code == 200 and "t•••@example.org" in landing.text


def test_a_trapped_form_that_is_invalid_is_refused_like_anyones(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    response = _post(client, letter.slug, email="not-an-address", homepage="spam")
    assert response.status_code == 422
    assert 'id="f-email-error"' in response.text
    assert count(app, PendingSignature) == 0
    assert _events(app) == []  # nothing would have been kept anyway


def test_a_refused_form_keeps_the_time_it_was_first_shown(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    """A person who corrects a field is not "too fast": their time started when they
    first saw the form."""
    first_seen = _read_a_while(app)
    refused = _post(client, letter.slug, email="typo", form_rendered=first_seen)
    assert refused.status_code == 422
    assert form_tokens(refused.text)["form_rendered"] == first_seen
    corrected = {**GOOD_FORM, **form_tokens(refused.text)}
    response = client.post(f"/letters/{letter.slug}/sign", data=corrected, follow_redirects=False)
    assert response.status_code == 303
    assert count(app, PendingSignature) == 1 and _events(app) == []
    # A forged timestamp is not carried over: the page gets a fresh one of its own.
    again = _post(client, letter.slug, email="typo", form_rendered="forged")
    assert form_tokens(again.text)["form_rendered"] != "forged"


def test_traps_are_the_forms_the_api_has_none(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    body = {**GOOD_FORM, "homepage": "ignored here", "form_rendered": ""}
    response = client.post(f"/api/v1/letters/{letter.slug}/signatures", json=body)
    assert response.status_code == 202
    [pending] = _pending(app)
    assert pending.source_hash == source_hash(app.state.settings.secret, CLIENT_IP)
    assert _events(app) == []


def test_csrf_still_comes_first(app: FastAPI, client: TestClient, letter: Letter) -> None:
    data = {**GOOD_FORM, "homepage": "spam", "csrf_token": "wrong"}
    forged = client.post(
        f"/letters/{letter.slug}/sign",
        data=data,
        headers={"sec-fetch-site": "cross-site"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    unproven = client.post(f"/letters/{letter.slug}/sign", data=data, follow_redirects=False)
    assert unproven.status_code == 422  # the form again, to send with its token
    assert 'name="csrf_token"' in unproven.text
    assert _events(app) == []
