"""Authorization and CSRF on every organizer route, tried as an attacker would.

The routes come from the app itself: every route under /dashboard and every form POST
outside /api must be classified in `SPECS` (or `PUBLIC_POSTS`), so a route added later
is covered, or this file fails until it is. For each route, with real path parameters
(a letter owned by someone else, a signature position, a team member, an organizer):

- signed out: 303 to /login, nothing in the body, nothing changed;
- signed in with no role on the letter (an owner of another letter): the same 404 as
  for a letter that does not exist, nothing changed;
- a role below the one needed: 403, nothing changed;
- a POST without the CSRF token, with a wrong one, or without the cookie: 403, nothing
  changed (even for the letter's owner);
- each role allowed (and an admin, who acts as an owner everywhere) succeeds, on a
  copy of the letter of its own, changes that letter only, and gets pages marked
  `Cache-Control: no-store`.

Then: positions, team members and form fields of another letter, put into a letter's
URLs and forms, reach nothing of the other letter; and the session cookie (forged,
tampered, of another purpose, signed out, of a deleted organizer, expired) signs
nobody in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app import tokens
from app.config import Settings
from app.db import Base, utcnow
from app.letters.models import Letter, LetterStatus, LetterTally
from app.models import import_all
from app.organizers.models import (
    LetterRole,
    LoginLink,
    LoginState,
    Organizer,
    OrganizerSession,
    Role,
)
from app.organizers.service import grant_role, start_session
from app.organizers.web import session_cookie_name
from app.signatures.models import RemovalReason, Signature, SignatureStatus
from app.web.security import csrf_cookie_name
from tests.support.factories import make_letter, tampered
from tests.support.organizers import make_organizer

import_all()

# --- What each route is ----------------------------------------------------------------


class Scope(StrEnum):
    LETTER = "letter"  # one letter's page or action: needs a role on it
    ORGANIZER = "organizer"  # any signed-in organizer
    ADMIN = "admin"  # admins only
    SESSION = "session"  # signing out
    LOGIN = "login"  # signing in: no session yet, CSRF only


Form = Callable[[str], dict[str, str]]
"""The form a route is sent, given who sends it (so that what it creates is unique)."""


def no_form(_who: str) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Spec:
    scope: Scope
    needed: Role = Role.VIEWER
    ok: int = 200
    """The status of a success (pages 200, forms 303)."""
    form: Form = no_form
    position: int = 1
    status: LetterStatus = LetterStatus.OPEN
    """The state the letter must be in for the action to be possible."""
    writes: bool = False
    """Whether a GET writes (the audit line of a download); POSTs always do."""
    files: Callable[[], dict[str, Any]] | None = None
    """The files of a multipart form (an upload)."""


THEIRS = "their-letter"
"""The slug of a letter owned by `stranger`, who has no role on the targets."""
MISSING = "no-such-letter"
ADMIN = "admin"
ROLE_NAMES = {Role.VIEWER: "viewer", Role.EDITOR: "editor", Role.OWNER: "owner"}
WHO = ("owner", "editor", "viewer", "stranger", ADMIN)


def email(who: str) -> str:
    return f"{who}@example.org"


def letter_form(who: str) -> dict[str, str]:
    return {
        "action": "save",
        "slug": f"brand-new-{who}",
        "title": "A brand new letter",
        "summary": "New.",
        "body": "We ask for **one** thing.",
        "addressed_to": "The council",
        "goal": "50",
        "field_title": "optional",
        "field_organization": "optional",
        "field_city": "optional",
        "field_comment": "optional",
        "allow_anonymous": "on",
        "show_signers": "on",
    }


def edit_form(_who: str) -> dict[str, str]:
    # The slug of another letter rides along: editing never changes a slug, and
    # certainly never reaches that letter.
    return {**letter_form(_who), "title": "A better title", "slug": THEIRS}


def bulk_form(_who: str) -> dict[str, str]:
    as_of = datetime.now(UTC).isoformat()
    return {"domain": "bulk.example", "expected": "1", "reason": "bot", "as_of": as_of}


def today(_who: str) -> dict[str, str]:
    return {"date": utcnow().date().isoformat()}


def response_form(_who: str) -> dict[str, str]:
    return {**today(_who), "text": "We read it and we will act.", "link": "https://example.org/a"}


def header_image() -> dict[str, Any]:
    """A small PNG as a header image upload."""
    return {"image": ("header.png", TINY_PNG, "image/png")}


TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c49444154789c63f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


L = "/dashboard/letters/{slug}"
P = f"{L}/signatures/{{position}}"
VIEWER, EDITOR, OWNER = Role.VIEWER, Role.EDITOR, Role.OWNER
ROLES = (VIEWER, EDITOR, OWNER)
LETTER = Scope.LETTER

SPECS: dict[tuple[str, str], Spec] = {
    ("GET", "/dashboard"): Spec(Scope.ORGANIZER),
    ("GET", "/dashboard/letters/new"): Spec(Scope.ORGANIZER),
    ("POST", "/dashboard/letters/new"): Spec(Scope.ORGANIZER, ok=303, form=letter_form),
    ("GET", L): Spec(LETTER, VIEWER),
    ("GET", f"{L}/edit"): Spec(LETTER, EDITOR),
    ("POST", f"{L}/edit"): Spec(LETTER, EDITOR, 303, edit_form),
    ("POST", f"{L}/publish"): Spec(LETTER, OWNER, 303, status=LetterStatus.DRAFT),
    ("POST", f"{L}/close"): Spec(LETTER, OWNER, 303),
    ("POST", f"{L}/reopen"): Spec(LETTER, OWNER, 303, status=LetterStatus.CLOSED),
    ("POST", f"{L}/archive"): Spec(LETTER, OWNER, 303),
    ("GET", f"{L}/audit"): Spec(LETTER, OWNER),
    ("GET", f"{L}/activity"): Spec(LETTER, VIEWER),
    ("GET", f"{L}/team"): Spec(LETTER, VIEWER),
    ("POST", f"{L}/team"): Spec(
        LETTER, OWNER, 303, lambda who: {"email": f"invited-{who}@example.org", "role": "editor"}
    ),
    ("POST", f"{L}/team/{{member_id}}/role"): Spec(
        LETTER, OWNER, 303, lambda _: {"role": "viewer"}
    ),
    ("POST", f"{L}/team/{{member_id}}/remove"): Spec(LETTER, OWNER, 303),
    ("GET", f"{L}/signatures"): Spec(LETTER, VIEWER),
    ("POST", f"{P}/hide"): Spec(LETTER, EDITOR, 303, position=1),
    ("POST", f"{P}/unhide"): Spec(LETTER, EDITOR, 303, position=2),
    ("POST", f"{P}/remove"): Spec(LETTER, EDITOR, 303, lambda _: {"reason": "bot"}, position=1),
    ("POST", f"{P}/restore"): Spec(LETTER, EDITOR, 303, position=3),
    ("POST", f"{P}/comment/approve"): Spec(LETTER, OWNER, 303, position=1),
    ("POST", f"{P}/comment/unapprove"): Spec(LETTER, OWNER, 303, position=4),
    ("POST", f"{P}/confirmed"): Spec(
        LETTER, OWNER, 303, lambda _: {"confirmed": "true"}, position=4
    ),
    ("GET", f"{L}/signatures/bulk"): Spec(LETTER, OWNER),
    ("POST", f"{L}/signatures/bulk"): Spec(LETTER, OWNER, 303, bulk_form),
    ("GET", f"{L}/export.csv"): Spec(LETTER, OWNER, writes=True),
    ("GET", f"{L}/delivery"): Spec(LETTER, VIEWER),
    ("POST", f"{L}/delivered"): Spec(LETTER, OWNER, 303, today),
    ("POST", f"{L}/response"): Spec(LETTER, OWNER, 303, response_form),
    ("POST", f"{L}/response/clear"): Spec(LETTER, OWNER, 303),
    ("GET", f"{L}/packet"): Spec(LETTER, OWNER, writes=True),
    ("GET", f"{L}/looks"): Spec(LETTER, EDITOR),
    ("POST", f"{L}/looks"): Spec(LETTER, EDITOR, 303, lambda _: {"accent_color": "#123456"}),
    ("POST", "/dashboard/header-images/{slug}"): Spec(LETTER, EDITOR, 303, files=header_image),
    ("GET", f"{L}/translations/{{locale}}"): Spec(LETTER, EDITOR),
    ("POST", f"{L}/translations/{{locale}}"): Spec(
        LETTER, EDITOR, 303, lambda _: {"title": "Una carta", "body": "Pedimos una cosa."}
    ),
    ("GET", f"{L}/updates"): Spec(LETTER, VIEWER),
    ("POST", f"{L}/updates"): Spec(
        LETTER,
        OWNER,
        303,
        lambda _: {"subject": "News", "body": "It was delivered.", "action": "send"},
    ),
    ("GET", "/dashboard/organizers"): Spec(Scope.ADMIN),
    ("POST", "/dashboard/organizers/invite"): Spec(
        Scope.ADMIN, ok=303, form=lambda who: {"email": f"new-{who}@example.org"}
    ),
    ("POST", "/dashboard/organizers/{organizer_id}/admin"): Spec(
        Scope.ADMIN, ok=303, form=lambda _: {"is_admin": "true"}
    ),
    ("POST", "/logout"): Spec(Scope.SESSION, ok=303),
    ("POST", "/login"): Spec(Scope.LOGIN, ok=303, form=lambda _: {"email": email("owner")}),
    ("POST", "/login/{token}"): Spec(Scope.LOGIN, ok=303),
}

PUBLIC_POSTS = {
    ("POST", "/letters/{slug}/sign"): "a signer's form: its CSRF is tested in test_security",
    ("POST", "/verify/{token}"): "a signer's confirmation: its CSRF is tested in test_security",
    ("POST", "/unsubscribe/{token}"): "RFC 8058 one-click: no cookie, the token is the credential",
    ("POST", "/signature/{token}/display"): "the manage link: CSRF in test_manage_pages",
    ("POST", "/signature/{token}/stop-updates"): "the manage link: CSRF in test_manage_pages",
    ("POST", "/signature/{token}/withdraw"): "the manage link: CSRF in test_manage_pages",
}


def organizer_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every route under /dashboard, and every POST outside the JSON API."""
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or context.path is None:
            continue
        for method in context.methods or ():
            dashboard = context.path == "/dashboard" or context.path.startswith("/dashboard/")
            form_post = method == "POST" and not context.path.startswith("/api/")
            if dashboard or form_post:
                found.add((method, context.path))
    return found


