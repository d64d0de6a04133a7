"""A letter's team over HTTP: who sees it, who changes it (owners only), invitations
(an account and an email, even with registration closed), the last owner, CSRF."""

from __future__ import annotations

import html

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db import Database
from app.letters.models import Letter
from app.mail.models import OutboxEmail
from app.organizers.models import AuditEvent, LetterRole, Organizer, Role
from tests.support.organizers import post_form, sign_in_as
from tests.web.flows import add_letter

ROLES: list[tuple[Role | None, int]] = [
    (Role.OWNER, 303),
    (Role.EDITOR, 403),
    (Role.VIEWER, 403),
    (None, 404),
]


def team(app: FastAPI, letter: Letter) -> dict[str, Role]:
    with app.state.database.read() as session:
        rows = session.execute(
            select(Organizer.email, LetterRole.role)
            .join(LetterRole, LetterRole.organizer_id == Organizer.id)
            .where(LetterRole.letter_id == letter.id)
        ).all()
    return {email: role for email, role in rows}


def invitations(app: FastAPI) -> list[str | None]:
    with app.state.database.read() as session:
        return list(
            session.scalars(
                select(OutboxEmail.to_address).where(OutboxEmail.kind == "letter_invite")
            )
        )


def organizer_id(app: FastAPI, email: str) -> int:
    database: Database = app.state.database
    with database.read() as session:
        found = session.scalar(select(Organizer.id).where(Organizer.email == email))
    assert found is not None
    return found


def audit_actions(app: FastAPI, letter: Letter) -> list[str]:
    with app.state.database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.letter_id == letter.id)
                .order_by(AuditEvent.id)
            )
        )


@pytest.fixture
def letter(app: FastAPI) -> Letter:
    return add_letter(app, title="Our letter")


def join(client: TestClient, app: FastAPI, letter: Letter, role: Role | None) -> int:
    email = f"{role.value if role else 'stranger'}@example.org"
    return sign_in_as(client, app, email, letter_slug=letter.slug if role else None, role=role)


@pytest.mark.parametrize("role", [Role.OWNER, Role.EDITOR, Role.VIEWER, None])
def test_everyone_on_the_team_sees_it_and_only_owners_get_the_forms(
    app: FastAPI, client: TestClient, letter: Letter, role: Role | None
) -> None:
    sign_in_as(client, app, "first@example.org", letter_slug=letter.slug, role=Role.OWNER)
    join(client, app, letter, role)
    page = client.get(f"/dashboard/letters/{letter.slug}/team")
    if role is None:
        assert page.status_code == 404
        assert "first@example.org" not in page.text
        return
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "first@example.org" in page.text
    assert f"{role.value}@example.org (you)" in page.text
    owner = role == Role.OWNER
    assert (f'action="/dashboard/letters/{letter.slug}/team"' in page.text) is owner
    assert ("/remove" in page.text) is owner
    assert ("Only the letter's owners can change the team." in html.unescape(page.text)) is (
        not owner
    )


def test_signed_out_team_pages_go_to_login(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    base = f"/dashboard/letters/{letter.slug}/team"
    response = client.get(base, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    for path in (base, f"{base}/1/role", f"{base}/1/remove"):
        response = post_form(client, path, {"email": "x@example.org", "role": "owner"})
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    assert team(app, letter) == {}


@pytest.mark.parametrize(("role", "status"), ROLES)
def test_only_owners_invite(
    app: FastAPI, client: TestClient, letter: Letter, role: Role | None, status: int
) -> None:
    assert app.state.settings.open_registration is False
    join(client, app, letter, role)

    response = post_form(client, f"/dashboard/letters/{letter.slug}/team",
                         {"email": "New.Person@Example.org", "role": "editor"})  # fmt: skip

    assert response.status_code == status
    if status == 303:
        assert response.headers["location"] == (
            f"/dashboard/letters/{letter.slug}/team?notice=invited"
        )
        assert team(app, letter)["new.person@example.org"] == Role.EDITOR
        assert invitations(app) == ["new.person@example.org"]
        assert audit_actions(app, letter) == ["team.invite"]
        page = client.get(response.headers["location"])
        assert "Invited." in page.text
        assert "new.person@example.org" in page.text
    else:
        assert "new.person@example.org" not in team(app, letter)
        assert invitations(app) == []
        assert audit_actions(app, letter) == []


def test_the_invited_person_can_open_the_letter(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    join(client, app, letter, Role.OWNER)
    post_form(client, f"/dashboard/letters/{letter.slug}/team",
              {"email": "helper@example.org", "role": "viewer"})  # fmt: skip
    sign_in_as(client, app, "helper@example.org")
    assert client.get(f"/dashboard/letters/{letter.slug}").status_code == 200
    assert client.get(f"/dashboard/letters/{letter.slug}/edit").status_code == 403


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "nobody", "role": "editor"}, "email", "like name@example.org"),
        ({"email": "", "role": "editor"}, "email", "required"),
        ({"email": "owner@example.org", "role": "editor"}, "email", "on the team already"),
        ({"email": "x@example.org", "role": "boss"}, "role", "owner, editor or viewer"),
    ],
)
def test_bad_invitations_are_explained(
    app: FastAPI,
    client: TestClient,
    letter: Letter,
    data: dict[str, str],
    field: str,
    message: str,
) -> None:
    join(client, app, letter, Role.OWNER)
    response = post_form(client, f"/dashboard/letters/{letter.slug}/team", data)
    assert response.status_code == 422
    assert message in response.text
    assert f'id="f-{field}-error"' in response.text
    assert f'value="{data["email"]}"' in response.text  # what was typed stays
    assert team(app, letter) == {"owner@example.org": Role.OWNER}
    assert invitations(app) == []


