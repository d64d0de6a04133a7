"""A letter's email domains: what an organizer may write (a textarea's text, or lists
from the command line), saving them on create and edit (SQLite and PostgreSQL), the
audit log, the check on a letter read back from the database, and the command line."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.abuse.domains import check_email_domain
from app.config import Settings
from app.db import Database
from app.errors import InvalidInput
from app.letters.models import Letter
from app.letters.schemas import DOMAINS_MAX, LetterCreate, LetterFields, parse
from app.letters.service import create_letter, current_fields, edit_letter
from app.organizers.models import AuditEvent
from app.organizers.service import SHELL, Actor
from app.signatures.models import PendingSignature
from app.signatures.schemas import SignatureIn
from app.signatures.service import sign_letter
from tests.support.factories import make_letter, signature_in
from tests.support.organizers import make_organizer
from tests.support.processes import clean_env, run_in_process

NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
FORM: dict[str, Any] = {
    "slug": "staff-letter",
    "title": "A letter from the staff",
    "body_markdown": "We ask for **one** thing.",
}


def domains(**values: Any) -> tuple[list[str], list[str]]:
    data = parse(LetterFields, {**FORM, **values})
    return data.forbidden_domains, data.required_domains


def problems(**values: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        parse(LetterCreate, {**FORM, **values})
    assert caught.value.status_code == 422
    return caught.value.fields


def audit(session: Session, letter: Letter) -> list[tuple[str, dict[str, Any]]]:
    rows = session.scalars(
        select(AuditEvent).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
    )
    return [(row.action, row.detail) for row in rows]


def reloaded(session: Session, letter: Letter) -> Letter:
    """The letter as the database has it (JSON lists read back)."""
    letter_id = letter.id
    session.expire_all()
    return session.scalars(select(Letter).where(Letter.id == letter_id)).one()


# --- what an organizer may write -----------------------------------------------------------


def test_a_textarea_of_domains_becomes_a_clean_list() -> None:
    typed = "  Example.ORG\r\n\r\n@staff.example.com, example.net;example.org\n  münchen.DE.  \n"
    forbidden, required = domains(forbidden_domains=typed, required_domains="")
    assert forbidden == ["example.org", "staff.example.com", "example.net", "münchen.de"]
    assert required == []
    assert domains(required_domains="xn--mnchen-3ya.de")[1] == ["münchen.de"]


def test_lists_are_taken_too_and_each_item_may_hold_several() -> None:
    forbidden, required = domains(
        forbidden_domains=["a.example", "b.example, c.example", "A.example"],
        required_domains=["hq.example.com"],
    )
    assert (forbidden, required) == (["a.example", "b.example", "c.example"], ["hq.example.com"])


def test_no_domains_is_the_default() -> None:
    assert domains() == ([], [])
    assert domains(forbidden_domains=" \n , ", required_domains=None) == ([], [])


@pytest.mark.parametrize(
    ("typed", "named"),
    [
        ("ann@example.org", "ann@example.org"),
        ("localhost", "localhost"),
        ("example", "example"),
        ("exa_mple.org", "exa_mple.org"),
        ("-example.org", "-example.org"),
        ("printer.local", "printer.local"),
        ("[192.0.2.1]", "[192.0.2.1]"),
        ("ex\u202eample.org", "ex\u202eample.org"),
        ("x" * 70 + ".org", "x" * 59 + "…"),
    ],
)
def test_what_is_not_a_domain_is_named(typed: str, named: str) -> None:
    for field in ("forbidden_domains", "required_domains"):
        message = problems(**{field: f"good.example\n{typed}"})[field]
        assert message == (
            f"Not a domain name: {named}. Write domains like example.org, one per line."
        )


def test_several_bad_domains_are_summed_up() -> None:
    message = problems(forbidden_domains="a b c d e good.example a")["forbidden_domains"]
    assert message.startswith("Not a domain name: a, b, c (and 2 more).")


def test_each_list_has_a_limit() -> None:
    most = "\n".join(f"d{number}.example" for number in range(DOMAINS_MAX))
    assert len(domains(required_domains=most)[1]) == DOMAINS_MAX
    assert len(domains(required_domains=most + "\nd0.example")[1]) == DOMAINS_MAX  # a repeat
    too_many = most + "\none-more.example"
    assert problems(required_domains=too_many) == {
        "required_domains": f"Give at most {DOMAINS_MAX} domains."
    }
    assert problems(forbidden_domains="a.example " * 20_000) == {
        "forbidden_domains": f"Give at most {DOMAINS_MAX} domains."
    }


def test_a_domain_cannot_be_forbidden_and_required() -> None:
    clash = problems(forbidden_domains="example.com\nexample.net", required_domains="example.com")
    assert clash == {
        "required_domains": "example.com: forbidden (or under a forbidden domain) and required "
        "at once, so nobody there could sign. Remove it from one of the lists."
    }
    # Under a forbidden domain: nobody at hq.example.com could sign either.
    assert (
        "hq.example.com:"
        in problems(forbidden_domains="example.com", required_domains="hq.example.com")[
            "required_domains"
        ]
    )
    # The other way round is the point of having both: example.com's staff, not its
    # contractors.
    assert domains(forbidden_domains="contractors.example.com", required_domains="example.com")


# --- saving --------------------------------------------------------------------------------


def test_a_new_letter_keeps_its_domains_and_the_log_says_which(session: Session) -> None:
    organizer = make_organizer(session, "owner@example.org")
    data = parse(LetterCreate, {**FORM, "forbidden_domains": "rival.example\nrival.example",
                                "required_domains": "example.com, example.org"})  # fmt: skip
    letter = create_letter(session, data=data, actor=Actor(organizer), now=NOW)
    session.flush()

    stored = reloaded(session, letter)
    assert stored.forbidden_domains == ["rival.example"]
    assert stored.required_domains == ["example.com", "example.org"]
    assert audit(session, stored) == [
        ("letter.create", {"slug": "staff-letter", "status": "draft",
                           "forbidden_domains": ["rival.example"],
                           "required_domains": ["example.com", "example.org"]}),
    ]  # fmt: skip


def test_a_letter_without_domains_stores_empty_lists(session: Session) -> None:
    letter = create_letter(session, data=parse(LetterCreate, FORM), actor=SHELL, now=NOW)
    stored = reloaded(session, letter)
    assert (stored.forbidden_domains, stored.required_domains) == ([], [])
    assert audit(session, stored) == [
        ("letter.create", {"slug": "staff-letter", "status": "draft"})
    ]


def test_editing_the_domains_is_a_recorded_change(session: Session) -> None:
    letter = make_letter(session, required_domains=["example.com"])
    changes = {"required_domains": "example.com\nexample.org", "forbidden_domains": "x.example.com"}
    data = parse(LetterFields, {**current_fields(letter), **changes})
    edited = edit_letter(session, letter=letter, data=data, actor=SHELL, now=NOW)
    assert edited.changed == ["forbidden_domains", "required_domains"]
    assert not edited.new_version

    stored = reloaded(session, letter)
    assert stored.required_domains == ["example.com", "example.org"]
    assert stored.forbidden_domains == ["x.example.com"]
    assert audit(session, stored)[-1] == (
        "letter.edit",
        {"fields": ["forbidden_domains", "required_domains"], "version": 1,
         "new_version": False, "forbidden_domains": ["x.example.com"],
         "required_domains": ["example.com", "example.org"]},
    )  # fmt: skip

    same = parse(
        LetterFields, {**current_fields(stored), "required_domains": "EXAMPLE.com, example.org"}
    )
    assert edit_letter(session, letter=stored, data=same, actor=SHELL, now=NOW).changed == []

    cleared = parse(LetterFields, {**current_fields(stored), "required_domains": ""})
    assert edit_letter(session, letter=stored, data=cleared, actor=SHELL, now=NOW).changed == [
        "required_domains"
    ]
    stored = reloaded(session, stored)
    assert stored.required_domains == []
    assert stored.forbidden_domains == ["x.example.com"]
    assert audit(session, stored)[-1][1] == {
        "fields": ["required_domains"], "version": 1, "new_version": False, "required_domains": []
    }  # fmt: skip


def test_an_edit_that_does_not_give_the_domains_keeps_them(session: Session) -> None:
    """A form without the domain fields (an older one) must not open an employees-only
    letter to everyone by emptying its list."""
    letter = make_letter(session, required_domains=["example.com"], forbidden_domains=["a.example"])
    values = {name: value for name, value in current_fields(letter).items()
              if name not in ("forbidden_domains", "required_domains")}  # fmt: skip
    data = parse(LetterFields, {**values, "summary": "A new summary."})
    assert edit_letter(session, letter=letter, data=data, actor=SHELL, now=NOW).changed == [
        "summary"
    ]
    stored = reloaded(session, letter)
    assert (stored.required_domains, stored.forbidden_domains) == (["example.com"], ["a.example"])


def test_an_invalid_edit_changes_nothing(session: Session) -> None:
    letter = make_letter(session, forbidden_domains=["a.example"])
    with pytest.raises(InvalidInput):
        parse(LetterFields, {**current_fields(letter), "required_domains": "a.example"})
    stored = reloaded(session, letter)
    assert (stored.forbidden_domains, stored.required_domains) == (["a.example"], [])
    assert [action for action, _ in audit(session, stored)] == []


# --- the check, on letters read back from the database ---------------------------------------


def test_the_check_applies_the_stored_lists(session: Session) -> None:
    letter = reloaded(
        session,
        make_letter(session, required_domains=["example.com", "münchen.de"],
                    forbidden_domains=["contractors.example.com"]),
    )  # fmt: skip
    for address in ("ada@example.com", "ada@hq.example.com", "ada@xn--mnchen-3ya.de"):
        check_email_domain(letter, address)
    for address in ("ada@example.org", "ada@contractors.example.com", "ada@mailinator.com"):
        with pytest.raises(InvalidInput) as caught:
            check_email_domain(letter, address)
        assert set(caught.value.fields) == {"email"}


def test_the_check_takes_the_address_as_the_sign_form_normalizes_it(session: Session) -> None:
    """SignatureIn normalizes the address (a Unicode domain, lower-cased): the check
    matches lists stored from either form."""
    letter = reloaded(session, make_letter(session, required_domains=["xn--mnchen-3ya.de"]))
    assert letter.required_domains == ["münchen.de"]
    data: SignatureIn = signature_in(email="Ada@XN--MNCHEN-3YA.DE")
    assert data.email.endswith("@münchen.de")
    check_email_domain(letter, data.email)


@pytest.mark.parametrize(
    ("letter_domains", "address"),
    [
        ({}, "ada@mailinator.com"),
        ({"forbidden_domains": ["rival.example"]}, "ada@mail.rival.example"),
        ({"required_domains": ["example.com"]}, "ada@example.org"),
    ],
)
def test_signing_with_a_refused_domain_stores_nothing(
    session: Session, settings: Settings, letter_domains: dict[str, list[str]], address: str
) -> None:
    """Through the signing service (which calls check_email_domain, from the rate-limit
    work): 422 on the email field, no submission."""
    letter = make_letter(session, **letter_domains)
    with pytest.raises(InvalidInput) as caught:
        sign_letter(session, slug=letter.slug, data=signature_in(email=address), settings=settings)
    assert set(caught.value.fields) == {"email"}
    assert pending(session, letter) == 0
    sign_letter(session, slug=letter.slug, data=signature_in(email="ada@example.com"),
                settings=settings)  # fmt: skip
    assert pending(session, letter) == 1


def pending(session: Session, letter: Letter) -> int:
    return len(
        session.scalars(
            select(PendingSignature).where(PendingSignature.letter_id == letter.id)
        ).all()
    )


# --- the command line ------------------------------------------------------------------------


@pytest.mark.slow  # runs `undersigned` (its entry point, as tests/test_cli.py does)
def test_the_command_line_sets_and_clears_the_domains(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = clean_env(database_url=url, data_dir=str(tmp_path / "data"),
                    secret_key="cli-domains-secret-0123456789-abcdefghij")  # fmt: skip
    body = tmp_path / "body.md"
    body.write_text("Text.\n", encoding="utf-8")

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        result = run_in_process(args, cwd=tmp_path, env=env)
        assert result.returncode == expect, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        return result

    def stored() -> tuple[list[str], list[str]]:
        database = Database(url)
        try:
            with database.read() as session:
                letter = session.scalars(select(Letter).where(Letter.slug == "staff")).one()
                return letter.forbidden_domains, letter.required_domains
        finally:
            database.dispose()

    run("db", "upgrade")
    create = ("letter", "create", "--slug", "staff", "--title", "T", "--body-file", str(body))
    bad = run(*create, "--forbid-domain", "not a domain!", expect=2)
    assert "--forbid-domain: Not a domain name: not, a, domain!." in bad.stderr
    clash = run(*create, "--forbid-domain", "example.com", "--require-domain", "example.com",
                expect=2)  # fmt: skip
    assert "--require-domain: example.com: forbidden" in clash.stderr
    run(*create, "--forbid-domain", "rival.example", "--forbid-domain", "Other.example",
        "--require-domain", "example.com,example.org")  # fmt: skip
    assert stored() == (["rival.example", "other.example"], ["example.com", "example.org"])

    edit = ("letter", "edit", "staff")
    changed = run(*edit, "--require-domain", "example.net")
    assert "changed: require-domain;" in changed.stdout
    assert stored() == (["rival.example", "other.example"], ["example.net"])
    both = run(*edit, "--forbid-domain", "a.example", "--no-forbidden-domains", expect=2)
    assert "Give --forbid-domain or --no-forbidden-domains, not both." in both.stderr
    clash = run(*edit, "--forbid-domain", "example.net", expect=2)
    assert "--require-domain: example.net: forbidden" in clash.stderr
    run(*edit, "--no-forbidden-domains", "--no-required-domains")
    assert stored() == ([], [])
    assert "nothing changed" in run(*edit, "--no-required-domains").stdout
