"""The signature log's tables. Nothing personal: an entry holds an event, a public reason
code, an hour and a commitment (SHA-256 of a random receipt secret only the signer got).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class LogEvent(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class LogReason(StrEnum):
    """Public reason codes. `confirmed` and `restored` add; the others subtract."""

    CONFIRMED = "confirmed"
    RESTORED = "restored"
    WITHDRAWN = "withdrawn"
    DUPLICATE = "duplicate"
    BOT = "bot"
    INVALID = "invalid"


class LogEntry(Base):
    """One change to a letter's count. Written (with `seq` NULL) in the transaction that
    changes the count; the sequencer gives it its place in the log (`seq`, from 0) and
    appends its leaf to the tree. `leaf` (`entries.leaf_text`) is what is hashed."""

    __tablename__ = "log_entries"
    __table_args__ = (
        Index("uq_log_entries_letter_id_seq", "letter_id", "seq", unique=True),
        # The sequencer's queue: a letter's entries not yet in the log, oldest first.
        Index(
            "ix_log_entries_unsequenced",
            "letter_id",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
        # Receipts: a bucket of commitments by prefix (k-anonymous lookups).
        Index("ix_log_entries_letter_id_commitment", "letter_id", "commitment"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"))
    seq: Mapped[int | None] = mapped_column(BigInteger, doc="Its index in the log, once sequenced.")
    event: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(16))
    hour: Mapped[datetime] = mapped_column(UTCDateTime, doc="When, to the hour (UTC).")
    commitment: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the receipt secret, hex.")


class LogHash(Base):
    """Every node of a letter's tree, stored once at its sumdb/tlog stored-hash index."""

    __tablename__ = "log_hashes"

    letter_id: Mapped[int] = mapped_column(
        ForeignKey("letters.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogHead(Base):
    """A letter's log as of its latest checkpoint; the sequencer locks this row."""

    __tablename__ = "log_heads"

    letter_id: Mapped[int] = mapped_column(
        ForeignKey("letters.id", ondelete="CASCADE"), primary_key=True
    )
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    adds: Mapped[int] = mapped_column(BigInteger, default=0)
    removes: Mapped[int] = mapped_column(BigInteger, default=0)


class LogCheckpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note); every one is kept."""

    __tablename__ = "log_checkpoints"

    letter_id: Mapped[int] = mapped_column(
        ForeignKey("letters.id", ondelete="CASCADE"), primary_key=True
    )
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    adds: Mapped[int] = mapped_column(BigInteger)
    removes: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, doc="The signed note, as served.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
