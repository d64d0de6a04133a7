"""A letter's team: invitations (accounts made as needed, an email each), roles, and a
letter that always keeps an owner. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput
from app.letters.models import Letter
from app.letters.service import (
    Member,
    change_team_role,
    invite_to_team,
    remove_from_team,
    team_of,
)
from app.mail.models import OutboxEmail
from app.organizers.models import AuditEvent, Organizer, Role
from app.organizers.service import Actor, find_organizer, role_on
from tests.support.factories import make_letter
from tests.support.organizers import make_organizer


def audit(session: Session, letter: Letter) -> list[tuple[str, str, dict[str, Any]]]:
    rows = session.scalars(
        select(AuditEvent).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
    )
    return [(row.actor, row.action, row.detail) for row in rows]


def invites_to(session: Session, address: str) -> list[OutboxEmail]:
    return list(
        session.scalars(
            select(OutboxEmail).where(
                OutboxEmail.kind == "letter_invite", OutboxEmail.to_address == address
            )
        )
    )


@pytest.fixture
def letter(session: Session) -> Letter:
    return make_letter(session, title="Our letter")


@pytest.fixture
def owner(session: Session, letter: Letter) -> Organizer:
    return make_organizer(session, "owner@example.org", letter=letter, role=Role.OWNER)


def test_inviting_makes_the_account_grants_the_role_and_writes(
    session: Session, settings: Settings, letter: Letter, owner: Organizer
) -> None:
    assert settings.open_registration is False  # invitations work all the same
    assert find_organizer(session, email="new@example.org") is None

    invited = invite_to_team(session, letter=letter, email=" New@Example.org ",
                             role=Role.EDITOR, actor=Actor(owner), settings=settings)  # fmt: skip

    assert invited.email == "new@example.org"
    assert not invited.is_admin
    assert role_on(session, organizer=invited, letter_id=letter.id) == Role.EDITOR
    [email] = invites_to(session, "new@example.org")
    assert "Our letter" in email.subject
    assert "owner@example.org" in email.text_body
    assert "editor" in email.text_body
    assert f"{settings.base_url}/login" in email.text_body
    assert f"{settings.base_url}/dashboard/letters/{letter.slug}" in email.html_body
    assert audit(session, letter) == [
        ("owner@example.org", "team.invite", {"email": "new@example.org", "role": "editor"})
    ]
    assert team_of(session, letter_id=letter.id) == [
        Member(owner.id, "owner@example.org", Role.OWNER),
        Member(invited.id, "new@example.org", Role.EDITOR),
    ]


def test_an_existing_organizer_is_invited_to_one_more_letter(
    session: Session, settings: Settings, letter: Letter, owner: Organizer
) -> None:
    other_letter = make_letter(session)
    known = make_organizer(session, "known@example.org", letter=other_letter, role=Role.OWNER)
    invited = invite_to_team(session, letter=letter, email="known@example.org",
                             role=Role.VIEWER, actor=Actor(owner), settings=settings)  # fmt: skip
    assert invited.id == known.id
    assert role_on(session, organizer=known, letter_id=letter.id) == Role.VIEWER
    assert role_on(session, organizer=known, letter_id=other_letter.id) == Role.OWNER


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "required"),
        ("not an address", "like name@example.org"),
        ("owner@example.org", "on the team already"),
        ("OWNER@example.org", "on the team already"),
    ],
)
def test_bad_invitations_change_nothing(
    session: Session, settings: Settings, letter: Letter, owner: Organizer, email: str, message: str
) -> None:
    # (Other tests may have committed emails to this database: count, don't expect none.)
    queued_before = len(session.scalars(select(OutboxEmail.id)).all())
    with pytest.raises(InvalidInput) as caught:
        invite_to_team(session, letter=letter, email=email, role=Role.EDITOR,
                       actor=Actor(owner), settings=settings)  # fmt: skip
    assert message in caught.value.fields["email"]
    assert role_on(session, organizer=owner, letter_id=letter.id) == Role.OWNER
    assert len(session.scalars(select(OutboxEmail.id)).all()) == queued_before
    assert audit(session, letter) == []


def test_roles_change_but_the_last_owner_stays(
    session: Session, letter: Letter, owner: Organizer
) -> None:
    editor = make_organizer(session, "editor@example.org", letter=letter, role=Role.EDITOR)
    with pytest.raises(InvalidInput, match="at least one owner"):
        change_team_role(session, letter=letter, organizer_id=owner.id, role=Role.EDITOR,
                         actor=Actor(owner))  # fmt: skip
    assert role_on(session, organizer=owner, letter_id=letter.id) == Role.OWNER

    change_team_role(session, letter=letter, organizer_id=editor.id, role=Role.OWNER,
                     actor=Actor(owner))  # fmt: skip
    change_team_role(session, letter=letter, organizer_id=owner.id, role=Role.VIEWER,
                     actor=Actor(editor))  # fmt: skip
    change_team_role(session, letter=letter, organizer_id=owner.id, role=Role.VIEWER,
                     actor=Actor(editor))  # no change: not recorded  # fmt: skip

    assert role_on(session, organizer=owner, letter_id=letter.id) == Role.VIEWER
    assert role_on(session, organizer=editor, letter_id=letter.id) == Role.OWNER
    assert audit(session, letter) == [
        ("owner@example.org", "team.role",
         {"email": "editor@example.org", "role": "owner", "previous": "editor"}),
        ("editor@example.org", "team.role",
         {"email": "owner@example.org", "role": "viewer", "previous": "owner"}),
    ]  # fmt: skip
    stranger = make_organizer(session, "stranger@example.org")
    with pytest.raises(InvalidInput, match="not on this letter's team"):
        change_team_role(session, letter=letter, organizer_id=stranger.id, role=Role.OWNER,
                         actor=Actor(editor))  # fmt: skip


def test_removing_people_but_never_the_last_owner(
    session: Session, letter: Letter, owner: Organizer
) -> None:
    viewer = make_organizer(session, "viewer@example.org", letter=letter, role=Role.VIEWER)
    with pytest.raises(InvalidInput, match="at least one owner"):
        remove_from_team(session, letter=letter, organizer_id=owner.id, actor=Actor(owner))

    remove_from_team(session, letter=letter, organizer_id=viewer.id, actor=Actor(owner))

    assert role_on(session, organizer=viewer, letter_id=letter.id) is None
    assert find_organizer(session, email="viewer@example.org") is not None  # the account stays
    assert team_of(session, letter_id=letter.id) == [
        Member(owner.id, "owner@example.org", Role.OWNER)
    ]
    assert audit(session, letter) == [
        ("owner@example.org", "team.remove", {"email": "viewer@example.org", "role": "viewer"})
    ]
    with pytest.raises(InvalidInput, match="not on this letter's team"):
        remove_from_team(session, letter=letter, organizer_id=viewer.id, actor=Actor(owner))
