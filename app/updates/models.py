"""Updates: news from a letter's owners to the signers who agreed to be contacted."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, str_enum, utcnow


class UpdateState(StrEnum):
    QUEUED = "queued"  # written; the worker has not finished queuing its emails
    SENT = "sent"  # every recipient's email is in the outbox


class LetterUpdate(Base):
    """One update. The request that writes it only stores it; the worker puts one email
    per recipient into the outbox, in batches, keyset on the signature's position
    (`next_position`), so a letter with a million signers never makes one huge
    transaction and a crash resumes where it stopped."""

    __tablename__ = "letter_updates"
    __table_args__ = (
        Index("ix_letter_updates_letter_id_id", "letter_id", "id"),
        Index("ix_letter_updates_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"))
    organizer_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizers.id", ondelete="SET NULL")
    )
    subject: Mapped[str] = mapped_column(String(200))
    body_markdown: Mapped[str] = mapped_column(Text)
    state: Mapped[UpdateState] = mapped_column(
        str_enum(UpdateState, "update_state"), default=UpdateState.QUEUED
    )
    next_position: Mapped[int] = mapped_column(
        Integer, default=0, doc="Signatures with a greater position are still to be mailed."
    )
    recipients: Mapped[int] = mapped_column(Integer, default=0, doc="Emails queued so far.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
