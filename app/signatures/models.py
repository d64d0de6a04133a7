from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, str_enum, utcnow


class SignatureStatus(StrEnum):
    """A confirmed signature's state. (Before confirmation, a submission is a
    `PendingSignature`, not a `Signature`.)"""

    VERIFIED = "verified"
    WITHDRAWN = "withdrawn"
    REMOVED = "removed"  # by a moderator: not counted, not listed; can be restored


class RemovalReason(StrEnum):
    """Why a moderator removed a signature (public codes, for the signature log)."""

    DUPLICATE = "duplicate"
    BOT = "bot"
    INVALID = "invalid"


class SignatureDisplay(StrEnum):
    """How a signer appears in public. Room for more choices (e.g. initials only)."""

    PUBLIC = "public"
    ANONYMOUS = "anonymous"


class PendingState(StrEnum):
    WAITING = "waiting"  # recorded by the sign request; the worker has not decided yet
    SENT = "sent"  # its email (a link, or "already signed") is in the outbox
    SKIPPED = "skipped"  # no email will go out (superseded while over the cap, or removed)
    CONFIRMED = "confirmed"  # its link was used; identity fields are gone


class SignerFields:
    """What a signer gives, the same in a submission and in a confirmed signature."""

    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"))
    display: Mapped[SignatureDisplay] = mapped_column(
        str_enum(SignatureDisplay, "signature_display"), default=SignatureDisplay.PUBLIC
    )
    name: Mapped[str] = mapped_column(String(120), default="")
    title: Mapped[str] = mapped_column(String(120), default="")
    organization: Mapped[str] = mapped_column(String(200), default="")
    city: Mapped[str] = mapped_column(String(120), default="")
    contact_ok: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="Agreed to be contacted: updates from the organizers."
    )
    comment: Mapped[str] = mapped_column(Text, default="", doc="Why I signed (optional).")
    comment_public_ok: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="Agreed that the comment may be shown, once approved."
    )
    version: Mapped[int] = mapped_column(Integer, default=1, doc="The letter's version signed.")
    show_domain: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        doc="Show the verified badge: the address's domain (never a free-mail one).",
    )
    name_threshold: Mapped[int | None] = mapped_column(
        Integer,
        doc="Show the name only once at least this many others with the same verified "
        "domain (or company) have signed; until then listed as anonymous with the badge.",
    )

    locale: Mapped[str] = mapped_column(
        String(8),
        default="en",
        server_default="en",
        doc="The language the signer used: their emails are written in it.",
    )

    email: Mapped[str | None] = mapped_column(String(254))
    email_hash: Mapped[str] = mapped_column(String(64))
    email_domain: Mapped[str] = mapped_column(String(253), default="")


class PendingSignature(SignerFields, Base):
    """One submission of the sign form, waiting for its link to be used.

    Each submission is its own row with its own token id, so a later submission for the
    same address never changes what an earlier link confirms. The sign request only
    inserts one of these (the same work whatever the address's state); the mail worker
    decides what to send (`notify_pending`). Deleted when its link expires
    (`expires_at`).

    `email` (the plain address) is kept only until the email is queued, and after that
    only if the signer asked to be contacted (it then moves to the signature).
    """

    __tablename__ = "pending_signatures"
    __table_args__ = (
        Index("ix_pending_signatures_address", "letter_id", "email_hash"),
        Index("ix_pending_signatures_due", "state", "due_at"),
        Index("ix_pending_signatures_expires_at", "expires_at"),
        # The activity page: a letter's submissions in a time window. The time leads,
        # so that the address lookups never pick this smaller index over the address
        # index while a fresh table has no statistics yet (D181).
        Index("ix_pending_signatures_created_at_letter_id", "created_at", "letter_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    state: Mapped[PendingState] = mapped_column(
        str_enum(PendingState, "pending_state"), default=PendingState.WAITING
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, doc="When the worker looks at it (later when held)."
    )
    notified_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, doc="When its email was queued: the per-address cap counts these."
    )
    expires_at: Mapped[datetime] = mapped_column(
        UTCDateTime, doc="When its link expires (or would): then the row is deleted."
    )
    receipt_commitment: Mapped[str | None] = mapped_column(
        String(64),
        doc="SHA-256 (hex) of the receipt secret its confirmation email carries; the "
        "signature log's entry commits to it once confirmed. Never the secret.",
    )
    source_hash: Mapped[str] = mapped_column(
        String(64),
        default="",
        doc="A keyed hash of the submitting client's network (never the IP): the worker "
        "serves sources in turn, so one flooding source cannot delay everyone's links.",
    )


