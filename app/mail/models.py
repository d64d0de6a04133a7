from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, str_enum, utcnow


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    SENDING = "sending"  # claimed by a worker until lease_expires_at
    SENT = "sent"
    FAILED = "failed"  # permanent failure or out of attempts; see last_error


class OutboxEmail(Base):
    """An email written in the same transaction as the change that causes it.

    A worker claims it with a short lease, renewed while it sends; if the worker dies,
    the lease runs out and another worker retries. Once sent, or failed for good, it
    keeps no address, subject, bodies or headers (D50); the row is deleted 7 days later.
    """

    __tablename__ = "outbox_emails"
    __table_args__ = (
        Index("ix_outbox_emails_due", "status", "next_attempt_at"),
        Index("ix_outbox_emails_due_priority", "status", "priority", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    priority: Mapped[int] = mapped_column(
        Integer, default=0, doc="0: a person is waiting (links, sign-in); 1: bulk (updates)."
    )
    fairness_key: Mapped[str] = mapped_column(
        String(64), default="", doc="Emails are served in turn across these (recipient domains)."
    )
    to_address: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    message_id: Mapped[str] = mapped_column(String(200))

    status: Mapped[OutboxStatus] = mapped_column(
        str_enum(OutboxStatus, "outbox_status"),
        default=OutboxStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
