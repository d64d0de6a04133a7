"""A letter's email domains over HTTP: the dashboard's new and edit forms (saved, 422s
that store nothing), the overview, the audit log, and signing with a refused address
through the sign form and the API (422 on the email field, nothing stored)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.letters.models import Letter, LetterStatus
from app.mail.models import OutboxEmail
from app.organizers.models import Role
from app.signatures.models import PendingSignature
from app.templating import environment
from tests.support.organizers import post_form, sign_in_as
from tests.web.flows import GOOD_FORM, add_letter, count, post_sign_form

NEW = {
    "title": "From the staff",
    "slug": "from-the-staff",
    "body": "We ask for one thing.",
    "field_title": "optional",
    "field_organization": "optional",
    "field_city": "optional",
    "field_comment": "off",
    "allow_anonymous": "yes",
    "show_signers": "yes",
    "action": "save",
}
THROWAWAY = "mailinator.com"


def stored(app: FastAPI, slug: str) -> Letter | None:
    with app.state.database.read() as session:
        letter: Letter | None = session.scalar(select(Letter).where(Letter.slug == slug))
    return letter


def text(page: Any) -> str:
    """The page's text, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def textarea(page: Any, name: str) -> str:
    match = re.search(
        rf'<textarea id="f-{name}" name="{name}"([^>]*)>([^<]*)</textarea>', page.text
    )
    assert match, f"no {name} textarea"
    return match.group(1) + "|" + html.unescape(match.group(2))


def owner_of(client: TestClient, app: FastAPI, letter: Letter) -> None:
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)


# --- the dashboard ---------------------------------------------------------------------------


def test_the_new_letter_form_asks_for_both_lists(app: FastAPI, client: TestClient) -> None:
    sign_in_as(client, app, "organizer@example.org")
    page = client.get("/dashboard/letters/new")
    assert page.status_code == 200
    for name, label in (("forbidden_domains", "Refused email domains"),
                        ("required_domains", "Only these email domains")):  # fmt: skip
        assert f'<label for="f-{name}">{label}</label>' in page.text
        attributes, value = textarea(page, name).split("|")
        assert value == ""
        assert f'aria-describedby="f-{name}-hint"' in attributes
    assert "throwaway-address domains" in text(page)


def test_a_new_letter_keeps_its_domains(app: FastAPI, client: TestClient) -> None:
    sign_in_as(client, app, "organizer@example.org")
    response = post_form(client, "/dashboard/letters/new", {
        **NEW, "forbidden_domains": "Contractors.example.com\r\n",
        "required_domains": "example.com, example.org\r\nexample.com"})  # fmt: skip
    assert response.status_code == 303, text(response)
    letter = stored(app, "from-the-staff")
    assert letter is not None
    assert letter.forbidden_domains == ["contractors.example.com"]
    assert letter.required_domains == ["example.com", "example.org"]

    overview = text(client.get("/dashboard/letters/from-the-staff"))
    assert "Who can sign Only addresses at example.com, example.org." in overview
    assert "Refused: contractors.example.com." in overview
    edit = client.get("/dashboard/letters/from-the-staff/edit")
    assert textarea(edit, "required_domains").endswith("|example.com\nexample.org")
    assert textarea(edit, "forbidden_domains").endswith("|contractors.example.com")


@pytest.mark.parametrize(
    ("domains", "field", "message"),
    [
        ({"forbidden_domains": "ann@example.org"}, "forbidden_domains",
         "Not a domain name: ann@example.org."),
        ({"required_domains": "localhost"}, "required_domains", "Not a domain name: localhost."),
        ({"forbidden_domains": "example.com", "required_domains": "example.com"},
         "required_domains", "example.com: forbidden"),
    ],
)  # fmt: skip
def test_bad_domains_on_a_new_letter_are_422_and_store_nothing(
    app: FastAPI, client: TestClient, domains: dict[str, str], field: str, message: str
) -> None:
    sign_in_as(client, app, "organizer@example.org")
    response = post_form(client, "/dashboard/letters/new", {**NEW, **domains})
    assert response.status_code == 422
    assert stored(app, "from-the-staff") is None
    attributes, shown = textarea(response, field).split("|")
    assert shown == domains[field]  # what was typed, to correct
    assert 'aria-invalid="true"' in attributes
    assert f"f-{field}-error" in attributes
    error = re.search(rf'<p class="error" id="f-{field}-error">([^<]*)</p>', response.text)
    assert error and html.unescape(error.group(1)).startswith(message)
    assert f'href="#f-{field}"' in response.text  # the error summary links to it


def test_editing_the_domains_saves_them_and_the_log_says_so(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app, required_domains=["example.com"])
    owner_of(client, app, letter)
    edit = client.get(f"/dashboard/letters/{letter.slug}/edit")
    assert textarea(edit, "required_domains").endswith("|example.com")
    form = {**NEW, "title": letter.title, "body": "We ask for **one thing**.",
            "summary": letter.summary, "addressed_to": letter.addressed_to, "goal": "100",
            "required_domains": "example.com\nexample.net", "forbidden_domains": ""}  # fmt: skip
    response = post_form(client, f"/dashboard/letters/{letter.slug}/edit", form)
    assert (response.status_code, response.headers["location"]) == (
        303, f"/dashboard/letters/{letter.slug}?notice=saved"
    )  # fmt: skip
    after = stored(app, letter.slug)
    assert after is not None
    assert (after.required_domains, after.forbidden_domains) == (["example.com", "example.net"], [])

    log = text(client.get(f"/dashboard/letters/{letter.slug}/audit"))
    assert "fields required_domains" in log
    assert "required domains example.com, example.net" in log