def test_every_organizer_route_is_classified(app: FastAPI) -> None:
    found = organizer_routes(app)
    unclassified = found - set(SPECS) - set(PUBLIC_POSTS)
    assert not unclassified, f"classify these routes in SPECS: {sorted(unclassified)}"
    gone = (set(SPECS) | set(PUBLIC_POSTS)) - found
    assert not gone, f"these routes no longer exist: {sorted(gone)}"


# --- The world: letters owned by someone else, and people with every role -----------------


@dataclass
class World:
    targets: list[str]
    """Copies of one letter owned by `owner`: the first is attacked, and each role that
    may act succeeds on a copy of its own."""
    ids: dict[str, int] = field(default_factory=dict)
    """Organizer ids by who they are; letter ids by slug."""
    cookies: dict[str, str] = field(default_factory=dict)
    login_token: str = ""


SIGNERS = 4
"""Each target's signatures: 1 counted, with a comment that may be shown, from
bulk.example; 2 hidden; 3 removed; 4 with an approved comment and an address kept."""
THEIR_SIGNERS = 6
"""Their letter's: every one from bulk.example with a comment that may be shown; 5 is
hidden and its comment approved, 6 removed (positions the targets do not have)."""


def _signers(session: Session, letter: Letter, count: int, theirs: bool) -> None:
    """Confirmed signatures, inserted as confirming leaves them (fast set-up)."""
    removed = 6 if theirs else 3
    for n in range(1, count + 1):
        domain = "bulk.example" if theirs or n == 1 else "example.org"
        session.add(
            Signature(
                letter_id=letter.id,
                position=n,
                name=f"Secret Signer {n} of {letter.slug}",
                email=f"s{n}-{letter.slug}@{domain}" if n == 4 else None,
                contact_ok=n == 4,
                email_hash=secrets.token_hex(32),
                email_domain=domain,
                public_id=secrets.token_urlsafe(24),
                verified_at=utcnow() - timedelta(hours=1),
                comment="Because it matters.",
                comment_public_ok=True,
                hidden=n == (5 if theirs else 2),
                comment_approved=n == (5 if theirs else 4),
                status=SignatureStatus.REMOVED if n == removed else SignatureStatus.VERIFIED,
                removed_reason=RemovalReason.DUPLICATE if n == removed else None,
            )
        )
    session.execute(
        update(LetterTally)
        .where(LetterTally.letter_id == letter.id)
        .values(verified_count=count - 1, last_position=count)
    )


