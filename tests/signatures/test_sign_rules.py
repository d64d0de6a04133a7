"""Each letter's rules for its signers, at the service level, on SQLite and PostgreSQL:
which optional fields it asks for (off, optional, required), whether it accepts
anonymous signatures, whether it publishes its signer list; and what a signature keeps
of them (the comment, the version signed, its own public id).

Each test runs in a rolled-back transaction (the `session` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput
from app.letters.models import SIGNER_FIELDS, FieldRule, Letter
from app.letters.service import add_to_tally
from app.signatures.models import (
    PendingSignature,
    PendingState,
    Signature,
    SignatureDisplay,
    SignatureStatus,
)
from app.signatures.schemas import SignatureIn
from app.signatures.service import (
    SignersNotPublic,
    list_public_signatures,
    notify_pending,
    recent_public_signers,
    require_public_list,
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
from tests.web.test_enumeration import STATES, _prepare, _statements

FILLED = {"title": "Engineer", "organization": "Example Corp", "city": "Oakland",
          "comment": "Because it matters.\nTo all of us."}  # fmt: skip


def pending_rows(session: Session, letter: Letter) -> list[PendingSignature]:
    session.expire_all()
    return list(
        session.scalars(
            select(PendingSignature)
            .where(PendingSignature.letter_id == letter.id)
            .order_by(PendingSignature.id)
        )
    )


def signatures_of(session: Session, letter: Letter) -> list[Signature]:
    session.expire_all()
    return list(
        session.scalars(
            select(Signature).where(Signature.letter_id == letter.id).order_by(Signature.id)
        )
    )


def refused(session: Session, letter: Letter, settings: Settings, **fields: Any) -> InvalidInput:
    """Signs with `fields`, expects InvalidInput, and checks that nothing was stored."""
    before = len(pending_rows(session, letter))
    with pytest.raises(InvalidInput) as caught:
        sign_letter(session, slug=letter.slug, data=signature_in(**fields), settings=settings)
    assert len(pending_rows(session, letter)) == before
    return caught.value


# --- the defaults ----------------------------------------------------------------------


def test_a_new_letter_asks_for_title_organization_and_city_and_no_comment(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    assert [letter.field_rule(field) for field in SIGNER_FIELDS] == [
        FieldRule.OPTIONAL,
        FieldRule.OPTIONAL,
        FieldRule.OPTIONAL,
        FieldRule.OFF,
    ]
    assert (letter.allow_anonymous, letter.show_signers) == (True, True)
    pending = sign(session, letter, settings, **FILLED, comment_public_ok=True)
    assert (pending.title, pending.organization, pending.city) == (
        "Engineer",
        "Example Corp",
        "Oakland",
    )
    assert (pending.comment, pending.comment_public_ok) == ("", False)  # off by default


# --- off, optional, required -----------------------------------------------------------


@pytest.mark.parametrize("field", SIGNER_FIELDS)
def test_a_required_field_left_empty_is_refused_and_nothing_is_stored(
    session: Session, settings: Settings, field: str
) -> None:
    letter = make_letter(session, **{f"field_{field}": FieldRule.REQUIRED})
    for empty in ("", "   "):
        error = refused(session, letter, settings, **{**FILLED, field: empty})
        assert error.fields == {field: "required"}
        assert error.status_code == 422
    pending = sign(session, letter, settings, **FILLED)
    assert getattr(pending, field) == FILLED[field]


@pytest.mark.parametrize("field", SIGNER_FIELDS)
def test_an_optional_field_may_be_left_empty_or_filled(
    session: Session, settings: Settings, field: str
) -> None:
    letter = make_letter(session, **{f"field_{field}": FieldRule.OPTIONAL})
    assert getattr(sign(session, letter, settings, **{**FILLED, field: ""}), field) == ""
    assert getattr(sign(session, letter, settings, **FILLED), field) == FILLED[field]


@pytest.mark.parametrize("field", SIGNER_FIELDS)
def test_a_field_that_is_off_is_ignored_and_stored_nowhere(
    session: Session, settings: Settings, field: str
) -> None:
    letter = make_letter(session, **{f"field_{field}": FieldRule.OFF})
    pending = sign(session, letter, settings, **FILLED, comment_public_ok=True)
    assert getattr(pending, field) == ""
    others = [other for other in SIGNER_FIELDS if other not in (field, "comment")]
    assert all(getattr(pending, other) == FILLED[other] for other in others)
    if field == "comment":
        assert pending.comment_public_ok is False
    notify_pending(session, settings=settings)
    verify_signature(session, token=verify_token(settings, pending), settings=settings)
    [signature] = signatures_of(session, letter)
    assert getattr(signature, field) == ""


def test_every_problem_is_reported_at_once(session: Session, settings: Settings) -> None:
    letter = make_letter(
        session,
        field_title=FieldRule.REQUIRED,
        field_city=FieldRule.REQUIRED,
        field_comment=FieldRule.REQUIRED,
    )
    error = refused(session, letter, settings, title="", city="", comment="")
    assert error.fields == {"title": "required", "city": "required", "comment": "required"}


def test_the_rules_do_not_tell_whether_an_address_signed(
    session: Session, settings: Settings
) -> None:
    """On a letter with rules, accepted and refused requests alike run the same
    statements for a new, pending, confirmed or capped address."""
    letter = make_letter(
        session,
        field_organization=FieldRule.REQUIRED,
        field_city=FieldRule.OFF,
        field_comment=FieldRule.OPTIONAL,
        allow_anonymous=False,
    )
    runs: dict[str, list[list[str]]] = {}
    bad_inputs: list[dict[str, Any]] = [
        {"organization": ""},
        {"display": SignatureDisplay.ANONYMOUS},
    ]
    for n, state in enumerate(STATES):
        address = _prepare(session, letter, settings, state, n)
        runs[state] = []
        for bad in bad_inputs:
            with _statements(session) as seen, pytest.raises(InvalidInput):
                data = signature_in(email=address, **bad)
                sign_letter(session, slug=letter.slug, data=data, settings=settings)
            assert not any("INSERT" in statement.upper() for statement in seen)
            runs[state].append(seen)
        data = signature_in(email=address, comment="Why.", comment_public_ok=True)
        with _statements(session) as seen:
            sign_letter(session, slug=letter.slug, data=data, settings=settings)
        assert any("INSERT" in statement.upper() for statement in seen)
        runs[state].append(seen)
    assert all(runs[state] == runs["new"] for state in STATES)


# --- anonymous signatures --------------------------------------------------------------


def test_a_letter_may_refuse_anonymous_signatures(session: Session, settings: Settings) -> None:
    letter = make_letter(session, allow_anonymous=False)
    error = refused(session, letter, settings, display=SignatureDisplay.ANONYMOUS)
    assert error.fields == {"display": "not allowed"}
    assert "anonymous" in error.detail
    assert sign(session, letter, settings).display == SignatureDisplay.PUBLIC

    welcoming = make_letter(session)
    anonymous = sign(session, welcoming, settings, display=SignatureDisplay.ANONYMOUS)
    assert anonymous.display == SignatureDisplay.ANONYMOUS


def test_an_anonymous_signer_is_not_asked_for_what_would_not_be_kept(
    session: Session, settings: Settings
) -> None:
    """Title, organization and city are dropped from an anonymous signature: a letter that
    requires them requires them of public signers. A required comment, which an anonymous
    signature keeps, is required of everyone."""
    letter = make_letter(
        session,
        field_title=FieldRule.REQUIRED,
        field_organization=FieldRule.REQUIRED,
        field_city=FieldRule.REQUIRED,
        field_comment=FieldRule.REQUIRED,
    )
    bare = {"title": "", "organization": "", "city": ""}
    error = refused(
        session, letter, settings, **bare, comment="", display=SignatureDisplay.ANONYMOUS
    )
    assert error.fields == {"comment": "required"}
    pending = sign(
        session, letter, settings, **bare, comment="Quietly.", display=SignatureDisplay.ANONYMOUS
    )
    assert pending.comment == "Quietly."
    error = refused(session, letter, settings, **bare, comment="Loudly.")
    assert set(error.fields) == {"title", "organization", "city"}


def test_anonymous_refused_and_required_fields_are_reported_together(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session, allow_anonymous=False, field_comment=FieldRule.REQUIRED)
    error = refused(session, letter, settings, comment="", display=SignatureDisplay.ANONYMOUS)
    assert error.fields == {"comment": "required", "display": "not allowed"}


def test_the_rules_read_raw_form_values_too() -> None:
    """The page asks them of a form the schema refused, so every problem shows at once."""
    letter = Letter(
        field_title=FieldRule.REQUIRED,
        field_organization=FieldRule.OFF,
        field_city=FieldRule.OPTIONAL,
        field_comment=FieldRule.REQUIRED,
        allow_anonymous=False,
    )
    form = {"name": "", "title": "  ", "organization": "", "comment": None, "display": "public"}
    assert signer_rule_errors(letter, form) == {"title": "required", "comment": "required"}
    assert signer_rule_errors(letter, {**form, "display": "anonymous"}) == {
        "comment": "required",
        "display": "not allowed",
    }


# --- the comment -----------------------------------------------------------------------


def test_the_comment_is_checked_by_the_schema() -> None:
    good = SignatureIn(
        name="A", email="a@example.org", comment="  First line\r\nsecond\tline\rthird  "
    )
    assert good.comment == "First line\nsecond\tline\nthird"
    assert SignatureIn(name="A", email="a@example.org", comment="é" * 1000).comment == "é" * 1000
    for bad, kind in [
        ("x" * 1001, "string_too_long"),
        ("bell\x07", "control_chars"),
        ("nul\x00", "control_chars"),
        ("evil\u202eeman", "control_chars"),
        (12, "string_type"),
    ]:
        with pytest.raises(ValidationError) as caught:
            SignatureIn(name="A", email="a@example.org", comment=bad)
        [error] = caught.value.errors()
        assert (error["loc"], error["type"]) == (("comment",), kind)


def test_the_comment_and_its_consent_are_stored_and_copied_on_confirming(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session, field_comment=FieldRule.OPTIONAL)
    shown = sign_and_confirm(session, letter, settings, comment="Show it.", comment_public_ok=True)
    private = sign_and_confirm(session, letter, settings, comment="Only for you.")
    silent = sign_and_confirm(session, letter, settings, comment="", comment_public_ok=True)
    assert (shown.comment, shown.comment_public_ok, shown.comment_approved) == (
        "Show it.",
        True,
        False,  # none is public until an organizer approves it
    )
    assert (private.comment, private.comment_public_ok) == ("Only for you.", False)
    assert (silent.comment, silent.comment_public_ok) == ("", False)  # no comment, no consent


def test_an_anonymous_signature_keeps_its_comment_and_nothing_else(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session, field_comment=FieldRule.OPTIONAL)
    signature = sign_and_confirm(
        session, letter, settings, name="Whistle Blower", organization="Small Co",
        comment="I work there.", comment_public_ok=True, display=SignatureDisplay.ANONYMOUS,
        contact_ok=True,
    )  # fmt: skip
    assert (signature.comment, signature.comment_public_ok) == ("I work there.", True)
    identity = (signature.name, signature.title, signature.organization, signature.city)
    assert identity == ("", "", "", "")
    assert (signature.email, signature.email_domain, signature.contact_ok) == (None, "", False)


def test_no_comment_outlives_its_submission(session: Session, settings: Settings) -> None:
    """Once a submission is confirmed (or can no longer be), its pending row and every
    other row of its address lose the comment; the signature has it."""
    letter = make_letter(session, field_comment=FieldRule.OPTIONAL)
    address = "comments@example.org"
    first = sign(session, letter, settings, email=address, comment="First try.",
                 comment_public_ok=True)  # fmt: skip
    second = sign(session, letter, settings, email=address, comment="Second try.")
    notify_pending(session, settings=settings)
    assert [row.comment for row in pending_rows(session, letter)] == ["First try.", "Second try."]

    verify_signature(session, token=verify_token(settings, second), settings=settings)
    rows = pending_rows(session, letter)
    assert [(row.comment, row.comment_public_ok) for row in rows] == [("", False), ("", False)]
    assert [row.id for row in rows] == [first.id, second.id]
    [signature] = signatures_of(session, letter)
    assert signature.comment == "Second try."

    # Signing again once confirmed: an "already signed" note, and the comment goes with it.
    again = sign(session, letter, settings, email=address, comment="Third try.")
    assert again.comment == "Third try."
    notify_pending(session, settings=settings)
    assert [row.comment for row in pending_rows(session, letter)] == ["", "", ""]
    assert signatures_of(session, letter)[0].comment == "Second try."


def test_a_dropped_submission_loses_its_comment(session: Session, settings: Settings) -> None:
    """Over the email cap, an older waiting submission is dropped for a newer one."""
    letter = make_letter(session, field_comment=FieldRule.OPTIONAL)
    address = "capped@example.org"
    for n in range(settings.email_cap[0]):
        sign(session, letter, settings, email=address, comment=f"Sent {n}.")
    notify_pending(session, settings=settings)
    older = sign(session, letter, settings, email=address, comment="Dropped.")
    sign(session, letter, settings, email=address, comment="Newest.")
    notify_pending(session, settings=settings)
    dropped = next(row for row in pending_rows(session, letter) if row.id == older.id)
    assert (dropped.state, dropped.comment) == (PendingState.SKIPPED, "")
    assert pending_rows(session, letter)[-1].comment == "Newest."


# --- the version signed and the public id ----------------------------------------------


def test_each_signature_records_the_version_it_signed(session: Session, settings: Settings) -> None:
    letter = make_letter(session, version=2)
    early = sign(session, letter, settings)
    assert early.version == 2
    letter.version = 3  # edited after `early` signed, before they confirmed
    session.flush()
    late = sign(session, letter, settings)
    assert late.version == 3
    for pending in (early, late):
        verify_signature(session, token=verify_token(settings, pending), settings=settings)
    assert [signature.version for signature in signatures_of(session, letter)] == [2, 3]


def test_a_confirmed_signature_takes_its_submissions_random_public_id(
    session: Session, settings: Settings
) -> None:
    """The id the manage link in the confirmation email was made for (D78): random,
    one per signature, never a row id."""
    letter = make_letter(session)
    signatures = [sign_and_confirm(session, letter, settings) for _ in range(5)]
    ids = [signature.public_id for signature in signatures]
    assert all(isinstance(value, str) and len(value) >= 21 for value in ids)
    assert len(set(ids)) == len(ids)
    confirmed = set(
        session.scalars(
            select(PendingSignature.public_id).where(
                PendingSignature.letter_id == letter.id,
                PendingSignature.state == PendingState.CONFIRMED,
            )
        )
    )
    assert set(ids) == confirmed
    row_ids = {str(signature.id) for signature in signatures}
    assert not set(ids) & row_ids


def test_a_withdrawn_signature_comes_back_with_new_links_and_new_comment(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session, field_comment=FieldRule.OPTIONAL, version=1)
    address = "back@example.org"
    signature = sign_and_confirm(session, letter, settings, email=address, comment="Old.",
                                 comment_public_ok=True)  # fmt: skip
    public_id = signature.public_id
    signature.comment_approved = True
    signature.status = SignatureStatus.WITHDRAWN
    add_to_tally(session, letter_id=letter.id, delta=-1)
    letter.version = 2
    session.flush()

    again = sign(session, letter, settings, email=address, comment="New.")
    notify_pending(session, settings=settings)
    verify_signature(session, token=verify_token(settings, again), settings=settings)
    [back] = signatures_of(session, letter)
    assert back.status == SignatureStatus.VERIFIED
    # The new submission's id: links from before the withdrawal no longer control it.
    assert back.public_id == again.public_id != public_id
    assert (back.comment, back.comment_public_ok, back.comment_approved) == ("New.", False, False)
    assert back.version == 2


# --- the public list -------------------------------------------------------------------


def test_a_letter_may_keep_its_signer_list_to_itself(session: Session, settings: Settings) -> None:
    letter = make_letter(session, show_signers=False)
    with pytest.raises(SignersNotPublic) as caught:
        require_public_list(letter)
    assert (caught.value.status_code, caught.value.code) == (404, "signers_not_public")
    require_public_list(make_letter(session))  # the default: published


def test_hidden_signatures_are_counted_but_not_listed(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    shown = sign_and_confirm(session, letter, settings, name="Shown Person")
    hidden = sign_and_confirm(session, letter, settings, name="Hidden Person")
    hidden.hidden = True
    session.flush()
    page, _ = list_public_signatures(session, letter_id=letter.id)
    assert [signer.name for signer in page] == [shown.name]
    assert [signer.name for signer in recent_public_signers(session, letter_id=letter.id)] == [
        shown.name
    ]