def test_forms_without_the_csrf_token_change_nothing(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    join(client, app, letter, Role.OWNER)
    editor = sign_in_as(client, app, "ed@example.org", letter_slug=letter.slug, role=Role.EDITOR)
    join(client, app, letter, Role.OWNER)
    base = f"/dashboard/letters/{letter.slug}/team"
    for path, data in (
        (base, {"email": "x@example.org", "role": "owner"}),
        (f"{base}/{editor}/role", {"role": "owner"}),
        (f"{base}/{editor}/remove", {}),
    ):
        assert client.post(path, data=data, follow_redirects=False).status_code == 403, path
    assert team(app, letter) == {"owner@example.org": Role.OWNER, "ed@example.org": Role.EDITOR}


@pytest.mark.parametrize(("role", "status"), ROLES)
def test_only_owners_change_roles_and_remove_people(
    app: FastAPI, client: TestClient, letter: Letter, role: Role | None, status: int
) -> None:
    sign_in_as(client, app, "first@example.org", letter_slug=letter.slug, role=Role.OWNER)
    viewer = sign_in_as(client, app, "v2@example.org", letter_slug=letter.slug, role=Role.VIEWER)
    join(client, app, letter, role)
    base = f"/dashboard/letters/{letter.slug}/team/{viewer}"

    changed = post_form(client, f"{base}/role", {"role": "editor"})
    assert changed.status_code == status
    assert team(app, letter)["v2@example.org"] == (Role.EDITOR if status == 303 else Role.VIEWER)

    removed = post_form(client, f"{base}/remove")
    assert removed.status_code == status
    assert ("v2@example.org" in team(app, letter)) is (status != 303)
    if status == 303:
        assert removed.headers["location"].endswith("/team?notice=removed")
        assert audit_actions(app, letter) == ["team.role", "team.remove"]


def test_the_last_owner_can_be_neither_demoted_nor_removed(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    me = join(client, app, letter, Role.OWNER)
    base = f"/dashboard/letters/{letter.slug}/team/{me}"
    demoted = post_form(client, f"{base}/role", {"role": "viewer"})
    assert demoted.status_code == 422
    assert "A letter keeps at least one owner" in demoted.text
    removed = post_form(client, f"{base}/remove")
    assert removed.status_code == 422
    assert "A letter keeps at least one owner" in removed.text
    assert team(app, letter) == {"owner@example.org": Role.OWNER}
    stranger = organizer_id(app, "owner@example.org") + 1000
    missing = post_form(client, f"/dashboard/letters/{letter.slug}/team/{stranger}/remove")
    assert missing.status_code == 422
    assert "not on this letter" in html.unescape(missing.text)


def test_an_owner_who_leaves_goes_back_to_their_letters(
    app: FastAPI, client: TestClient, letter: Letter
) -> None:
    sign_in_as(client, app, "other@example.org", letter_slug=letter.slug, role=Role.OWNER)
    me = join(client, app, letter, Role.OWNER)
    response = post_form(client, f"/dashboard/letters/{letter.slug}/team/{me}/remove")
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard")
    assert client.get(f"/dashboard/letters/{letter.slug}").status_code == 404