def test_a_bad_edit_is_422_and_changes_nothing(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, forbidden_domains=["rival.example"])
    owner_of(client, app, letter)
    form = {**NEW, "title": letter.title, "body": "New text.", "forbidden_domains": "rival.example",
            "required_domains": "hq.rival.example"}  # fmt: skip
    response = post_form(client, f"/dashboard/letters/{letter.slug}/edit", form)
    assert response.status_code == 422
    assert "hq.rival.example: forbidden" in text(response)
    after = stored(app, letter.slug)
    assert after is not None
    assert (after.forbidden_domains, after.required_domains) == (["rival.example"], [])
    assert after.body_markdown == "We ask for **one thing**."


def test_the_overview_of_a_letter_without_lists(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    owner_of(client, app, letter)
    overview = text(client.get(f"/dashboard/letters/{letter.slug}"))
    assert "Who can sign Any address, except at throwaway-address domains." in overview
    assert "Refused:" not in overview


# --- the public sign form --------------------------------------------------------------------


def test_the_domain_rule_partial_says_who_can_sign() -> None:
    """templates/letters/_domain_rule.html, for the sign form to include."""
    partial = environment().get_template("letters/_domain_rule.html")
    employees = Letter(required_domains=["example.com", "exa<m>ple.org"])
    shown = partial.render(letter=employees)
    assert 'id="email-domain-rule"' in shown
    assert "Only addresses at example.com, exa&lt;m&gt;ple.org can sign this letter." in shown
    assert (
        partial.render(letter=Letter(required_domains=[], forbidden_domains=["x.org"])).strip()
        == ""
    )


REFUSED = [
    ({}, f"ada@{THROWAWAY}", f"Addresses at {THROWAWAY} are throwaway addresses"),
    ({"forbidden_domains": ["rival.example"]}, "ada@mail.rival.example",
     "This letter does not accept addresses at mail.rival.example."),
    ({"required_domains": ["example.com", "example.net"]}, "ada@example.org",
     "Only addresses at example.com, example.net can sign this letter."),
]  # fmt: skip


@pytest.mark.parametrize(("letter_domains", "address", "message"), REFUSED)
def test_signing_on_the_page_with_a_refused_domain_is_422_and_stores_nothing(
    app: FastAPI, client: TestClient, letter_domains: dict[str, list[str]], address: str,
    message: str,
) -> None:  # fmt: skip
    """Needs sign_letter to call check_email_domain (the rate-limit work adds it)."""
    letter = add_letter(app, **letter_domains)
    response = post_sign_form(client, letter.slug, email=address)
    assert response.status_code == 422
    assert re.search(r'<input id="f-email" name="email"[^>]* aria-invalid="true"', response.text)
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0

    fine = post_sign_form(client, letter.slug, email="grace@example.com")
    assert fine.status_code == 303
    assert count(app, PendingSignature) == 1


@pytest.mark.parametrize(("letter_domains", "address", "message"), REFUSED)
def test_the_sign_page_says_why_an_address_is_refused(
    app: FastAPI, client: TestClient, letter_domains: dict[str, list[str]], address: str,
    message: str,
) -> None:  # fmt: skip
    """Needs the sign page to show a service's message for the email field (see the
    helper's report: app/signatures/pages.py and templates/_macros.html)."""
    letter = add_letter(app, **letter_domains)
    response = post_sign_form(client, letter.slug, email=address)
    error = re.search(r'<p class="error" id="f-email-error">([^<]*)</p>', response.text)
    assert error, response.text
    assert html.unescape(error.group(1)).startswith(message)


@pytest.mark.parametrize(("letter_domains", "address", "message"), REFUSED)
def test_signing_through_the_api_with_a_refused_domain_is_422_and_stores_nothing(
    app: FastAPI, client: TestClient, letter_domains: dict[str, list[str]], address: str,
    message: str,
) -> None:  # fmt: skip
    """Needs sign_letter to call check_email_domain (the rate-limit work adds it)."""
    letter = add_letter(app, **letter_domains)
    url = f"/api/v1/letters/{letter.slug}/signatures"
    response = client.post(url, json={**GOOD_FORM, "email": address})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input"
    assert set(body["fields"]) == {"email"}
    assert body["fields"]["email"].startswith(message)
    assert count(app, PendingSignature) == 0
    assert count(app, OutboxEmail) == 0

    fine = client.post(url, json={**GOOD_FORM, "email": "grace@example.com"})
    assert fine.status_code == 202, fine.text
    assert count(app, PendingSignature) == 1


def test_the_public_api_does_not_list_forbidden_domains(app: FastAPI, client: TestClient) -> None:
    """Which domains a letter refuses is the organizers' business."""
    letter = add_letter(app, status=LetterStatus.OPEN, forbidden_domains=["rival.example"])
    assert "rival.example" not in client.get(f"/api/v1/letters/{letter.slug}").text
