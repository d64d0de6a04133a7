"""The sign side of signer safety (issue 9) over HTTP: the sign form's badge and
name-threshold choices, its hint about personal and work addresses, the form of a
letter signed by organizations, the same choices in the JSON API, and the dashboard's
letter settings (who signs, company names of verified domains, contact retention,
anonymization). Refusals are 422 with a message on their field, and store nothing."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.letters.models import FieldRule, Letter, SignerKind
from app.organizers.models import Role
from app.signatures.models import PendingSignature
from tests.support.organizers import post_form, sign_in_as
from tests.web.flows import add_letter, count, pending_signatures, post_sign_form


def text(page: Any) -> str:
    """The page's text, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def stored(app: FastAPI, slug: str) -> Letter | None:
    with app.state.database.read() as session:
        letter: Letter | None = session.scalar(select(Letter).where(Letter.slug == slug))
    return letter


# --- the sign form ---------------------------------------------------------------------------


def test_the_form_offers_the_badge_and_the_threshold(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    page = client.get(f"/letters/{letter.slug}")
    shown = text(page)
    assert (
        "A personal address keeps your employer from seeing the confirmation email; a work "
        "address earns the “verified” badge with your work domain" in shown
    )
    assert re.search(r'<input type="checkbox" id="f-show_domain" name="show_domain" value="yes" *'
                     r'aria-describedby="f-show_domain-hint"', page.text)  # fmt: skip
    assert "Show that I verified with an address at my work domain" in shown
    assert "Personal email services such as gmail.com never earn the badge." in shown
    assert "When to show my name" in shown
    for value in ("", "10", "50"):
        assert f'name="name_threshold" value="{value}"' in page.text
    assert "Show my name only once at least 10 others from my company have signed" in shown
    assert "Show my name only once at least 50 others from my company have signed" in shown
    assert re.search(r'id="f-name_threshold" name="name_threshold" value="" *checked', page.text)


def test_an_employees_only_letter_names_its_domain(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, required_domains=["corp.example"])
    assert "Show that I verified with an address at @corp.example" in text(
        client.get(f"/letters/{letter.slug}")
    )


def test_no_threshold_where_no_name_is_listed(app: FastAPI, client: TestClient) -> None:
    for letter in (add_letter(app, show_signers=False),
                   add_letter(app, signers=SignerKind.ORGANIZATIONS)):  # fmt: skip
        page = client.get(f"/letters/{letter.slug}")
        assert 'name="show_domain"' in page.text
        assert 'name="name_threshold"' not in page.text


def test_the_form_of_a_letter_signed_by_organizations(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(
        app, signers=SignerKind.ORGANIZATIONS, field_title=FieldRule.OFF,
        field_organization=FieldRule.OFF,
    )  # fmt: skip
    page = client.get(f"/letters/{letter.slug}")
    shown = text(page)
    assert "This letter is signed by organizations" in shown
    assert "Organization's name (required)" in shown
    assert "Your name (required)" in shown
    assert "Your title (required)" in shown
    assert "Full name" not in shown
    assert page.text.index('id="f-organization"') < page.text.index('id="f-name"')
    assert page.text.count('name="organization"') == 1
    assert "Show the organization, with my name and the details above" in shown

    refused = post_sign_form(client, letter.slug, organization="", title="")
    assert refused.status_code == 422
    assert 'href="#f-organization"' in refused.text
    assert 'href="#f-title"' in refused.text
    assert count(app, PendingSignature) == 0

    ok = post_sign_form(
        client, letter.slug, name="Grace Hopper", title="Chair", organization="Chamber",
        email="grace@chamber.example",
    )  # fmt: skip
    assert ok.status_code == 303
    (pending,) = pending_signatures(app)
    assert (pending.organization, pending.name, pending.title) == ("Chamber", "Grace Hopper",
                                                                   "Chair")  # fmt: skip


def test_signing_with_the_badge_and_a_threshold(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    response = post_sign_form(
        client, letter.slug, email="ada@corp.example", show_domain="yes", name_threshold="10"
    )
    assert response.status_code == 303
    (pending,) = pending_signatures(app)
    assert (pending.show_domain, pending.name_threshold, pending.email_domain) == (
        True, 10, "corp.example"
    )  # fmt: skip


def test_signing_without_the_badge_stores_no_choice(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    assert post_sign_form(client, letter.slug, name_threshold="").status_code == 303
    (pending,) = pending_signatures(app)
    assert (pending.show_domain, pending.name_threshold) == (False, None)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": "ada@gmail.com", "show_domain": "yes"}, "show_domain",
         "Addresses at gmail.com are personal addresses and never earn a badge"),
        ({"email": "ada@corp.example", "name_threshold": "10"}, "name_threshold",
         "Choose this only with the verified badge"),
        ({"email": "ada@corp.example", "show_domain": "yes", "name_threshold": "7"},
         "name_threshold", "Choose one of the options."),
    ],
)  # fmt: skip
def test_bad_badge_choices_are_422_and_store_nothing(
    app: FastAPI, client: TestClient, fields: dict[str, str], field: str, message: str
) -> None:
    letter = add_letter(app)
    response = post_sign_form(client, letter.slug, **fields)
    assert response.status_code == 422
    assert count(app, PendingSignature) == 0
    error = re.search(rf'<p class="error" id="f-{field}-error">([^<]*)</p>', response.text)
    assert error and html.unescape(error.group(1)).startswith(message)
    assert f'href="#f-{field}"' in response.text
    if "show_domain" in fields:  # the choice stays made, to correct
        assert re.search(
            r'id="f-show_domain" name="show_domain" value="yes" checked', response.text
        )


# --- the API --------------------------------------------------------------------------------


def _sign(client: TestClient, slug: str, **fields: Any) -> Any:
    body = {"name": "Ada", "email": "ada@corp.example", **fields}
    return client.post(f"/api/v1/letters/{slug}/signatures", json=body)


def test_the_api_takes_the_badge_and_the_threshold(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    assert _sign(client, letter.slug, show_domain=True, name_threshold=50).status_code == 202
    (pending,) = pending_signatures(app)
    assert (pending.show_domain, pending.name_threshold) == (True, 50)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "ada@proton.me", "show_domain": True}, "show_domain"),
        ({"name_threshold": 10}, "name_threshold"),
        ({"show_domain": True, "name_threshold": 25}, "name_threshold"),
        ({"show_domain": True, "name_threshold": "lots"}, "name_threshold"),
    ],
)
def test_bad_badge_choices_in_the_api_are_422_and_store_nothing(
    app: FastAPI, client: TestClient, fields: dict[str, Any], field: str
) -> None:
    letter = add_letter(app)
    response = _sign(client, letter.slug, **fields)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_input"
    assert set(body["fields"]) == {field}
    assert count(app, PendingSignature) == 0


