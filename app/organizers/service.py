"""Organizer accounts, sessions, roles on letters, and the audit log.

Rules kept here:
- Roles rank viewer < editor < owner (`Role.allows`). An admin acts as an owner on
  every letter (admins run the site; they also invite organizers).
- An organizer with no role on a letter is told it does not exist (`LetterNotFound`,
  404), so nobody learns of another team's drafts; a role too low is `Forbidden` (403).
- A session cookie holds a signed random id; the database keeps only its SHA-256.
- Every action that changes a letter, touches signatures, exports or sends an update
  is recorded with `record` in the same transaction as the change.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app import tokens, urls
from app.config import Settings
from app.db import upsert, utcnow
from app.errors import Forbidden, InvalidInput, LetterNotFound, NotFound, NotSignedIn
from app.i18n import N_
from app.mail.service import enqueue
from app.organizers.models import AuditEvent, LetterRole, Organizer, OrganizerSession, Role

COMMAND_LINE = "command line"
"""The audit log's actor for what was done from the shell."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does something: a signed-in organizer, or the command line (organizer None)."""

    organizer: Organizer | None

    @property
    def label(self) -> str:
        return self.organizer.email if self.organizer else COMMAND_LINE

    @property
    def organizer_id(self) -> int | None:
        return self.organizer.id if self.organizer else None


SHELL = Actor(None)


def canonical_email(address: str) -> str:
    """An organizer's address as stored and compared: trimmed and lower-cased."""
    return address.strip().lower()


# --- Accounts --------------------------------------------------------------------------


def find_organizer(session: Session, *, email: str) -> Organizer | None:
    return session.scalar(select(Organizer).where(Organizer.email == canonical_email(email)))


def create_organizer(session: Session, *, email: str, is_admin: bool = False) -> Organizer:
    """A new organizer; an existing one keeps their account (and becomes an admin if
    asked). `email` must already be a valid address (schemas check that)."""
    organizer = find_organizer(session, email=email)
    if organizer is None:
        organizer = Organizer(email=canonical_email(email), is_admin=is_admin)
        session.add(organizer)
        session.flush()
    elif is_admin and not organizer.is_admin:
        organizer.is_admin = True
        session.flush()
    return organizer


def require_admin(organizer: Organizer) -> None:
    """Admins run the site: they list organizers, invite them, make admins."""
    if not organizer.is_admin:
        raise Forbidden(N_("Only admins can manage organizers."))


def list_organizers(session: Session) -> Sequence[Organizer]:
    """Every organizer, oldest account first."""
    return session.scalars(select(Organizer).order_by(Organizer.created_at, Organizer.id)).all()


def invite_organizer(
    session: Session, *, email: str, actor: Actor, settings: Settings
) -> Organizer:
    """An admin gives someone an organizer account and tells them by email. The email
    carries no token: they ask for a sign-in link on /login like everyone else. An
    address that already has an account is refused (InvalidInput on `email`)."""
    if find_organizer(session, email=email) is not None:
        raise InvalidInput(
            N_("This address already has an organizer account."),
            fields={"email": N_("This address already has an organizer account.")},
        )
    organizer = create_organizer(session, email=email)
    enqueue(
        session,
        settings=settings,
        kind="organizer_invite",
        to=organizer.email,
        context={"base_url": settings.base_url, "login_url": urls.login_url(settings.base_url)},
    )
    record(
        session,
        actor=actor,
        letter_id=None,
        action="organizer.invite",
        organizer_id=organizer.id,
        email=organizer.email,
    )
    return organizer


def set_admin(session: Session, *, organizer_id: int, is_admin: bool, actor: Actor) -> Organizer:
    """Makes an organizer an admin, or an admin an organizer again. Nobody removes their
    own admin flag (so the site always keeps the admin who is acting)."""
    organizer = session.get(Organizer, organizer_id)
    if organizer is None:
        raise NotFound(N_("There is no such organizer."))
    if not is_admin and actor.organizer_id == organizer.id:
        raise InvalidInput(N_("You cannot remove your own admin role: ask another admin."))
    if organizer.is_admin != is_admin:
        organizer.is_admin = is_admin
        session.flush()
        record(
            session,
            actor=actor,
            letter_id=None,
            action="organizer.admin" if is_admin else "organizer.unadmin",
            organizer_id=organizer.id,
            email=organizer.email,
        )
    return organizer


