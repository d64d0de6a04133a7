"""Self-service: the private manage link every confirmation email carries
(`/signature/{token}`, salt `signature-manage`).

Rules kept here:
- The token holds the submission's random `public_id` (the one `verify_signature` gives
  the signature it makes), never an address, a name or a row id; it has no age limit,
  since an old email's link must still work. It controls exactly the signature whose
  `public_id` it names: a withdrawn signature that is signed again gets the new
  submission's id, so an older email's link stops controlling it.
- Reading the page changes nothing (mail scanners open every link in an email).
- Withdrawing is one `UPDATE … WHERE public_id = … AND status = 'verified'`, and the
  counter moves by the rows it changed, in the same transaction (as moderation does):
  a double click, two tabs, or a moderator at the same moment can never count twice.
  It erases at once everything that says who signed (name, title, organization, city,
  address, domain, comment, badge choices); the row keeps only the letter, the keyed
  address hash and its status, so the same person can sign again later.
- A signature a moderator removed can be erased the same way (it stays removed and
  uncounted; its signer still cannot sign again).
- Going anonymous erases the identity fields; nothing brings them back (to appear by
  name again, withdraw and sign again). The verified badge (`show_domain`) can be turned
  on only for a kept domain that earns one (app.letters.badges), and turning it off on an
  anonymous signature erases the domain.
- Stopping updates is the unsubscribe link's erasure: `contact_ok` off, address gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app import tokens, urls
from app.config import Settings
from app.db import utcnow
from app.errors import InvalidInput, InvalidToken
from app.i18n import N_
from app.letters.badges import earns_badge
from app.letters.models import NAME_THRESHOLDS, Letter
from app.letters.service import add_to_tally
from app.mail.models import OutboxEmail, OutboxStatus
from app.signatures.models import (
    PendingSignature,
    PendingState,
    Signature,
    SignatureDisplay,
    SignatureStatus,
)
from app.signatures.retention import forget_search_terms
from app.signlog import entries as signlog
from app.signlog.models import LogReason

PUBLIC_ID_MAX_LENGTH = 32  # Signature.public_id's column width

ANONYMOUS_IDENTITY: dict[str, Any] = {
    "name": "",
    "title": "",
    "organization": "",
    "city": "",
    "email": None,
    "contact_ok": False,
}
"""What a signature that turns anonymous no longer keeps: it is listed as "Anonymous"
and cannot be contacted (an anonymous signature keeps no address)."""

ERASED: dict[str, Any] = {
    **ANONYMOUS_IDENTITY,
    "display": SignatureDisplay.ANONYMOUS,
    "email_domain": "",
    "comment": "",
    "comment_public_ok": False,
    "comment_approved": False,
    "show_domain": False,
    "name_threshold": None,
    "organizer_confirmed": False,
}
"""A withdrawn (or erased) signature: nothing that says who signed. `letter_id`,
`email_hash`, `status`, `position`, `version` and `verified_at` stay."""


class NotConfirmed(InvalidToken):
    """A manage link from an email whose confirmation link was never used: there is no
    signature to manage (yet)."""

    def __init__(self) -> None:
        super().__init__(
            N_("This link belongs to a signature that was never confirmed."), reason="not_confirmed"
        )


@dataclass(frozen=True, slots=True)
class ManagedSignature:
    """What the manage page shows its holder: their own signature, never their address."""

    letter_title: str
    letter_slug: str
    allow_anonymous: bool
    status: SignatureStatus
    display: SignatureDisplay
    name: str
    title: str
    organization: str
    city: str
    comment: str
    email_domain: str
    show_domain: bool
    name_threshold: int | None
    contacted: bool
    """Updates go to a kept address (`contact_ok` and an address)."""

    @property
    def counted(self) -> bool:
        return self.status == SignatureStatus.VERIFIED

    @property
    def anonymous(self) -> bool:
        return self.display == SignatureDisplay.ANONYMOUS

    @property
    def can_show_domain(self) -> bool:
        """The badge can be turned on: a kept domain that earns one."""
        return earns_badge(self.email_domain)


def manage_token(settings: Settings, public_id: str) -> str:
    return tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_MANAGE, public_id)


def manage_url(settings: Settings, public_id: str) -> str:
    """The private link in a confirmation email and in an "already signed" note."""
    return urls.manage_url(settings.base_url, manage_token(settings, public_id))


def _public_id(token: str, settings: Settings) -> str:
    payload = tokens.read(settings.secret, tokens.Purpose.SIGNATURE_MANAGE, token)
    if not isinstance(payload, str) or not 0 < len(payload) <= PUBLIC_ID_MAX_LENGTH:
        raise InvalidToken()
    return payload


def _gone() -> InvalidToken:
    return InvalidToken(
        "This link no longer points at a signature. If you signed again, use the link in "
        "the newest email.",
        reason="gone",
    )


def read_signature(session: Session, *, token: str, settings: Settings) -> ManagedSignature:
    """The signature this link controls. InvalidToken: tampered or cut short
    ("invalid"); NotConfirmed: its submission was never confirmed; "gone": nothing
    there any more (the submission expired, or the signature was signed again through
    another link). Changes nothing."""
    public_id = _public_id(token, settings)
    row = session.execute(
        select(Signature, Letter.title, Letter.slug, Letter.allow_anonymous)
        .join(Letter, Letter.id == Signature.letter_id)
        .where(Signature.public_id == public_id)
    ).first()
    if row is None:
        state = session.scalar(
            select(PendingSignature.state).where(PendingSignature.public_id == public_id)
        )
        if state is not None and state != PendingState.CONFIRMED:
            raise NotConfirmed()
        raise _gone()
    signature, title, slug, allow_anonymous = row
    return ManagedSignature(
        letter_title=title,
        letter_slug=slug,
        allow_anonymous=allow_anonymous,
        status=signature.status,
        display=signature.display,
        name=signature.name,
        title=signature.title,
        organization=signature.organization,
        city=signature.city,
        comment=signature.comment,
        email_domain=signature.email_domain,
        show_domain=signature.show_domain,
        name_threshold=signature.name_threshold,
        contacted=signature.contact_ok and signature.email is not None,
    )


def _locked(session: Session, public_id: str) -> Signature:
    """The signature, re-read and locked until the commit (PostgreSQL; SQLite writers
    take turns already): one change at a time decides from what is really there."""
    signature = session.scalar(
        select(Signature)
        .where(Signature.public_id == public_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if signature is None:
        raise _gone()
    return signature


def _refuse(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, fields={field: message})


def change_display(
    session: Session,
    *,
    token: str,
    settings: Settings,
    anonymous: bool,
    show_domain: bool,
    name_threshold: int | None,
) -> bool:
    """Applies the signer's display choices to a counted signature. Returns whether
    anything changed. Only ever towards less (or equal) exposure, except the badge,
    which can be turned on for a domain that earns one."""
    read_signature(session, token=token, settings=settings)  # NotConfirmed / gone first
    signature = _locked(session, _public_id(token, settings))
    if signature.status != SignatureStatus.VERIFIED:
        raise _refuse(
            "status", N_("This signature is no longer counted: there is nothing to change.")
        )
    values: dict[str, Any] = {}
    was_anonymous = signature.display == SignatureDisplay.ANONYMOUS
    if was_anonymous and not anonymous:
        raise _refuse(
            "display",
            N_(
                "An anonymous signature keeps no name, so it cannot be shown by name again. "
                "To appear by name, withdraw it and sign again."
            ),
        )
    if anonymous and not was_anonymous:
        values.update(ANONYMOUS_IDENTITY, display=SignatureDisplay.ANONYMOUS)
    if show_domain and not signature.show_domain and not earns_badge(signature.email_domain):
        raise _refuse(
            "show_domain",
            "This signature has no verified work domain to show (a free-mail address "
            "never earns the badge).",
        )
    if show_domain != signature.show_domain:
        values["show_domain"] = show_domain
    if not show_domain and anonymous:
        values["email_domain"] = ""  # an anonymous signature keeps a domain only to show it
    if name_threshold is not None and name_threshold not in NAME_THRESHOLDS:
        raise _refuse("name_threshold", N_("Choose one of the offered numbers."))
    threshold = name_threshold if show_domain and not anonymous else None
    if threshold != signature.name_threshold:
        values["name_threshold"] = threshold
    values = {key: value for key, value in values.items() if getattr(signature, key) != value}
    for key, value in values.items():
        setattr(signature, key, value)
    session.flush()
    if "name" in values:
        forget_search_terms(session)
    return bool(values)


def stop_updates(session: Session, *, token: str, settings: Settings) -> bool:
    """No more updates: `contact_ok` off and the kept address erased (as the
    unsubscribe link does). Returns whether anything changed."""
    read_signature(session, token=token, settings=settings)
    return bool(
        _changed(
            session,
            update(Signature)
            .where(
                Signature.public_id == _public_id(token, settings),
                (Signature.contact_ok.is_(True)) | (Signature.email.is_not(None)),
            )
            .values(contact_ok=False, email=None),
        )
    )


def withdraw(session: Session, *, token: str, settings: Settings) -> bool:
    """Withdraws the signature: it stops counting (the tally drops by one, exactly once
    whatever the concurrency) and everything that says who signed is erased at once.
    A removed signature is erased too and stays removed (uncounted already). Returns
    whether the tally moved."""
    read_signature(session, token=token, settings=settings)
    public_id = _public_id(token, settings)
    found = session.execute(
        select(Signature.letter_id, Signature.email).where(Signature.public_id == public_id)
    ).first()
    if found is None:
        raise _gone()
    letter_id, address = found
    # One guarded UPDATE: of two withdrawals at once, one changes the row, the other
    # (waiting on its lock, then re-checking the WHERE) changes nothing.
    # It returns the receipt commitment (kept: it is random, and not personal) for the
    # signature log's removal entry.
    withdrawn_commitments = list(
        session.scalars(
            update(Signature)
            .where(Signature.public_id == public_id, Signature.status == SignatureStatus.VERIFIED)
            .values(status=SignatureStatus.WITHDRAWN, **ERASED)
            .returning(Signature.receipt_commitment)
            .execution_options(synchronize_session=False)
        )
    )
    withdrawn = len(withdrawn_commitments)
    # Removed by a moderator: erased all the same (and still not counted).
    erased = withdrawn or _changed(
        session,
        update(Signature)
        .where(Signature.public_id == public_id, Signature.status == SignatureStatus.REMOVED)
        .values(**ERASED),
    )
    if erased:
        forget_search_terms(session)
    if address is not None:
        # An update queued for the kept address and not yet sent is not sent now.
        session.execute(
            delete(OutboxEmail).where(
                OutboxEmail.kind == "update",
                OutboxEmail.status == OutboxStatus.PENDING,
                OutboxEmail.to_address == address,
            )
        )
    if withdrawn:
        signlog.record(
            session,
            letter_id=letter_id,
            reason=LogReason.WITHDRAWN,
            commitments=withdrawn_commitments,
            now=utcnow(),
        )
        # Last: the letter's counter row stays locked only until the commit that follows.
        add_to_tally(session, letter_id=letter_id, delta=-1)
    return bool(withdrawn)


def _changed(session: Session, statement: Any) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
