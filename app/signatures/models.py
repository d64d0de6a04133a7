from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, str_enum, utcnow


class SignatureStatus(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    WITHDRAWN = "withdrawn"
    REMOVED = "removed"


class SignatureDisplay(StrEnum):
    """How a signer appears in public. Room for more choices (e.g. initials only)."""

    PUBLIC = "public"
    ANONYMOUS = "anonymous"


class Signature(Base):
    """One signer of one letter.

    Privacy rules: `email` (the plain address) is kept only until verification, and
    afterwards only if `contact_ok`. Uniqueness uses `email_hash`, an HMAC of the
    canonical address under a server key. Nothing here is an IP address.
    """

    __tablename__ = "signatures"
    __table_args__ = (
        Index("uq_signatures_letter_id_email_hash", "letter_id", "email_hash", unique=True),
        Index("ix_signatures_public_list", "letter_id", "status", "display", "id"),
        Index("ix_signatures_pending_expiry", "status", "link_sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"))
    status: Mapped[SignatureStatus] = mapped_column(
        str_enum(SignatureStatus, "signature_status"), default=SignatureStatus.PENDING
    )
    display: Mapped[SignatureDisplay] = mapped_column(
        str_enum(SignatureDisplay, "signature_display"), default=SignatureDisplay.PUBLIC
    )

    name: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(120), default="")
    organization: Mapped[str] = mapped_column(String(200), default="")
    city: Mapped[str] = mapped_column(String(120), default="")
    comment: Mapped[str] = mapped_column(String(1000), default="")

    email: Mapped[str | None] = mapped_column(String(254))
    email_hash: Mapped[str] = mapped_column(String(64))
    email_domain: Mapped[str] = mapped_column(String(253))
    contact_ok: Mapped[bool] = mapped_column(Boolean, default=False)

    emails_sent: Mapped[int] = mapped_column(Integer, default=0)
    link_sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