def build(app: FastAPI, copies: int, status: LetterStatus = LetterStatus.OPEN) -> World:
    settings: Settings = app.state.settings
    world = World(targets=[f"target-{n}" for n in range(copies)])
    with app.state.database.write() as session:
        people = {who: make_organizer(session, email(who), is_admin=who == ADMIN) for who in WHO}
        for slug in world.targets:
            letter = make_letter(session, slug=slug, title=f"Target letter {slug}")
            _signers(session, letter, SIGNERS, theirs=False)
            letter.status = status
            letter.published_at = None if status == LetterStatus.DRAFT else letter.published_at
            letter.response_on = utcnow().date()
            letter.response_text = "An earlier answer."
            for who, role in (("owner", OWNER), ("editor", EDITOR), ("viewer", VIEWER)):
                grant_role(session, letter_id=letter.id, organizer=people[who], role=role)
            world.ids[slug] = letter.id
        theirs = make_letter(session, slug=THEIRS, title="Their own letter")
        _signers(session, theirs, THEIR_SIGNERS, theirs=True)
        grant_role(session, letter_id=theirs.id, organizer=people["stranger"], role=OWNER)
        world.ids[THEIRS] = theirs.id
        for who, person in people.items():
            world.ids[who] = person.id
            world.cookies[who] = start_session(session, organizer=person, settings=settings)
        link = LoginLink(
            id=secrets.token_urlsafe(24),
            state=LoginState.SENT,
            organizer_id=people["owner"].id,
            created_at=utcnow(),
            expires_at=utcnow() + timedelta(minutes=15),
        )
        session.add(link)
        session.flush()
        world.login_token = tokens.issue(settings.secret, tokens.Purpose.ORGANIZER_LOGIN, link.id)
    return world