def test_the_api_says_who_signs_a_letter(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app, signers=SignerKind.ORGANIZATIONS)
    body = client.get(f"/api/v1/letters/{letter.slug}").json()
    assert body["signers"] == "organizations"
    assert body["signer_fields"]["organization"] == body["signer_fields"]["title"] == "required"


def test_the_openapi_schema_documents_the_choices(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["SignatureIn"]
    assert schema["properties"]["show_domain"]["type"] == "boolean"
    threshold = schema["properties"]["name_threshold"]
    assert {"enum": [10, 50], "type": "integer"} in threshold["anyOf"]


# --- the dashboard ---------------------------------------------------------------------------

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


def test_the_new_letter_form_has_the_settings_with_their_defaults(
    app: FastAPI, client: TestClient
) -> None:
    sign_in_as(client, app, "organizer@example.org")
    page = client.get("/dashboard/letters/new")
    shown = text(page)
    for label in ("Who signs", "Company names of verified domains",
                  "Keep contact addresses after closing (days)",
                  "Anonymize the signers after closing (months)"):  # fmt: skip
        assert label in shown
    assert re.search(r'<option value="people" selected>People</option>', page.text)
    assert '<option value="organizations">Organizations</option>' in page.text
    assert re.search(r'id="f-contact_retention_days" name="contact_retention_days" '
                     r'type="number" value="90"', page.text)  # fmt: skip
    assert re.search(r'id="f-anonymize_after_months" name="anonymize_after_months" '
                     r'type="number" value=""', page.text)  # fmt: skip


def test_a_new_letter_keeps_its_settings_and_the_edit_form_shows_them(
    app: FastAPI, client: TestClient
) -> None:
    sign_in_as(client, app, "organizer@example.org")
    response = post_form(client, "/dashboard/letters/new", {
        **NEW, "signers": "organizations",
        "domain_names": "Google.com = Google\r\nyoutube.com = Google\r\n",
        "contact_retention_days": "30", "anonymize_after_months": "6"})  # fmt: skip
    assert response.status_code == 303, text(response)
    letter = stored(app, "from-the-staff")
    assert letter is not None
    assert letter.signers == SignerKind.ORGANIZATIONS
    assert letter.domain_names == {"google.com": "Google", "youtube.com": "Google"}
    assert (letter.contact_retention_days, letter.anonymize_after_months) == (30, 6)

    edit = client.get("/dashboard/letters/from-the-staff/edit")
    assert '<option value="organizations" selected>' in edit.text
    assert "google.com = Google\nyoutube.com = Google</textarea>" in edit.text
    assert 'name="contact_retention_days" type="number" value="30"' in edit.text
    assert 'name="anonymize_after_months" type="number" value="6"' in edit.text


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"domain_names": "google.com Google"}, "domain_names",
         "Write each line as domain = Company"),
        ({"domain_names": "gmail.com = Google"}, "domain_names",
         "gmail.com is a free email service"),
        ({"contact_retention_days": "9999"}, "contact_retention_days",
         "Enter a whole number of at most 730."),
        ({"contact_retention_days": "-5"}, "contact_retention_days",
         "Enter a whole number of at least 0."),
        ({"contact_retention_days": "90 days"}, "contact_retention_days",
         "Enter a whole number"),
        ({"anonymize_after_months": "61"}, "anonymize_after_months",
         "Enter a whole number of at most 60."),
        ({"signers": "robots"}, "signers", "Choose one of the options."),
    ],
)  # fmt: skip
def test_bad_settings_are_422_and_store_nothing(
    app: FastAPI, client: TestClient, settings: dict[str, str], field: str, message: str
) -> None:
    sign_in_as(client, app, "organizer@example.org")
    response = post_form(client, "/dashboard/letters/new", {**NEW, **settings})
    assert response.status_code == 422
    assert stored(app, "from-the-staff") is None
    error = re.search(rf'<p class="error" id="f-{field}-error">([^<]*)</p>', response.text)
    assert error and html.unescape(error.group(1)).startswith(message), response.text
    assert f'href="#f-{field}"' in response.text


def test_editing_the_settings_saves_them_and_a_bad_edit_changes_nothing(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    form = {**NEW, "title": letter.title, "body": "We ask for **one thing**.",
            "summary": letter.summary, "addressed_to": letter.addressed_to,
            "goal": "100"}  # fmt: skip
    path = f"/dashboard/letters/{letter.slug}/edit"
    bad = post_form(client, path, {**form, "domain_names": "acme.example = ACME",
                                   "anonymize_after_months": "x"})  # fmt: skip
    assert bad.status_code == 422
    after = stored(app, letter.slug)
    assert after is not None and after.domain_names == {}

    response = post_form(client, path, {
        **form, "domain_names": "acme.example = ACME", "contact_retention_days": "0",
        "anonymize_after_months": "0"})  # fmt: skip
    assert response.status_code == 303
    after = stored(app, letter.slug)
    assert after is not None
    assert after.domain_names == {"acme.example": "ACME"}
    assert (after.contact_retention_days, after.anonymize_after_months) == (0, 0)
    log = text(client.get(f"/dashboard/letters/{letter.slug}/audit"))
    assert "domain names acme.example: ACME" in log
