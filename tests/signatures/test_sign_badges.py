"""The sign side of signer safety (issue 9), at the service level, on SQLite and
PostgreSQL: the verified-domain badge a signer chooses (`show_domain`, never for a
free-mail domain), the "show my name only once N others from my company have signed"
choice (`name_threshold`), and letters signed by organizations. What a submission and a
confirmed signature keep of each; bad choices are refused and store nothing.

Each test runs in a rolled-back transaction (the `session` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput
from app.letters.badges import earns_badge, is_free_mail
from app.letters.models import FieldRule, Letter, SignerKind
from app.signatures.models import (
    PendingSignature,
    Signature,
    SignatureDisplay,
    SignatureStatus,
)
from app.signatures.service import (
    THRESHOLD_NEEDS_BADGE,
    notify_pending,
    sign_letter,
    signer_rule_errors,
    verify_signature,
)
from tests.support.factories import (
    make_letter,
    sign,
    sign_and_confirm,
    signature_in,
    verify_token,
)


def pending_count(session: Session, letter: Letter) -> int:
    return len(
        session.scalars(
            select(PendingSignature).where(PendingSignature.letter_id == letter.id)
        ).all()
    )


def refused(session: Session, letter: Letter, settings: Settings, **fields: Any) -> InvalidInput:
    """Signs with `fields`, expects InvalidInput, and checks that nothing was stored."""
    before = pending_count(session, letter)
    with pytest.raises(InvalidInput) as caught:
        sign_letter(session, slug=letter.slug, data=signature_in(**fields), settings=settings)
    assert pending_count(session, letter) == before
    return caught.value


# --- which domains earn a badge ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "free"),
    [
        ("gmail.com", True),
        ("GMail.com", True),
        ("proton.me", True),
        ("outlook.com", True),
        ("mail.gmail.com", True),  # a subdomain of a free-mail domain
        ("example.com", False),
        ("acme.example", False),
        ("gmail.com.acme.example", False),  # a free-mail name inside a company's domain
        ("bücher.example", False),
    ],
)
def test_free_mail_comes_from_the_maintained_list(domain: str, free: bool) -> None:
    assert is_free_mail(domain) is free
    assert earns_badge(domain) is (not free)


def test_no_domain_earns_no_badge() -> None:
    assert earns_badge("") is False
    assert earns_badge("  ") is False


# --- the badge ------------------------------------------------------------------------------


def test_a_named_signer_who_shows_the_badge_keeps_domain_and_choice(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(
        session, letter, settings, email="ada@Corp.Example", show_domain=True
    )
    assert (signature.show_domain, signature.email_domain) == (True, "corp.example")
    assert signature.name.startswith("Signer")
    assert signature.name_threshold is None


def test_a_named_signer_without_the_badge_keeps_the_domain_for_moderation_only(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(session, letter, settings, email="bo@corp.example")
    assert (signature.show_domain, signature.email_domain) == (False, "corp.example")


def test_an_anonymous_signer_with_the_badge_keeps_the_domain_and_nothing_else(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(
        session, letter, settings, email="cy@corp.example", display="anonymous",
        show_domain=True, contact_ok=True,
    )  # fmt: skip
    assert signature.display == SignatureDisplay.ANONYMOUS
    assert (signature.show_domain, signature.email_domain) == (True, "corp.example")
    assert (signature.name, signature.title, signature.organization, signature.city) == (
        "", "", "", ""
    )  # fmt: skip
    assert signature.email is None
    assert signature.contact_ok is False


def test_an_anonymous_signer_without_the_badge_keeps_no_domain(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(
        session, letter, settings, email="di@corp.example", display="anonymous"
    )
    assert (signature.show_domain, signature.email_domain) == (False, "")


@pytest.mark.parametrize("address", ["ada@gmail.com", "ada@proton.me", "ada@mail.gmail.com"])
@pytest.mark.parametrize("display", ["public", "anonymous"])
def test_the_badge_with_a_free_mail_address_is_refused_and_stores_nothing(
    session: Session, settings: Settings, address: str, display: str
) -> None:
    letter = make_letter(session)
    error = refused(session, letter, settings, email=address, show_domain=True, display=display)
    domain = address.partition("@")[2]
    assert set(error.fields) == {"show_domain"}
    assert (
        f"Addresses at {domain} are personal addresses and never earn a badge"
        in (error.fields["show_domain"])
    )
    assert error.detail == error.fields["show_domain"]


def test_a_free_mail_address_without_the_badge_signs_as_before(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(session, letter, settings, email="eve@gmail.com")
    assert signature.show_domain is False
    assert signature.status == SignatureStatus.VERIFIED


def test_a_free_mail_row_never_gets_the_badge_even_if_stored_so(
    session: Session, settings: Settings
) -> None:
    """Defence in depth: a submission that says show_domain with a free-mail domain
    (stored before this rule, or by hand) is confirmed without the badge or the
    anonymous signer's domain."""
    letter = make_letter(session)
    pending = sign(session, letter, settings, email="fay@gmail.com", display="anonymous")
    session.execute(
        update(PendingSignature).where(PendingSignature.id == pending.id).values(show_domain=True)
    )
    notify_pending(session, settings=settings)
    verify_signature(session, token=verify_token(settings, pending), settings=settings)
    signature = session.scalars(
        select(Signature).where(Signature.email_hash == pending.email_hash)
    ).one()
    assert (signature.show_domain, signature.email_domain) == (False, "")


