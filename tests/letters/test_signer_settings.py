"""A letter's signer-safety settings (issue 9) as organizers write them, on SQLite and
PostgreSQL: who signs (people or organizations), the company names of verified
domains ("domain = Company" lines), how long kept contact addresses stay after the
letter closes, and when its signers are anonymized. Bad input is refused with a message
for its field, and an edit that does not give a setting keeps it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.letters.models import DEFAULT_CONTACT_RETENTION_DAYS, Letter, SignerKind
from app.letters.schemas import (
    LetterCreate,
    LetterFields,
    domain_names_text,
    parse,
)
from app.letters.service import create_letter, current_fields, edit_letter
from app.organizers.models import AuditEvent
from app.organizers.service import SHELL

BASE: dict[str, Any] = {"title": "T", "body_markdown": "Text."}


def fields(**values: Any) -> LetterFields:
    return parse(LetterFields, {**BASE, **values})


def refusal(**values: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        fields(**values)
    return caught.value.fields


# --- parsing --------------------------------------------------------------------------------


def test_defaults() -> None:
    data = fields()
    assert data.signers == SignerKind.PEOPLE
    assert data.domain_names == {}
    assert data.contact_retention_days == DEFAULT_CONTACT_RETENTION_DAYS == 90
    assert data.anonymize_after_months is None


def test_domain_names_from_lines_a_list_or_a_mapping() -> None:
    text = "Google.com = Google\r\n\r\n  @youtube.com=Google \nalphabet.com. = Alphabet Inc.\n"
    expected = {"google.com": "Google", "youtube.com": "Google", "alphabet.com": "Alphabet Inc."}
    assert fields(domain_names=text).domain_names == expected
    lines = ["google.com = Google", "youtube.com=Google", "alphabet.com = Alphabet Inc."]
    assert fields(domain_names=lines).domain_names == expected
    assert fields(domain_names=expected).domain_names == expected
    assert fields(domain_names="").domain_names == {}
    assert domain_names_text(expected) == (
        "google.com = Google\nyoutube.com = Google\nalphabet.com = Alphabet Inc."
    )
    assert fields(domain_names=domain_names_text(expected)).domain_names == expected


def test_a_company_name_may_hold_an_equals_sign_and_unicode() -> None:
    assert fields(domain_names="bücher.example = Bücher = Books GmbH").domain_names == {
        "bücher.example": "Bücher = Books GmbH"
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("google.com Google", "Write each line as domain = Company, like google.com = Google "
         "(not google.com Google)."),
        ("google.com =", "(not google.com =)."),
        ("= Google", "(not = Google)."),
        ("not a domain = X", "(not not a domain = X)."),
        ("localhost = Local", "(not localhost = Local)."),
        ("gmail.com = Google", "gmail.com is a free email service"),
        ("mail.proton.me = Proton", "mail.proton.me is a free email service"),
        ("a.example = A\nA.example = B", "a.example is listed twice."),
        ("a.example = " + "x" * 101, "A company name has at most 100 characters (a.example)."),
        ("a.example = A\u202eB", "Remove invisible or control characters."),
        ("a.example = A\tB", "Remove invisible or control characters."),
    ],
)  # fmt: skip
def test_bad_domain_names_are_refused_naming_the_line(text: str, message: str) -> None:
    errors = refusal(domain_names=text)
    assert set(errors) == {"domain_names"}
    assert message in errors["domain_names"]


def test_too_many_domain_names() -> None:
    text = "\n".join(f"d{n}.example = D{n}" for n in range(201))
    assert "at most 200 domains" in refusal(domain_names=text)["domain_names"]


@pytest.mark.parametrize(
    ("value", "kept"), [(0, 0), ("0", 0), (30, 30), ("730", 730), ("", 90), (None, 90)]
)
def test_contact_retention_days_in_range(value: object, kept: int) -> None:
    assert fields(contact_retention_days=value).contact_retention_days == kept


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "Enter a whole number of at least 0."),
        (731, "Enter a whole number of at most 730."),
        (100_000, "Enter a whole number of at most 730."),
        ("ninety", "Enter a whole number, like 1000."),
        ("9.5", "Enter a whole number, like 1000."),
    ],
)
def test_contact_retention_days_out_of_range(value: object, message: str) -> None:
    assert refusal(contact_retention_days=value) == {"contact_retention_days": message}


@pytest.mark.parametrize(("value", "kept"), [("", None), (None, None), ("0", 0), (6, 6), (60, 60)])
def test_anonymize_after_months_in_range(value: object, kept: int | None) -> None:
    assert fields(anonymize_after_months=value).anonymize_after_months == kept


@pytest.mark.parametrize(
    ("value", "message"),
    [(-1, "at least 0."), (61, "at most 60."), ("six", "Enter a whole number")],
)
def test_anonymize_after_months_out_of_range(value: object, message: str) -> None:
    assert message in refusal(anonymize_after_months=value)["anonymize_after_months"]


def test_signers_must_be_people_or_organizations() -> None:
    assert fields(signers="organizations").signers == SignerKind.ORGANIZATIONS
    assert refusal(signers="companies") == {"signers": "Choose one of the options."}


# --- stored, edited, logged -------------------------------------------------------------------


def test_a_letter_is_created_with_its_settings_and_the_log_names_the_companies(
    session: Session,
) -> None:
    letter = create_letter(
        session,
        data=parse(
            LetterCreate,
            {
                **BASE,
                "slug": "sign-on",
                "signers": "organizations",
                "domain_names": "acme.example = ACME",
                "contact_retention_days": "30",
                "anonymize_after_months": "6",
            },
        ),
        actor=SHELL,
    )
    session.expire_all()
    stored = session.scalars(select(Letter).where(Letter.id == letter.id)).one()
    assert stored.signers == SignerKind.ORGANIZATIONS
    assert stored.domain_names == {"acme.example": "ACME"}
    assert (stored.contact_retention_days, stored.anonymize_after_months) == (30, 6)
    event = session.scalars(select(AuditEvent).where(AuditEvent.letter_id == letter.id)).one()
    assert event.detail["domain_names"] == {"acme.example": "ACME"}


def test_an_edit_changes_the_settings_given_and_keeps_the_others(session: Session) -> None:
    letter = create_letter(
        session,
        data=parse(
            LetterCreate,
            {
                **BASE,
                "slug": "kept",
                "signers": "organizations",
                "domain_names": {"acme.example": "ACME"},
                "contact_retention_days": 30,
                "anonymize_after_months": 6,
            },
        ),
    )
    # A caller that knows none of them (an older form): all four are kept.
    edited = edit_letter(session, letter=letter, data=fields(title="New"), actor=SHELL)
    assert edited.changed == ["title"]
    assert letter.signers == SignerKind.ORGANIZATIONS
    assert letter.domain_names == {"acme.example": "ACME"}
    assert (letter.contact_retention_days, letter.anonymize_after_months) == (30, 6)

    data = parse(LetterFields, {**current_fields(letter), "signers": "people",
                                "domain_names": "acme.example = Acme Corp\nacme.org = Acme Corp",
                                "contact_retention_days": "0",
                                "anonymize_after_months": None})  # fmt: skip
    edited = edit_letter(session, letter=letter, data=data, actor=SHELL)
    assert set(edited.changed) == {
        "signers", "domain_names", "contact_retention_days", "anonymize_after_months"
    }  # fmt: skip
    session.expire_all()
    stored = session.scalars(select(Letter).where(Letter.id == letter.id)).one()
    assert stored.signers == SignerKind.PEOPLE
    assert stored.domain_names == {"acme.example": "Acme Corp", "acme.org": "Acme Corp"}
    assert (stored.contact_retention_days, stored.anonymize_after_months) == (0, None)
    log = session.scalars(
        select(AuditEvent).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
    ).all()[-1]
    assert log.detail["domain_names"] == {"acme.example": "Acme Corp", "acme.org": "Acme Corp"}
