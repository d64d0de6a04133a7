from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    and_,
    or_,
)
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, UTCDateTime, str_enum, utcnow


class LetterStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


class FieldRule(StrEnum):
    """Whether the sign form asks for an optional signer field."""

    OFF = "off"
    OPTIONAL = "optional"
    REQUIRED = "required"


class SignerKind(StrEnum):
    """Who signs a letter: people, or organizations (a sign-on letter: each signature is
    an organization, given with the name and title of the person signing for it)."""

    PEOPLE = "people"
    ORGANIZATIONS = "organizations"


NAME_THRESHOLDS = (10, 50)
"""The "show my name only once N others from my company have signed" choices."""
DEFAULT_CONTACT_RETENTION_DAYS = 90
ORGANIZATION_FIELDS = ("organization", "title")
"""What a letter signed by organizations always requires besides the signer's name:
the organization, and the title of the person signing for it."""


SIGNER_FIELDS = ("title", "organization", "city", "comment")
"""The signer fields an organizer can turn off, make optional or require (name and
email are always required)."""


class Letter(Base):
    __tablename__ = "letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(String(500), default="")
    body_markdown: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text, doc="Rendered and sanitized once, on save.")
    addressed_to: Mapped[str] = mapped_column(String(300), default="")
    goal: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[LetterStatus] = mapped_column(
        str_enum(LetterStatus, "letter_status"),
        default=LetterStatus.DRAFT,
    )
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime,
        doc="Archiving closes a letter and takes it off the home page and the dashboard's "
        "main list; its page and its count stay. Reopening un-archives it.",
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # Who is behind the letter, as the organizers choose to say it on the public page.
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_url: Mapped[str] = mapped_column(String(500), default="")

    # What the sign form asks for, and what the public sees.
    field_title: Mapped[FieldRule] = mapped_column(
        str_enum(FieldRule, "field_title_rule"), default=FieldRule.OPTIONAL
    )
    field_organization: Mapped[FieldRule] = mapped_column(
        str_enum(FieldRule, "field_organization_rule"), default=FieldRule.OPTIONAL
    )
    field_city: Mapped[FieldRule] = mapped_column(
        str_enum(FieldRule, "field_city_rule"), default=FieldRule.OPTIONAL
    )
    field_comment: Mapped[FieldRule] = mapped_column(
        str_enum(FieldRule, "field_comment_rule"), default=FieldRule.OFF
    )
    allow_anonymous: Mapped[bool] = mapped_column(Boolean, default=True)
    # Email domains (lower-case, one per item): addresses at a forbidden domain cannot
    # sign; when `required_domains` is not empty, only addresses at those domains can
    # (an employees-only letter).
    forbidden_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    required_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    show_signers: Mapped[bool] = mapped_column(Boolean, default=True)
    signers: Mapped[SignerKind] = mapped_column(
        str_enum(SignerKind, "signer_kind"), default=SignerKind.PEOPLE
    )
    # Verified work domains shown by a company name ("google.com" -> "Google"), several
    # domains may share a name. Keys lower-case.
    domain_names: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Forgetting: kept contact addresses go this many days after the letter closes; the
    # signers' names and details are erased this many months after it closes (None:
    # never), and `anonymized_at` records that it was done.
    contact_retention_days: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_CONTACT_RETENTION_DAYS
    )
    anonymize_after_months: Mapped[int | None] = mapped_column(Integer)
    anonymized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The text's versions (`LetterVersion`): the number of the current one, and when
    # the text was last changed after people had signed it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Milestones and the addressee's response, shown on the public page.
    goal_reached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_on: Mapped[date | None] = mapped_column(Date)
    response_on: Mapped[date | None] = mapped_column(Date)
    response_text: Mapped[str] = mapped_column(Text, default="")
    response_url: Mapped[str] = mapped_column(String(500), default="")

    # How it looks (issue 11): an accent colour ("#1a5fb4") for buttons, links and the
    # goal bar; None is the site's own.
    accent_color: Mapped[str | None] = mapped_column(String(7))

    def field_rule(self, field: str) -> FieldRule:
        """The rule for one of `SIGNER_FIELDS`. A letter signed by organizations always
        requires the organization and the title of the person signing for it, whatever
        its own rules for them say (they apply again if it goes back to people)."""
        if self.signers == SignerKind.ORGANIZATIONS and field in ORGANIZATION_FIELDS:
            return FieldRule.REQUIRED
        rule: FieldRule = getattr(self, f"field_{field}")
        return rule

    tally: Mapped[LetterTally] = relationship(lazy="raise", back_populates="letter")

    # The one rule for "open": published as open, and its closing time (if any) not yet
    # reached. The same rule in Python (a loaded letter) and in SQL (queries that sort
    # or filter by it), side by side; tests check that both agree on both databases.
    @hybrid_method
    def is_open(self, now: datetime) -> bool:
        return self.status == LetterStatus.OPEN and (self.closes_at is None or self.closes_at > now)

    @is_open.expression  # (`.inplace.expression` confuses mypy; this one mutates in place too)
    @classmethod
    def _is_open_expression(cls, now: datetime) -> ColumnElement[bool]:
        return and_(
            cls.status == LetterStatus.OPEN, or_(cls.closes_at.is_(None), cls.closes_at > now)
        )

    def status_at(self, now: datetime) -> LetterStatus:
        """The status people see: an open letter whose closing time has passed is closed
        (the stored status stays `open`; nothing has to run at the closing time)."""
        if self.status == LetterStatus.OPEN and not self.is_open(now):
            return LetterStatus.CLOSED
        return self.status


class LetterTally(Base):
    """The verified count, kept by `add_to_tally` in the same transaction as the change.

    A counter row instead of COUNT(*): reading the tally is one primary-key lookup.
    """

    __tablename__ = "letter_tallies"
    __table_args__ = (CheckConstraint("verified_count >= 0", name="not_negative"),)

    letter_id: Mapped[int] = mapped_column(
        ForeignKey("letters.id", ondelete="CASCADE"), primary_key=True
    )
    verified_count: Mapped[int] = mapped_column(Integer, default=0)
    last_position: Mapped[int] = mapped_column(
        Integer, default=0, doc="The last `Signature.position` handed out (never reused)."
    )

    letter: Mapped[Letter] = relationship(lazy="raise", back_populates="tally")


class LetterVersion(Base):
    """One version of a letter's text. Version 1 is made with the letter; editing the
    title or body of a letter that people have already signed makes the next one (an
    edit before anyone signed changes the current version in place). Each signature
    records the number of the version its signer saw."""

    __tablename__ = "letter_versions"
    __table_args__ = (
        Index("uq_letter_versions_letter_id_number", "letter_id", "number", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    body_markdown: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LetterTranslation(Base):
    """The letter's title, summary and body in another language than its own (the
    letter's own text is in `letters`). Readers whose language has one see it; every
    translation's signers count in the letter's one tally."""

    __tablename__ = "letter_translations"
    __table_args__ = (
        Index("uq_letter_translations_letter_id_locale", "letter_id", "locale", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"))
    locale: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(String(500), default="")
    body_markdown: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text, doc="Rendered and sanitized once, on save.")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LetterImage(Base):
    """A letter's header image, as served: re-encoded by Pillow from the upload, with
    no metadata left in it. In the database, so every app process and machine has it."""

    __tablename__ = "letter_images"

    letter_id: Mapped[int] = mapped_column(
        ForeignKey("letters.id", ondelete="CASCADE"), primary_key=True
    )
    content_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64), doc="SHA-256 of `data`: its ETag and URL.")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