def _trigram_index(column: str) -> Index:
    """A pg_trgm GIN index (PostgreSQL only), which serves `ILIKE '%…%'`."""
    return Index(
        f"ix_signatures_{column}_trgm",
        column,
        postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")


class Signature(SignerFields, Base):
    """One confirmed signer of one letter: what the tally counts.

    Privacy rules: `email` is kept only if the signer ticked `contact_ok` and is shown
    in public; an anonymous signature keeps no name, title, organization, city, address
    or domain. Uniqueness uses `email_hash`, an HMAC of the letter and the canonical
    address under a server key. `position` orders the public list (1, 2, 3… per letter,
    in order of confirmation); it is not a row id. Nothing here is an IP address.
    """

    __tablename__ = "signatures"
    __table_args__ = (
        Index("uq_signatures_letter_id_email_hash", "letter_id", "email_hash", unique=True),
        # Serves the public list's order (newest first) on both databases.
        Index("uq_signatures_letter_id_position", "letter_id", "position", unique=True),
        # Search (ILIKE '%q%') on PostgreSQL; SQLite has an FTS5 trigram table instead,
        # made by migration 0004 and kept in step by triggers.
        _trigram_index("name"),
        _trigram_index("organization"),
        # Moderation: a filter or a bulk invalidation by email domain.
        Index("ix_signatures_letter_id_email_domain", "letter_id", "email_domain"),
        # Badge crowds and the breakdown by domain: counted from the index alone, so
        # a crowd of thousands costs a few milliseconds (migration 0009).
        Index(
            "ix_signatures_badge_crowds",
            "letter_id",
            "email_domain",
            "status",
            "hidden",
            postgresql_where=text("show_domain IS true"),
            sqlite_where=text("show_domain IS 1"),
        ),
        Index("uq_signatures_public_id", "public_id", unique=True),
        # The activity page and moderation's time filters: a letter's confirmations in a window.
        Index("ix_signatures_letter_id_verified_at", "letter_id", "verified_at"),
        # The public letter page's approved comments: a few rows of a big letter.
        Index(
            "ix_signatures_approved_comments",
            "letter_id",
            "position",
            postgresql_where=text("comment_approved"),
            sqlite_where=text("comment_approved"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int | None] = mapped_column(
        Integer, doc="Set in the transaction that confirms; NULL only inside it."
    )
    status: Mapped[SignatureStatus] = mapped_column(
        str_enum(SignatureStatus, "signature_status"), default=SignatureStatus.VERIFIED
    )

    verified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    public_id: Mapped[str | None] = mapped_column(
        String(32),
        doc="Random, set when confirmed: the payload of the signer's private links "
        "(unsubscribe, manage). Never a row id.",
    )

    # Moderation (the tally counts `verified` only; `hidden` ones count but are not listed).
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    removed_reason: Mapped[RemovalReason | None] = mapped_column(
        str_enum(RemovalReason, "removal_reason")
    )
    comment_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    organizer_confirmed: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        doc="Checked by hand by the organizers (a notable signer): its own badge.",
    )
    receipt_commitment: Mapped[str | None] = mapped_column(
        String(64),
        doc="SHA-256 (hex) of the signer's receipt secret: the commitment its signature "
        "log entries carry (`app.signlog`). Not personal: the secret is random and never "
        "stored. Set when confirmed; gone when withdrawn.",
    )
