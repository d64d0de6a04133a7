"""The interface in English and Spanish: how a request's language is chosen (`?lang=`,
the `lang` cookie, `Accept-Language`), the switcher that needs no JavaScript, the
headers a shared cache needs, the in-process cache keeping the languages apart, error
messages, and a Spanish signer's emails through the real worker path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_string
from email.message import Message
from email.policy import default
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.db import utcnow
from app.letters.models import Letter, LetterTranslation
from app.main import create_app
from app.organizers.service import Actor
from app.signatures.models import Signature
from app.updates.schemas import UpdateIn
from app.updates.service import fan_out_updates, queue_update
from tests.support.config import make_settings
from tests.web.flows import (
    VERIFY_LINK,
    add_letter,
    add_verified_signers,
    deliver,
    pending_signatures,
    post_sign_form,
    signatures,
)

SPANISH = "es-MX,es;q=0.9,en;q=0.5"
SIGN_EN, SIGN_ES = "Sign the letter", "Firmar la carta"


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    letter = add_letter(app, slug="ice-out", goal=12000)
    add_verified_signers(
        app, letter, {"name": "Grace Hopper", "email": "grace@example.org", "contact_ok": True}
    )
    return letter


def _lang(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', html)
    assert match, "no <html lang>"
    return match.group(1)


def test_english_without_a_preference(client: TestClient, letter: Letter) -> None:
    page = client.get("/letters/ice-out")
    assert page.status_code == 200
    assert _lang(page.text) == "en"
    assert page.headers["content-language"] == "en"
    assert SIGN_EN in page.text and SIGN_ES not in page.text


def test_accept_language_chooses_spanish(client: TestClient, letter: Letter) -> None:
    page = client.get("/letters/ice-out", headers={"accept-language": SPANISH})
    assert _lang(page.text) == "es"
    assert page.headers["content-language"] == "es"
    assert SIGN_ES in page.text and SIGN_EN not in page.text
    assert "12.000" in page.text and "12,000" not in page.text  # the goal, in Spanish
    assert "set-cookie" not in page.headers or "lang=" not in page.headers["set-cookie"]


def test_the_query_wins_and_is_remembered_in_a_cookie(client: TestClient, letter: Letter) -> None:
    page = client.get("/letters/ice-out?lang=es", headers={"accept-language": "en"})
    assert _lang(page.text) == "es"
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("lang=es;") and "Max-Age=31536000" in cookie
    assert "SameSite=Lax" in cookie
    # The next page follows the cookie, whatever the browser's Accept-Language says...
    assert _lang(client.get("/", headers={"accept-language": "en"}).text) == "es"
    # ...and answers that follow it do not set it again.
    again = client.get("/", headers={"accept-language": "en"})
    assert "lang=" not in again.headers.get("set-cookie", "")
    # An unknown language in the query changes nothing.
    assert _lang(client.get("/?lang=tlh").text) == "es"


def test_the_switcher_needs_no_javascript(client: TestClient, letter: Letter) -> None:
    page = client.get("/letters/ice-out/signers?q=Grace")
    switcher = re.search(r'<nav class="language-switcher"[^>]*>(.*?)</nav>', page.text, re.S)
    assert switcher, "no language switcher"
    links = dict(re.findall(r'<a href="([^"]+)" hreflang="(\w+)"', switcher.group(1)))
    spanish = next(href for href, locale in links.items() if locale == "es")
    assert spanish.replace("&amp;", "&") == "/letters/ice-out/signers?lang=es&q=Grace"
    assert 'aria-current="true">English' in switcher.group(1)
    followed = client.get(spanish.replace("&amp;", "&"))
    assert followed.status_code == 200 and _lang(followed.text) == "es"
    assert "Firmantes" in followed.text
    assert 'aria-current="true">Español' in followed.text
    # Back to English with the other link, which also moves the cookie back.
    back = client.get("/?lang=en")
    assert _lang(back.text) == "en" and back.headers["set-cookie"].startswith("lang=en;")
    assert _lang(client.get("/").text) == "en"


def test_public_answers_vary_on_the_language(client: TestClient, letter: Letter) -> None:
    for path in ("/", "/letters/ice-out", "/letters/ice-out/signers"):
        vary = client.get(path).headers["vary"].lower()
        assert "accept-language" in vary and "accept-encoding" in vary, path
    # With a `lang` cookie, the answer depends on it too.
    client.cookies.set("lang", "es")
    assert "cookie" in client.get("/").headers["vary"].lower()


def test_error_pages_and_form_errors_are_translated(client: TestClient, letter: Letter) -> None:
    missing = client.get("/letters/nothing-here", headers={"accept-language": "es"})
    assert missing.status_code == 404
    assert _lang(missing.text) == "es"
    assert "No hay ninguna carta en esta dirección" in missing.text
    client.cookies.set("lang", "es")
    refused = post_sign_form(client, "ice-out", email="someone@mailinator.com")
    assert refused.status_code == 422
    assert "son desechables" in refused.text  # the refusal, built in Python, in Spanish
    empty = post_sign_form(client, "ice-out", name="")
    assert "Este campo es obligatorio." in empty.text


def test_api_errors_follow_the_language_and_data_does_not(
    client: TestClient, letter: Letter
) -> None:
    english = client.get("/api/v1/letters/nothing-here")
    spanish = client.get("/api/v1/letters/nothing-here", headers={"accept-language": "es"})
    assert english.json()["error"] == spanish.json()["error"] == "letter_not_found"
    assert english.json()["detail"] == "There is no letter at this address."
    assert spanish.json()["detail"] == "No hay ninguna carta en esta dirección."
    data = client.get("/api/v1/letters/ice-out", headers={"accept-language": "es"})
    assert data.json() == client.get("/api/v1/letters/ice-out").json()
    assert "lang=" not in client.get("/api/v1/letters?lang=es").headers.get("set-cookie", "")


@pytest.fixture
def cached_app(tmp_path: Path, app_settings: Settings) -> FastAPI:
    return create_app(make_settings(tmp_path, app_settings.database_url, public_cache_seconds=5))


@pytest.fixture
def cached_client(cached_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(cached_app, client=("127.0.0.1", 50000)) as client:
        yield client


def test_the_public_cache_never_answers_a_spanish_reader_in_english(
    cached_app: FastAPI, cached_client: TestClient
) -> None:
    add_letter(cached_app, slug="ice-out")
    first = cached_client.get("/letters/ice-out", headers={"accept-language": "en"})
    assert _lang(first.text) == "en"
    spanish = cached_client.get("/letters/ice-out", headers={"accept-language": "es"})
    assert _lang(spanish.text) == "es" and SIGN_ES in spanish.text
    assert spanish.headers["etag"] != first.headers["etag"]
    # A reader who chose Spanish with the cookie gets it too, and an English reader
    # afterwards still gets the English page from the cache.
    cached_client.cookies.set("lang", "es")
    assert _lang(cached_client.get("/letters/ice-out").text) == "es"
    cached_client.cookies.clear()
    again = cached_client.get("/letters/ice-out", headers={"accept-language": "en"})
    assert _lang(again.text) == "en" and again.headers["etag"] == first.headers["etag"]
    # A 304 for the English ETag is never given to the Spanish reader.
    revalidated = cached_client.get(
        "/letters/ice-out",
        headers={"accept-language": "es", "if-none-match": first.headers["etag"]},
    )
    assert revalidated.status_code == 200 and _lang(revalidated.text) == "es"


def _mail(app: FastAPI) -> list[Message]:
    settings: Settings = app.state.settings
    folder = settings.data_dir / "dev-mail"
    return [
        message_from_string(path.read_text(), policy=default)
        for path in sorted(folder.glob("*.eml"))
    ]


def _text(message: Message) -> str:
    part = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    assert part is not None
    return str(part.get_content())


def test_a_spanish_signer_gets_spanish_emails_through_the_worker(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    deliver(app)  # what setting up the letter queued
    with app.state.database.write() as session:
        session.add(
            LetterTranslation(
                letter_id=letter.id, locale="es", title="ICE fuera", summary="",
                body_markdown="Texto.", body_html="<p>Texto.</p>", updated_at=utcnow(),
            )
        )  # fmt: skip
    client.cookies.set("lang", "es")
    signed = post_sign_form(client, "ice-out", email="ana@example.org", contact_ok="on")
    assert signed.status_code == 303
    [pending] = [p for p in pending_signatures(app) if p.locale == "es"]
    # The worker runs outside any request (and so in English) and still writes Spanish.
    client.cookies.clear()
    assert deliver(app) == 1
    [email] = [m for m in _mail(app) if str(m["to"]) == "ana@example.org"]
    assert str(email["subject"]) == "Confirme su firma: ICE fuera"  # the title they read
    body = _text(email)
    assert "Para confirmar su firma, abra este enlace" in body
    html = email.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    assert html is not None and '<html lang="es">' in str(html.get_content())
    link = VERIFY_LINK.search(body)
    assert link
    confirm_page = client.get(f"/verify/{link.group(2)}")
    assert confirm_page.status_code == 200
    form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', confirm_page.text))
    confirmed = client.post(f"/verify/{link.group(2)}", data=form, follow_redirects=False)
    assert confirmed.status_code in (200, 303)
    # The confirmed signature keeps the language: the organizers' updates are written in it.
    [ana] = [s for s in signatures(app) if s.name == "Ada Lovelace"]
    assert ana.locale == "es"
    with app.state.database.read() as session:
        english = session.scalar(select(Signature).where(Signature.name == "Grace Hopper"))
        assert english is not None and english.locale == "en"
    _send_update(app)
    updates = {str(m["to"]): _text(m) for m in _mail(app) if "News" in str(m["subject"])}
    assert "Una novedad de" in updates["ana@example.org"]
    assert "An update from" in updates["grace@example.org"]
    assert pending.locale == "es"


def _send_update(app: FastAPI) -> None:
    """An update to the letter's signers, queued and fanned out as the worker does."""
    settings: Settings = app.state.settings
    with app.state.database.write() as session:
        letter = session.scalars(select(Letter).where(Letter.slug == "ice-out")).one()
        data = UpdateIn(subject="News", body="We delivered it.")
        queue_update(session, letter=letter, actor=Actor(None), data=data)
    with app.state.database.write() as session:
        assert fan_out_updates(session, settings=settings) == 2
    deliver(app)
