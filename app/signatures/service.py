"""Signing, verifying and listing signatures: the heart of the product.

Rules kept here:
- `sign_letter` answers the same way for a new, pending or verified address (no
  enumeration); the pending row and its email commit together.
- `verify_signature` counts a signature exactly once, whatever the concurrency.
- Plain addresses live only as long as they are needed.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app import tokens, urls
from app.config import Settings
from app.db import utcnow
from app.errors import InvalidToken, LetterClosedBeforeVerification, LetterNotOpen
from app.letters.models import Letter
from app.letters.service import add_to_tally, get_letter_for_signing
from app.mail.service import enqueue
from app.signatures.addresses import email_domain, email_hash
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus
from app.signatures.schemas import PublicSignature, SignatureIn

MAX_EMAILS_PER_SIGNATURE = 5
PAGE_SIZE = 50
MAX_CURSOR = 2**63 - 1
"""Cursors are signature ids: 64-bit on every database. A bigger one cannot be bound."""


@dataclass(frozen=True, slots=True)
class SignatureWithLetter:
    """What the verify page shows to the holder of a valid link."""

    signature: Signature
    letter: Letter


def verify_token(settings: Settings, signature: Signature) -> str:
    return tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id)


def sign_letter(session: Session, *, slug: str, data: SignatureIn, settings: Settings) -> None:
    """Store a pending signature and its link email, or re-send, or remind.

    Returns nothing on purpose: the caller must not be able to tell the cases apart.
    """
    now = utcnow()
    letter = get_letter_for_signing(session, slug=slug)
    if not letter.is_open(now):
        raise LetterNotOpen()
    hashed = email_hash(settings.secret, data.email)
    fields = {
        "name": data.name,
        "title": data.title,
        "organization": data.organization,
        "city": data.city,
        "comment": data.comment,
        "display": data.display,
        "contact_ok": data.contact_ok,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(Signature)
        .values(
            public_id=secrets.token_urlsafe(18),
            letter_id=letter.id,
            status=SignatureStatus.PENDING,
            email=data.email,
            email_hash=hashed,
            email_domain=email_domain(data.email),
            emails_sent=0,
            link_sent_at=now,
            created_at=now,
            **fields,
        )
        .on_conflict_do_nothing(index_elements=["letter_id", "email_hash"])
    )
    signature = session.scalars(
        select(Signature)
        .where(Signature.letter_id == letter.id, Signature.email_hash == hashed)
        .with_for_update()
    ).one()
    if signature.emails_sent >= MAX_EMAILS_PER_SIGNATURE:
        return
    context = {"letter": letter, "letter_url": urls.letter_url(settings.base_url, letter.slug)}
    match signature.status:
        case SignatureStatus.PENDING | SignatureStatus.WITHDRAWN:
            # The latest submission wins; the confirm page shows what will be published.
            for key, value in fields.items():
                setattr(signature, key, value)
            signature.status = SignatureStatus.PENDING
            signature.email = data.email
            signature.link_sent_at = now
            kind = "verify"
            context["verify_url"] = urls.verify_url(
                settings.base_url, verify_token(settings, signature)
            )
            context["max_age_days"] = settings.verify_max_age_days
        case SignatureStatus.VERIFIED:
            kind = "already_signed"
        case SignatureStatus.REMOVED:
            return  # removed by moderation: nothing to send, same answer
    signature.emails_sent += 1
    enqueue(session, settings=settings, kind=kind, to=data.email, context=context)
    session.flush()


def _public_id_from(token: str, settings: Settings) -> str:
    payload = tokens.read(
        settings.secret,
        tokens.Purpose.SIGNATURE_VERIFY,
        token,
        max_age=settings.verify_max_age_seconds,
    )
    if not isinstance(payload, str):
        raise InvalidToken()
    return payload


def _signature_with_letter(session: Session, public_id: str) -> SignatureWithLetter:
    row = session.execute(
        select(Signature, Letter).join(Letter).where(Signature.public_id == public_id)
    ).first()
    if row is None or row[0].status in (SignatureStatus.WITHDRAWN, SignatureStatus.REMOVED):
        raise InvalidToken(
            "This link no longer points at a signature. Sign the letter again.", reason="gone"
        )
    return SignatureWithLetter(row[0], row[1])


def read_verification(session: Session, *, token: str, settings: Settings) -> SignatureWithLetter:
    """For the verify page (GET): checks the link, changes nothing."""
    return _signature_with_letter(session, _public_id_from(token, settings))


def verify_signature(session: Session, *, token: str, settings: Settings) -> SignatureWithLetter:
    """Pending -> verified, once. The tally moves in the same transaction."""
    public_id = _public_id_from(token, settings)
    found = _signature_with_letter(session, public_id)
    if found.signature.status == SignatureStatus.PENDING and not found.letter.is_open(utcnow()):
        raise LetterClosedBeforeVerification()
    # One statement: only a pending row changes, and the plain address goes unless the
    # signer agreed to be contacted. RETURNING refreshes `found.signature` in place.
    changed = session.scalars(
        update(Signature)
        .where(Signature.public_id == public_id, Signature.status == SignatureStatus.PENDING)
        .values(
            status=SignatureStatus.VERIFIED,
            verified_at=utcnow(),
            email=case((Signature.contact_ok, Signature.email), else_=None),
        )
        .returning(Signature),
        execution_options={"populate_existing": True},
    ).first()
    if changed is not None:
        # Last, so the one row every confirmation of this letter needs is locked
        # only until the commit that follows.
        add_to_tally(session, letter_id=found.letter.id, delta=+1)
    return found


def _public_rows(letter_id: int) -> Select[Signature]:
    return select(Signature).where(
        Signature.letter_id == letter_id, Signature.status == SignatureStatus.VERIFIED
    )


def to_public(signature: Signature) -> PublicSignature:
    assert signature.verified_at is not None
    if signature.display == SignatureDisplay.ANONYMOUS:
        return PublicSignature(
            name=None,
            title=None,
            organization=None,
            city=None,
            verified_domain=None,
            signed_on=signature.verified_at.date(),
        )
    return PublicSignature(
        name=signature.name,
        title=signature.title or None,
        organization=signature.organization or None,
        city=signature.city or None,
        verified_domain=None,  # badges come with the verified-domain feature
        signed_on=signature.verified_at.date(),
    )


def list_public_signatures(
    session: Session,
    *,
    letter_id: int,
    query: str = "",
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[PublicSignature], int | None]:
    """Newest first, keyset-paginated on id. A search matches public signers' names
    and organizations only, so it can never find an anonymous signer.

    Returns the page and the cursor for the next one (None on the last page)."""
    statement = _public_rows(letter_id)
    if query:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            Signature.display == SignatureDisplay.PUBLIC,
            or_(
                Signature.name.ilike(pattern, escape="\\"),
                Signature.organization.ilike(pattern, escape="\\"),
            ),
        )
    if after is not None:
        statement = statement.where(Signature.id < after)
    rows = list(session.scalars(statement.order_by(Signature.id.desc()).limit(limit + 1)))
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return [to_public(row) for row in rows[:limit]], next_cursor


def recent_public_signers(
    session: Session, *, letter_id: int, limit: int = 10
) -> Sequence[PublicSignature]:
    rows = session.scalars(
        _public_rows(letter_id)
        .where(Signature.display == SignatureDisplay.PUBLIC)
        .order_by(Signature.id.desc())
        .limit(limit)
    )
    return [to_public(row) for row in rows]


def purge_expired_pending(session: Session, *, settings: Settings, now: datetime) -> int:
    """Unverified signatures are deleted once their latest link has expired."""
    cutoff = now - timedelta(seconds=settings.verify_max_age_seconds)
    result = session.execute(
        delete(Signature).where(
            Signature.status == SignatureStatus.PENDING, Signature.link_sent_at < cutoff
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