Dump = dict[str, list[tuple[Any, ...]]]


def dump(app: FastAPI, letter_id: int | None = None) -> Dump:
    """Every row of every table (or of one letter's rows), to compare before and after."""
    rows: Dump = {}
    with app.state.database.read() as session:
        for table in Base.metadata.sorted_tables:
            statement = select(table)
            if letter_id is not None:
                if table.name == "letters":
                    statement = statement.where(table.c.id == letter_id)
                elif "letter_id" in table.c:
                    statement = statement.where(table.c.letter_id == letter_id)
                else:
                    continue
            order = list(table.primary_key.columns) or list(table.c)
            rows[table.name] = [tuple(row) for row in session.execute(statement.order_by(*order))]
    return rows


# --- Sending -------------------------------------------------------------------------------


class Csrf(StrEnum):
    GOOD = "good"
    MISSING = "missing"  # the cookie, no field
    WRONG = "wrong"  # the cookie, another value in the field
    NO_COOKIE = "no-cookie"  # the field, no cookie


class Visitor:
    """One browser: a CSRF cookie, and the session cookie of whoever it is now."""

    def __init__(self, client: TestClient, app: FastAPI, world: World) -> None:
        settings: Settings = app.state.settings
        self.client = client
        self.world = world
        self.session_name = session_cookie_name(settings)
        self.csrf_name = csrf_cookie_name(settings.secure_cookies)
        self.csrf = secrets.token_urlsafe(32)
        client.cookies.set(self.csrf_name, self.csrf)

    def be(self, who: str | None) -> None:
        self.client.cookies.delete(self.session_name)
        if who is not None:
            self.client.cookies.set(self.session_name, self.world.cookies[who])

    def send(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        csrf: Csrf = Csrf.GOOD,
        files: dict[str, Any] | None = None,
    ) -> Response:
        if method == "GET":
            return self.client.get(path, follow_redirects=False)
        data = dict(form or {})
        if csrf in (Csrf.GOOD, Csrf.NO_COOKIE):
            data["csrf_token"] = self.csrf
        elif csrf == Csrf.WRONG:
            data["csrf_token"] = secrets.token_urlsafe(32)
        if csrf == Csrf.NO_COOKIE:
            self.client.cookies.delete(self.csrf_name)
        try:
            return self.client.post(path, data=data, files=files, follow_redirects=False)
        finally:
            self.client.cookies.set(self.csrf_name, self.csrf)


