"""Organizers: accounts (passwordless), their sign-in links and sessions, their roles
on letters, and the audit log of what they did.

This domain sits below `letters`: it knows a letter only by its id (foreign keys by
table name), so that the letters' dashboard routes can ask it who may do what.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, str_enum, utcnow


class Role(StrEnum):
    """What an organizer may do on one letter. Each includes the ones below it."""

    VIEWER = "viewer"  # sees the dashboard, signatures and comments; changes nothing
    EDITOR = "editor"  # also edits the text and moderates signatures and comments
    OWNER = "owner"  # also publishes, closes, exports, sends updates, manages the team

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 1, Role.EDITOR: 2, Role.OWNER: 3}


class Organizer(Base):
    """Someone who may sign in to the dashboard. No password: a link by email.

    Unlike a signer's, an organizer's address is kept in clear: it is how they sign in.
    """

    __tablename__ = "organizers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, doc="Lower-cased.")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginState(StrEnum):
    WAITING = "waiting"  # asked for; the worker has not looked at it yet
    SENT = "sent"  # the link is in the outbox; usable until expires_at, once


class LoginLink(Base):
    """One request for a sign-in link. `POST /login` only inserts one of these, the same
    work for a known and an unknown address; the worker sends the link to a known
    organizer (or deletes the request), and forgets the address either way."""

    __tablename__ = "login_links"
    __table_args__ = (
        Index("ix_login_links_due", "state", "created_at"),
        Index("ix_login_links_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(
        String(32), primary_key=True, doc="Random; the token's payload."
    )
    state: Mapped[LoginState] = mapped_column(
        str_enum(LoginState, "login_state"), default=LoginState.WAITING
    )
    email: Mapped[str | None] = mapped_column(String(254), doc="Until the worker looks.")
    locale: Mapped[str] = mapped_column(
        String(8),
        default="en",
        server_default="en",
        doc="The language of the request that asked: the email is written in it.",
    )
    organizer_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizers.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OrganizerSession(Base):
    """A signed-in browser. The cookie holds a signed random id; the table holds only
    its SHA-256, so a copy of the database signs nobody in. Signing out deletes it."""

    __tablename__ = "organizer_sessions"
    __table_args__ = (Index("ix_organizer_sessions_expires_at", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    organizer_id: Mapped[int] = mapped_column(
        ForeignKey("organizers.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LetterRole(Base):
    """One organizer's role on one letter."""

    __tablename__ = "letter_roles"

    letter_id: Mapped[int] = mapped_column(
        ForeignKey("letters.id", ondelete="CASCADE"), primary_key=True
    )
    organizer_id: Mapped[int] = mapped_column(
        ForeignKey("organizers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[Role] = mapped_column(str_enum(Role, "letter_role"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """One organizer action on a letter: who, what, when, and a few facts (never a
    signer's address). `actor` is the organizer's address at the time, or "command
    line" for the shell."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_letter_id_id", "letter_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int | None] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"))
    organizer_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizers.id", ondelete="SET NULL")
    )
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
