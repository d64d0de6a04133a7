"""Abuse control: what is kept to see and stop floods, bots and fake signatures.

Nothing here is an IP address: a client is known by `source_hash`, a keyed hash of its
network (see `app.abuse.service.source_hash`), deleted after 30 days with its event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class AbuseEvent(Base):
    """One refused or trapped attempt (a honeypot filled in, a form sent too fast, a
    rate limit hit, a disposable or forbidden address), counted per letter."""

    __tablename__ = "abuse_events"
    __table_args__ = (
        Index("ix_abuse_events_letter_id_created_at", "letter_id", "created_at"),
        Index("ix_abuse_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int | None] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    source_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SpentChallenge(Base):
    """A proof-of-work challenge already used to sign (D69): a second use is a replay.
    Kept until the challenge expires, then deleted by the worker. Holds a hash of the
    challenge's random nonce and nothing else."""

    __tablename__ = "spent_challenges"
    __table_args__ = (Index("ix_spent_challenges_expires_at", "expires_at"),)

    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