def fill(route: str, spec: Spec, world: World, slug: str) -> str:
    return route.format(
        slug=slug,
        position=spec.position,
        member_id=world.ids["editor"],
        organizer_id=world.ids["viewer"],
        token=world.login_token,
        locale="es",
    )


def copies_needed(spec: Spec) -> int:
    if spec.scope != Scope.LETTER:
        return 1
    return len([role for role in ROLES if role.allows(spec.needed)]) + 1  # and an admin


# --- Every route, every role ---------------------------------------------------------------

ROUTES = sorted(SPECS, key=lambda key: (key[1], key[0]))


def same_headers(response: Response) -> dict[str, str]:
    """The headers that must not differ between two answers with the same body."""
    return {
        name: value
        for name, value in response.headers.items()
        # A request id is random for every answer, whoever asks: it tells nothing.
        if name not in ("date", "content-length", "x-request-id")
    }


SHOWS_SIGNERS = {f"{L}/signatures", f"{L}/export.csv", f"{L}/packet"}


def allowed(spec: Spec) -> list[str | None]:
    """Who may use the route (None: a visitor who is not signed in)."""
    if spec.scope == Scope.LETTER:
        return [*(ROLE_NAMES[role] for role in ROLES if role.allows(spec.needed)), ADMIN]
    others: dict[Scope, list[str | None]] = {
        Scope.ORGANIZER: ["stranger"],
        Scope.ADMIN: [ADMIN],
        Scope.SESSION: ["owner"],
        Scope.LOGIN: [None],
    }
    return others[spec.scope]


