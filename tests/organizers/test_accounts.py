"""Accounts: the first admin from the command line, invitations, the admin flag, and
the schemas that check an address. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Forbidden, InvalidInput, NotFound
from app.mail.models import OutboxEmail
from app.organizers.models import AuditEvent, Organizer
from app.organizers.schemas import InviteIn, LoginIn
from app.organizers.service import (
    SHELL,
    Actor,
    create_organizer,
    find_organizer,
    invite_organizer,
    list_organizers,
    require_admin,
    set_admin,
)
from tests.support.organizers import make_organizer


def _events(session: Session) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_create_organizer_makes_the_first_admin_as_the_command_line_does(
    session: Session,
) -> None:
    admin = create_organizer(session, email=" Admin@Example.org", is_admin=True)
    assert admin.id is not None
    assert admin.email == "admin@example.org" and admin.is_admin
    assert find_organizer(session, email="ADMIN@example.org") is admin
    # Run twice, or on an existing organizer: one account, and an admin.
    plain = create_organizer(session, email="plain@example.org")
    assert not plain.is_admin
    again = create_organizer(session, email="plain@example.org", is_admin=True)
    assert again.id == plain.id and again.is_admin
    assert create_organizer(session, email="admin@example.org", is_admin=True).id == admin.id
    assert len(list_organizers(session)) == 2


def test_an_invitation_makes_an_account_and_queues_a_neutral_email(
    session: Session, settings: Settings
) -> None:
    admin = make_organizer(session, "admin@example.org", is_admin=True)

    invited = invite_organizer(
        session, email="new@example.org", actor=Actor(admin), settings=settings
    )

    assert invited.email == "new@example.org" and not invited.is_admin
    assert find_organizer(session, email="new@example.org") is not None
    [email] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "organizer_invite"))
    assert email.to_address == "new@example.org"
    assert "http://testserver/login" in email.text_body
    assert "/login/" not in email.text_body  # no token: they ask for a link themselves
    assert "You have been given an organizer account on http://testserver" in email.text_body
    assert "admin@example.org" not in email.text_body + email.html_body + email.subject
    [event] = _events(session)
    assert (event.action, event.letter_id, event.organizer_id) == (
        "organizer.invite",
        None,
        admin.id,
    )
    assert event.actor == "admin@example.org"
    assert event.detail == {"organizer_id": invited.id, "email": "new@example.org"}


def test_inviting_an_existing_organizer_changes_nothing(
    session: Session, settings: Settings
) -> None:
    admin = make_organizer(session, "admin@example.org", is_admin=True)
    make_organizer(session, "known@example.org")
    # (Other tests may have committed emails to this database: count, don't expect none.)
    queued_before = len(session.scalars(select(OutboxEmail.id)).all())
    with pytest.raises(InvalidInput) as exists:
        invite_organizer(session, email="Known@example.org", actor=Actor(admin), settings=settings)
    assert "email" in exists.value.fields
    assert len(session.scalars(select(OutboxEmail.id)).all()) == queued_before
    assert _events(session) == []


def test_admins_make_and_unmake_admins_and_it_is_recorded(session: Session) -> None:
    admin = make_organizer(session, "admin@example.org", is_admin=True)
    other = make_organizer(session, "other@example.org")

    assert set_admin(session, organizer_id=other.id, is_admin=True, actor=Actor(admin)).is_admin
    set_admin(session, organizer_id=other.id, is_admin=True, actor=Actor(admin))  # no change
    assert not set_admin(
        session, organizer_id=other.id, is_admin=False, actor=Actor(admin)
    ).is_admin

    assert [(e.action, e.letter_id, e.detail["organizer_id"]) for e in _events(session)] == [
        ("organizer.admin", None, other.id),
        ("organizer.unadmin", None, other.id),
    ]
    # The command line is an actor too.
    set_admin(session, organizer_id=other.id, is_admin=True, actor=SHELL)
    assert _events(session)[-1].actor == "command line"


def test_an_admin_cannot_remove_their_own_admin_flag(session: Session) -> None:
    admin = make_organizer(session, "admin@example.org", is_admin=True)
    with pytest.raises(InvalidInput):
        set_admin(session, organizer_id=admin.id, is_admin=False, actor=Actor(admin))
    session.refresh(admin)
    assert admin.is_admin
    assert _events(session) == []


def test_set_admin_of_nobody_is_not_found(session: Session) -> None:
    admin = make_organizer(session, "admin@example.org", is_admin=True)
    with pytest.raises(NotFound):
        set_admin(session, organizer_id=admin.id + 1000, is_admin=True, actor=Actor(admin))


def test_only_admins_pass_require_admin(session: Session) -> None:
    require_admin(make_organizer(session, "admin@example.org", is_admin=True))
    with pytest.raises(Forbidden):
        require_admin(make_organizer(session, "plain@example.org"))


def test_organizers_are_listed_oldest_first(session: Session) -> None:
    first = make_organizer(session, "b@example.org")
    second = make_organizer(session, "a@example.org")
    assert [o.id for o in list_organizers(session)] == [first.id, second.id]
    assert all(isinstance(o, Organizer) for o in list_organizers(session))


@pytest.mark.parametrize("schema", [LoginIn, InviteIn])
def test_addresses_are_checked_and_lower_cased(schema: type[LoginIn] | type[InviteIn]) -> None:
    assert schema.model_validate({"email": "  Ada@Example.ORG "}).email == "ada@example.org"
    for bad in ("", "ada", "ada@", "@example.org", "a\u202eb@example.org", "a" * 250 + "@x.org"):
        with pytest.raises(ValidationError):
            schema.model_validate({"email": bad})
    with pytest.raises(ValidationError):
        schema.model_validate({"email": 5})  # JSON-ish input: not text