# --- Sessions ----------------------------------------------------------------------------


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(session: Session, *, organizer: Organizer, settings: Settings) -> str:
    """A new signed-in session; returns the cookie's value (signed, carries no data)."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        OrganizerSession(
            id_hash=_hash(session_id),
            organizer_id=organizer.id,
            created_at=now,
            expires_at=now + timedelta(days=settings.organizer_session_days),
        )
    )
    organizer.last_login_at = now
    session.flush()
    return tokens.issue(settings.secret, tokens.Purpose.ORGANIZER_SESSION, session_id)


def _session_id(settings: Settings, cookie: str) -> str | None:
    if not cookie or len(cookie) > 300:
        return None
    try:
        payload = tokens.read(
            settings.secret,
            tokens.Purpose.ORGANIZER_SESSION,
            cookie,
            max_age=settings.organizer_session_days * 86400,
        )
    except Exception:
        return None
    return payload if isinstance(payload, str) else None


def signed_in_organizer(session: Session, *, cookie: str, settings: Settings) -> Organizer:
    """The organizer this session cookie belongs to, or NotSignedIn."""
    session_id = _session_id(settings, cookie)
    if session_id is None:
        raise NotSignedIn()
    organizer = session.scalar(
        select(Organizer)
        .join(OrganizerSession, OrganizerSession.organizer_id == Organizer.id)
        .where(
            OrganizerSession.id_hash == _hash(session_id), OrganizerSession.expires_at > utcnow()
        )
    )
    if organizer is None:
        raise NotSignedIn()
    return organizer


def end_session(session: Session, *, cookie: str, settings: Settings) -> None:
    """Signs this browser out (the row goes; the cookie is then worth nothing)."""
    session_id = _session_id(settings, cookie)
    if session_id is not None:
        session.execute(
            delete(OrganizerSession).where(OrganizerSession.id_hash == _hash(session_id))
        )


def purge_expired_sessions(session: Session, *, now: datetime) -> int:
    result = session.execute(delete(OrganizerSession).where(OrganizerSession.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- Roles -------------------------------------------------------------------------------


def role_on(session: Session, *, organizer: Organizer, letter_id: int) -> Role | None:
    if organizer.is_admin:
        return Role.OWNER
    return session.scalar(
        select(LetterRole.role).where(
            LetterRole.letter_id == letter_id, LetterRole.organizer_id == organizer.id
        )
    )


def require_role(session: Session, *, organizer: Organizer, letter_id: int, needed: Role) -> Role:
    """The organizer's role on the letter if it allows `needed`: else LetterNotFound
    (no role at all: the letter is not theirs to know of) or Forbidden."""
    role = role_on(session, organizer=organizer, letter_id=letter_id)
    if role is None:
        raise LetterNotFound()
    if not role.allows(needed):
        raise Forbidden(f"This needs the {needed.value} role; you are a {role.value} here.")
    return role


def grant_role(session: Session, *, letter_id: int, organizer: Organizer, role: Role) -> None:
    """Gives (or changes) an organizer's role on a letter."""
    values = {
        "letter_id": letter_id,
        "organizer_id": organizer.id,
        "role": role,
        "created_at": utcnow(),
    }
    session.execute(
        upsert(session, LetterRole)
        .values(**values)
        .on_conflict_do_update(index_elements=["letter_id", "organizer_id"], set_={"role": role})
    )


def letter_ids_for(session: Session, *, organizer: Organizer) -> dict[int, Role] | None:
    """The letters an organizer has a role on, with the role; None for an admin (all)."""
    if organizer.is_admin:
        return None
    rows = session.execute(
        select(LetterRole.letter_id, LetterRole.role).where(LetterRole.organizer_id == organizer.id)
    ).all()
    return {letter_id: role for letter_id, role in rows}


def team(session: Session, *, letter_id: int) -> Sequence[tuple[Organizer, Role]]:
    rows = session.execute(
        select(Organizer, LetterRole.role)
        .join(LetterRole, LetterRole.organizer_id == Organizer.id)
        .where(LetterRole.letter_id == letter_id)
        .order_by(LetterRole.created_at, Organizer.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def owners_left(session: Session, *, letter_id: int, without: int) -> int:
    """How many owners the letter keeps if organizer `without` goes."""
    return len(
        session.scalars(
            select(LetterRole.organizer_id).where(
                LetterRole.letter_id == letter_id,
                LetterRole.role == Role.OWNER,
                LetterRole.organizer_id != without,
            )
        ).all()
    )


def remove_role(session: Session, *, letter_id: int, organizer_id: int) -> None:
    """Takes an organizer off a letter's team. The last owner cannot go."""
    role = session.scalar(
        select(LetterRole.role).where(
            LetterRole.letter_id == letter_id, LetterRole.organizer_id == organizer_id
        )
    )
    if role is None:
        raise InvalidInput(N_("That organizer is not on this letter's team."))
    if role == Role.OWNER and owners_left(session, letter_id=letter_id, without=organizer_id) == 0:
        raise InvalidInput("A letter keeps at least one owner: make someone else owner first.")
    session.execute(
        delete(LetterRole).where(
            LetterRole.letter_id == letter_id, LetterRole.organizer_id == organizer_id
        )
    )


# --- Audit log ---------------------------------------------------------------------------

AUDIT_PAGE_SIZE = 100


def record(
    session: Session, *, actor: Actor, letter_id: int | None, action: str, **detail: Any
) -> None:
    """One line in the audit log, in the caller's transaction. `detail` holds facts
    (counts, field names, a filter), never a signer's address."""
    session.add(
        AuditEvent(
            letter_id=letter_id,
            organizer_id=actor.organizer_id,
            actor=actor.label,
            action=action,
            detail=detail,
            created_at=utcnow(),
        )
    )


def audit_log(
    session: Session, *, letter_id: int, before: int | None = None, limit: int = AUDIT_PAGE_SIZE
) -> Sequence[AuditEvent]:
    """Newest first, keyset on the event id."""
    statement = select(AuditEvent).where(AuditEvent.letter_id == letter_id)
    if before is not None:
        statement = statement.where(AuditEvent.id < before)
    return session.scalars(statement.order_by(AuditEvent.id.desc()).limit(limit)).all()