def refused(spec: Spec) -> list[tuple[str, int]]:
    """Who is signed in but may not use the route, with the answer they get."""
    if spec.scope == Scope.LETTER:
        below = [(ROLE_NAMES[role], 403) for role in ROLES if not role.allows(spec.needed)]
        return [("stranger", 404), *below]
    if spec.scope == Scope.ADMIN:
        return [(who, 403) for who in ("owner", "editor", "viewer", "stranger")]
    return []


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_route(app: FastAPI, client: TestClient, method: str, route: str) -> None:
    spec = SPECS[(method, route)]
    world = build(app, copies_needed(spec), spec.status)
    visitor = Visitor(client, app, world)
    target = world.targets[0]
    path = fill(route, spec, world, target)
    before = dump(app)
    files = spec.files() if spec.files else None

    def refusal(response: Response, status: int, why: str) -> None:
        assert response.status_code == status, f"{why}: {response.status_code}, not {status}"
        assert dump(app) == before, f"{why}: {method} {path} changed the database"
        for secret in ("Secret Signer", "Target letter", email(ADMIN)):
            assert secret not in response.text, f"{why}: {secret!r} in the body"

    # Signed out: to /login, with an empty body.
    if spec.scope != Scope.LOGIN:
        visitor.be(None)
        response = visitor.send(method, path, spec.form("nobody"), files=files)
        refusal(response, 303, "signed out")
        assert (response.headers["location"], response.text) == ("/login", "")

    # Without the CSRF token, with a wrong one, without the cookie: refused, even for
    # the most powerful visitor.
    if method == "POST":
        visitor.be(allowed(spec)[-1])
        for csrf in (Csrf.MISSING, Csrf.WRONG, Csrf.NO_COOKIE):
            response = visitor.send(method, path, spec.form("owner"), csrf, files)
            refusal(response, 403, f"CSRF {csrf}")
            assert "This form has expired" in response.text, csrf

    # Signed in without the right: an owner of another letter gets the same 404 as for
    # a letter that does not exist; a role too low, or no admin flag, 403.
    for who, status in refused(spec):
        visitor.be(who)
        response = visitor.send(method, path, spec.form(who), files=files)
        refusal(response, status, who)
        if status == 404:
            missing = visitor.send(
                method, fill(route, spec, world, MISSING), spec.form(who), files=files
            )
            assert missing.status_code == 404
            assert response.text.replace(target, "…") == missing.text.replace(MISSING, "…")
            assert same_headers(response) == same_headers(missing)

    # Success: each one allowed, on a letter of their own; nothing else changes.
    for index, user in enumerate(allowed(spec)):
        slug = world.targets[index] if spec.scope == Scope.LETTER else target
        others = {
            other: dump(app, world.ids[other])
            for other in [*world.targets, THEIRS]
            if other != slug
        }
        before = dump(app)
        visitor.be(user)
        response = visitor.send(
            method, fill(route, spec, world, slug), spec.form(user or "x"), files=files
        )
        assert response.status_code == spec.ok, f"{user}: {response.status_code}"
        if response.status_code == 303:
            location = response.headers["location"]
            assert location.startswith("/") and not location.startswith("//"), location
        if method == "GET":
            assert response.headers.get("cache-control") == "no-store", user
            # Pages of one letter show its signers, and nobody else's.
            strangers = [f"of {other}" for other in others]
            assert not [name for name in strangers if name in response.text], user
            if route in SHOWS_SIGNERS:
                assert f"Secret Signer 1 of {slug}" in response.text, user
        if method == "POST" or spec.writes:
            assert dump(app) != before, f"{user}: {method} {route} changed nothing"
        else:
            assert dump(app) == before, f"{user}: {method} {route} changed the database"
        for other, rows in others.items():
            assert dump(app, world.ids[other]) == rows, f"{user}: {other} changed"


# --- Another letter's positions, members and data ----------------------------------------

POSITION_ACTIONS = [route for method, route in SPECS if route.startswith(P)]
LETTER_POSTS = [
    (route, spec) for (method, route), spec in SPECS.items()
    if method == "POST" and spec.scope == Scope.LETTER
]  # fmt: skip