# --- safety in numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [10, 50])
def test_a_name_threshold_with_the_badge_is_kept(
    session: Session, settings: Settings, threshold: int
) -> None:
    letter = make_letter(session)
    pending = sign(
        session, letter, settings, email="gus@corp.example", show_domain=True,
        name_threshold=threshold,
    )  # fmt: skip
    assert (pending.show_domain, pending.name_threshold) == (True, threshold)
    signature = sign_and_confirm(
        session, letter, settings, email="hal@corp.example", show_domain=True,
        name_threshold=threshold,
    )  # fmt: skip
    assert (signature.show_domain, signature.name_threshold) == (True, threshold)
    assert signature.name.startswith("Signer")  # kept, shown once the threshold is passed


def test_a_name_threshold_without_the_badge_is_refused_and_stores_nothing(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    error = refused(session, letter, settings, email="ida@corp.example", name_threshold=10)
    assert error.fields == {"name_threshold": THRESHOLD_NEEDS_BADGE}


@pytest.mark.parametrize("value", [0, 1, 9, 11, 49, 100, -10, "ten", "10.0", True, 10.5])
def test_a_name_threshold_other_than_10_or_50_is_invalid(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        signature_in(show_domain=True, name_threshold=value)
    assert [error["loc"] for error in caught.value.errors()] == [("name_threshold",)]


@pytest.mark.parametrize(("value", "parsed"), [("", None), (None, None), ("10", 10), (" 50 ", 50)])
def test_the_form_s_threshold_choices_parse(value: object, parsed: int | None) -> None:
    assert signature_in(show_domain=True, name_threshold=value).name_threshold == parsed


def test_a_name_threshold_is_ignored_for_an_anonymous_signer(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(
        session, letter, settings, email="jo@corp.example", display="anonymous",
        show_domain=True, name_threshold=50,
    )  # fmt: skip
    assert (signature.show_domain, signature.name_threshold) == (True, None)


def test_a_withdrawn_signer_signs_again_with_new_choices(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    first = sign_and_confirm(
        session, letter, settings, email="kim@corp.example", show_domain=True, name_threshold=10
    )
    session.execute(
        update(Signature).where(Signature.id == first.id).values(status=SignatureStatus.WITHDRAWN)
    )
    again = sign_and_confirm(session, letter, settings, email="kim@corp.example")
    session.refresh(again)
    assert again.id == first.id
    assert (again.status, again.show_domain, again.name_threshold) == (
        SignatureStatus.VERIFIED, False, None
    )  # fmt: skip


def test_the_rule_errors_report_badge_problems_with_the_others() -> None:
    """The page asks for every problem at once, from raw form values."""
    letter = Letter(
        field_title=FieldRule.REQUIRED, field_organization=FieldRule.OPTIONAL,
        field_city=FieldRule.OFF, field_comment=FieldRule.OFF, allow_anonymous=True,
        signers=SignerKind.PEOPLE,
    )  # fmt: skip
    errors = signer_rule_errors(
        letter, {"email": "x@gmail.com", "show_domain": True, "display": "public"}
    )
    assert set(errors) == {"title", "show_domain"}
    errors = signer_rule_errors(letter, {"email": "not an address", "name_threshold": "10"})
    assert set(errors) == {"title", "name_threshold"}  # no badge error without a domain
    assert signer_rule_errors(letter, {"email": "x@corp.example", "title": "T"}) == {}


# --- letters signed by organizations ------------------------------------------------------------


@pytest.mark.parametrize("missing", ["organization", "title"])
def test_an_organizations_letter_requires_organization_and_title(
    session: Session, settings: Settings, missing: str
) -> None:
    letter = make_letter(
        session, signers=SignerKind.ORGANIZATIONS, field_title=FieldRule.OFF,
        field_organization=FieldRule.OFF,
    )  # fmt: skip
    assert letter.field_rule("organization") == FieldRule.REQUIRED
    assert letter.field_rule("title") == FieldRule.REQUIRED
    assert letter.field_rule("city") == FieldRule.OPTIONAL  # its own rule
    error = refused(session, letter, settings, **{missing: ""})
    assert error.fields == {missing: "required"}


def test_an_organizations_letter_keeps_the_organization_and_its_signer(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(
        session, signers=SignerKind.ORGANIZATIONS, field_organization=FieldRule.OFF
    )
    signature = sign_and_confirm(
        session, letter, settings, name="Grace Hopper", title="Chair",
        organization="Chamber of Commerce", email="grace@chamber.example", show_domain=True,
        name_threshold=10,
    )  # fmt: skip
    assert (signature.organization, signature.name, signature.title) == (
        "Chamber of Commerce", "Grace Hopper", "Chair"
    )  # fmt: skip
    assert (signature.show_domain, signature.email_domain) == (True, "chamber.example")
    assert signature.name_threshold is None  # the organization is the signer


def test_an_anonymous_organization_needs_no_details(session: Session, settings: Settings) -> None:
    letter = make_letter(session, signers=SignerKind.ORGANIZATIONS)
    signature = sign_and_confirm(
        session, letter, settings, organization="", title="", display="anonymous",
        email="x@firm.example",
    )  # fmt: skip
    assert (signature.organization, signature.name) == ("", "")


def test_back_to_people_the_letter_s_own_rules_apply_again(session: Session) -> None:
    letter = make_letter(
        session, signers=SignerKind.ORGANIZATIONS, field_organization=FieldRule.OFF
    )
    letter.signers = SignerKind.PEOPLE
    assert letter.field_rule("organization") == FieldRule.OFF
    assert letter.field_rule("title") == FieldRule.OPTIONAL