def test_another_letters_positions_and_members_reach_nothing_of_it(
    app: FastAPI, client: TestClient
) -> None:
    """An owner of the target puts their letter's positions, team members and slug into
    the target's URLs and forms: only the target can change."""
    world = build(app, 1)
    visitor = Visitor(client, app, world)
    target, theirs = world.targets[0], world.ids[THEIRS]
    visitor.be("owner")
    their_rows = dump(app, theirs)

    bulk = visitor.send("POST", f"/dashboard/letters/{target}/signatures/bulk", bulk_form(""))
    assert bulk.status_code == 303
    assert "removed=1" in bulk.headers["location"]  # the target's one, not theirs' five
    for route in POSITION_ACTIONS:
        spec = SPECS[("POST", route)]
        for position in (5, 6):  # theirs has them; the target does not
            path = route.format(slug=target, position=position)
            response = visitor.send("POST", path, spec.form("owner"))
            assert response.status_code == 404, path
        path = route.format(slug=target, position=spec.position)
        assert visitor.send("POST", path, spec.form("owner")).status_code == 303, path
    for action, form in (("role", {"role": "viewer"}), ("remove", {})):
        path = f"/dashboard/letters/{target}/team/{world.ids['stranger']}/{action}"
        assert visitor.send("POST", path, form).status_code == 422, path
    edit = visitor.send("POST", f"/dashboard/letters/{target}/edit", edit_form("owner"))
    assert edit.status_code == 303
    assert edit.headers["location"].startswith(f"/dashboard/letters/{target}?notice=")
    assert dump(app, theirs) == their_rows
    with app.state.database.read() as session:
        assert session.scalar(select(Letter.slug).where(Letter.id == world.ids[target])) == target


@pytest.mark.parametrize("who", ["owner", "editor", "viewer"])
def test_a_team_member_of_one_letter_cannot_touch_another(
    app: FastAPI, client: TestClient, who: str
) -> None:
    world = build(app, 1)
    visitor = Visitor(client, app, world)
    visitor.be(who)
    before = dump(app)
    for route, spec in LETTER_POSTS:
        path = fill(route, spec, world, THEIRS)
        response = visitor.send("POST", path, spec.form(who))
        assert response.status_code == 404, path
        assert "Their own letter" not in response.text
    for (method, route), spec in SPECS.items():
        if method == "GET" and spec.scope == Scope.LETTER:
            response = visitor.send("GET", fill(route, spec, world, THEIRS))
            assert response.status_code == 404, route
    assert dump(app) == before


def test_the_dashboard_lists_only_the_organizers_letters(app: FastAPI, client: TestClient) -> None:
    world = build(app, 1)
    visitor = Visitor(client, app, world)
    visitor.be("stranger")
    page = visitor.send("GET", "/dashboard")
    assert "Their own letter" in page.text and "Target letter" not in page.text
    visitor.be(ADMIN)
    page = visitor.send("GET", "/dashboard")
    assert "Their own letter" in page.text and "Target letter" in page.text


# --- The session cookie ---------------------------------------------------------------------


def signed_out(visitor: Visitor, cookie: str) -> bool:
    """Whether this session cookie is worth nothing, on a page and on a form."""
    visitor.client.cookies.set(visitor.session_name, cookie)
    target = visitor.world.targets[0]
    page = visitor.send("GET", f"/dashboard/letters/{target}")
    form = visitor.send("POST", f"/dashboard/letters/{target}/close")
    return all(
        (response.status_code, response.headers.get("location")) == (303, "/login")
        for response in (page, form)
    )


def test_a_forged_or_tampered_session_cookie_signs_nobody_in(
    app: FastAPI, client: TestClient
) -> None:
    settings: Settings = app.state.settings
    world = build(app, 1)
    visitor = Visitor(client, app, world)
    genuine = world.cookies["owner"]
    session_id = tokens.read(settings.secret, tokens.Purpose.ORGANIZER_SESSION, genuine)
    assert not signed_out(visitor, genuine)  # the genuine one works (and closes the letter)
    before = dump(app)
    forged = [
        "",
        "x",
        secrets.token_urlsafe(64),
        tampered(genuine),
        session_id,  # the id without its signature
        genuine + "x",
        genuine * 20,  # far too long
        # The same id, signed for another purpose (a sign-in link's salt), or with
        # another secret.
        tokens.issue(settings.secret, tokens.Purpose.ORGANIZER_LOGIN, session_id),
        tokens.issue("another secret key" * 4, tokens.Purpose.ORGANIZER_SESSION, session_id),
        # A well-signed cookie for a session that does not exist.
        tokens.issue(settings.secret, tokens.Purpose.ORGANIZER_SESSION, "made-up"),
        # A login link's token is not a session.
        world.login_token,
    ]
    for cookie in forged:
        assert signed_out(visitor, cookie), cookie
    assert dump(app) == before


def test_after_signing_out_the_old_cookie_is_worth_nothing(
    app: FastAPI, client: TestClient
) -> None:
    world = build(app, 1)
    visitor = Visitor(client, app, world)
    visitor.be("owner")
    response = visitor.send("POST", "/logout")
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert signed_out(visitor, world.cookies["owner"])
    assert not signed_out(visitor, world.cookies["editor"])  # other sessions live on


def test_a_deleted_organizers_cookie_signs_nobody_in(app: FastAPI, client: TestClient) -> None:
    world = build(app, 1)
    visitor = Visitor(client, app, world)
    assert not signed_out(visitor, world.cookies[ADMIN])
    with app.state.database.write() as session:
        session.execute(delete(Organizer).where(Organizer.id == world.ids[ADMIN]))
    assert signed_out(visitor, world.cookies[ADMIN])
    visitor.be(ADMIN)
    response = visitor.send("GET", "/dashboard/organizers")
    assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_an_expired_session_signs_nobody_in(app: FastAPI, client: TestClient) -> None:
    world = build(app, 1)
    visitor = Visitor(client, app, world)
    with app.state.database.write() as session:
        session.execute(
            update(OrganizerSession)
            .where(OrganizerSession.organizer_id == world.ids["owner"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert signed_out(visitor, world.cookies["owner"])


# --- Fields a form does not have ------------------------------------------------------------


def test_fields_a_form_does_not_have_change_nothing(app: FastAPI, client: TestClient) -> None:
    """Extra fields (a status, a version, another letter's id…) are ignored: an editor
    cannot publish by editing, and nobody reaches another letter by naming it."""
    world = build(app, 1, LetterStatus.DRAFT)
    visitor = Visitor(client, app, world)
    target = world.targets[0]
    extra = {
        "status": "open",
        "published_at": "2020-01-01T00:00",
        "archived_at": "2020-01-01T00:00",
        "version": "9",
        "id": str(world.ids[THEIRS]),
        "letter_id": str(world.ids[THEIRS]),
        "delivered_on": "2020-01-01",
        "response_text": "Forged.",
        "organizer_id": str(world.ids["editor"]),
        "role": "owner",
    }
    visitor.be("editor")
    edit = visitor.send("POST", f"/dashboard/letters/{target}/edit", edit_form("") | extra)
    assert edit.status_code == 303
    visitor.be("stranger")
    new = visitor.send("POST", "/dashboard/letters/new", letter_form("x") | extra)
    assert new.status_code == 303
    visitor.be("owner")
    invite = visitor.send(
        "POST",
        f"/dashboard/letters/{target}/team",
        extra | {"email": "invited@example.org", "role": "viewer"},
    )
    assert invite.status_code == 303
    with app.state.database.read() as session:
        letters = {letter.slug: letter for letter in session.scalars(select(Letter))}
        roles = {
            (row.letter_id, row.organizer_id): row.role
            for row in session.scalars(select(LetterRole))
        }
        invited = session.scalar(select(Organizer).where(Organizer.email == "invited@example.org"))
    edited, created = letters[target], letters["brand-new-x"]
    assert (edited.status, edited.archived_at, edited.delivered_on) == (
        LetterStatus.DRAFT,
        None,
        None,
    )
    assert (edited.title, edited.response_text) == ("A better title", "An earlier answer.")
    assert (created.status, created.published_at, created.version) == (LetterStatus.DRAFT, None, 1)
    assert roles[(created.id, world.ids["stranger"])] == Role.OWNER
    assert [key for key in roles if key[0] == created.id] == [(created.id, world.ids["stranger"])]
    assert roles[(edited.id, world.ids["editor"])] == Role.EDITOR
    assert invited is not None and roles[(edited.id, invited.id)] == Role.VIEWER
    assert (world.ids[THEIRS], invited.id) not in roles
    assert letters[THEIRS].title == "Their own letter"
