"""Signing, verifying and listing signatures: the heart of the product.

Rules kept here:
- `sign_letter` does the same work whatever the address's state: it records the
  submission as a new `PendingSignature` and nothing else, so neither the answer nor
  its timing tells whether an address has signed. The mail worker decides what to send
  (`notify_pending`): a link, an "already signed" note, or nothing yet (the cap).
- A link confirms exactly the submission it was sent for; a later submission is its
  own row with its own link and never rewrites an earlier one.
- At most `Settings.email_cap` emails (RATE_LIMIT_EMAILS, 5 an hour by default) go to
  one address for one letter in its window; past it the newest submission waits for
  the window instead of being dropped, so nobody can lock a person out of signing,
  only slow their emails down.
- `verify_signature` counts a signature exactly once, whatever the concurrency.
- Plain addresses and identity fields live only as long as they are needed.
- What a letter asks of its signers (`Letter.field_rule`, `allow_anonymous`) is checked
  here, once, for the form and the API alike, from the letter and the input only: the
  same answer whatever the address has done.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    case,
    column,
    delete,
    false,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.elements import ColumnElement

from app import metrics, tokens, urls
from app.abuse import service as abuse
from app.abuse.domains import email_domain_refusal
from app.config import Settings
from app.db import OnDriver, utcnow
from app.emails import email_domain
from app.errors import (
    InvalidInput,
    InvalidToken,
    LetterClosedBeforeVerification,
    LetterNotOpen,
    NotFound,
)
from app.i18n import DEFAULT_LOCALE, N_, current_locale
from app.i18n import gettext as _
from app.letters.badges import is_free_mail
from app.letters.models import (
    SIGNER_FIELDS,
    FieldRule,
    Letter,
    LetterTally,
    LetterTranslation,
    SignerKind,
)
from app.letters.service import (
    count_new_signature,
    get_letter_for_signing,
    note_goal_reached,
)
from app.mail.service import Priority, enqueue, in_turn
from app.signatures import badges
from app.signatures.addresses import email_hash
from app.signatures.manage import manage_url
from app.signatures.models import (
    PendingSignature,
    PendingState,
    Signature,
    SignatureDisplay,
    SignatureStatus,
)
from app.signatures.schemas import PublicSignature, SignatureIn
from app.signlog import entries as signlog
from app.signlog import receipts
from app.signlog.models import LogReason

PAGE_SIZE = 50
MIN_SEARCH_LENGTH = 3
MAX_POSITION = 2**31 - 1
"""Positions are 32-bit integers on every database."""

_PENDING = cast(Table, PendingSignature.__table__)
_SIGNATURES = cast(Table, Signature.__table__)
"""The hot paths' statements are Core statements on the tables, built once: through the
ORM entities every execution also went through the ORM's bulk machinery (about a tenth
of a confirmation's CPU)."""

_IDENTITY_GONE: dict[str, Any] = {"name": "", "title": "", "organization": "", "city": ""}
_SUBMISSION_GONE: dict[str, Any] = {**_IDENTITY_GONE, "comment": "", "comment_public_ok": False}
"""What a submission no longer needs once it cannot be confirmed (or has been): its
identity and its comment (which can say who wrote it as surely as a name)."""

REQUIRED = "required"
"""`InvalidInput.fields` value: a field the letter requires was left empty."""
ANONYMOUS_NOT_ALLOWED = "not allowed"
"""`InvalidInput.fields["display"]`: the letter does not accept anonymous signatures."""
IDENTITY_FIELDS = ("title", "organization", "city")
"""The signer fields an anonymous signature does not keep (the comment it keeps)."""
THRESHOLD_NEEDS_BADGE = N_(
    "Choose this only with the verified badge: the count is of signers from your company."
)
"""`InvalidInput.fields["name_threshold"]`: a name threshold without `show_domain`."""


def free_mail_badge(domain: str) -> str:
    """`InvalidInput.fields["show_domain"]`: the badge asked for with a free-mail address."""
    return _(
        "Addresses at %(domain)s are personal addresses and never earn a badge: sign with "
        "your work address to show it, or untick this box."
    ) % {"domain": domain}


class SignersNotPublic(NotFound):
    """The letter's organizers chose not to publish its signer list (the tally stays
    public). (Could move to app/errors.py with the other domain errors.)"""

    code = "signers_not_public"
    default_detail = N_("The organizers of this letter do not publish the list of signers.")


@dataclass(frozen=True, slots=True)
class Verification:
    """What the verify page shows to the holder of a valid link."""

    pending: PendingSignature
    letter: Letter
    already: bool
    """The address's signature is already confirmed (by this link or another)."""


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What confirming a link did (`verify_signature`)."""

    submission_id: int
    """The submission the link was sent for."""
    letter_slug: str
    already: bool
    """Nothing was counted: the address's signature was already confirmed (by this link
    or another)."""


# --- Signing -------------------------------------------------------------------------


def signer_rule_errors(letter: Letter, values: Mapping[str, Any]) -> dict[str, str]:
    """What the letter's settings refuse in a submission (field name → REQUIRED or
    ANONYMOUS_NOT_ALLOWED), from the letter and the submitted values only.

    `values` may be raw form input (the page asks this of a form the schema refused too,
    so that every problem is reported at once). A required title, organization or city
    is required of a signer who is shown in public: an anonymous signature keeps none of
    them, so none is asked of it. A required comment is required of everyone."""
    anonymous = str(values.get("display") or "") == SignatureDisplay.ANONYMOUS.value
    errors: dict[str, str] = {}
    for field in SIGNER_FIELDS:
        if letter.field_rule(field) != FieldRule.REQUIRED:
            continue
        if anonymous and field in IDENTITY_FIELDS:
            continue
        if not str(values.get(field) or "").strip():
            errors[field] = REQUIRED
    if anonymous and not letter.allow_anonymous:
        errors["display"] = ANONYMOUS_NOT_ALLOWED
    errors.update(badge_errors(values))
    return errors


def badge_errors(values: Mapping[str, Any]) -> dict[str, str]:
    """What the signer's badge choices contradict, from the submitted values only: the
    badge (`show_domain`) with a free-mail address, and a name threshold without the
    badge (the count it waits for is of signers with the same verified domain)."""
    errors: dict[str, str] = {}
    show_domain = values.get("show_domain") is True
    email = str(values.get("email") or "")
    domain = email_domain(email) if "@" in email else ""
    if show_domain and domain and is_free_mail(domain):
        errors["show_domain"] = free_mail_badge(domain)
    if values.get("name_threshold") not in (None, "") and not show_domain:
        errors["name_threshold"] = THRESHOLD_NEEDS_BADGE
    return errors


def _refuse(errors: dict[str, str]) -> InvalidInput:
    if set(errors) == {"display"}:
        detail = N_("This letter does not accept anonymous signatures: sign with your name.")
    elif ANONYMOUS_NOT_ALLOWED in errors.values():
        detail = "This letter does not accept anonymous signatures, and some required "
        detail += "fields are empty."
    elif REQUIRED not in errors.values():  # the badge choices only
        detail = " ".join(dict.fromkeys(errors.values()))
    elif set(errors) & _BADGE_FIELDS:
        detail = N_("Fill in the fields this letter requires, and check the badge choices.")
    else:
        detail = N_("Fill in the fields this letter requires.")
    return InvalidInput(detail, fields=errors)


_BADGE_FIELDS = {"show_domain", "name_threshold"}


def _asked(letter: Letter, field: str, value: str) -> str:
    """The value if the letter asks for this field, "" if it is off."""
    return value if letter.field_rule(field) != FieldRule.OFF else ""


_INSERT_PENDING = insert(_PENDING)
"""A submission, built once on the table: the ORM's unit of work for one new row cost
more CPU than the INSERT itself."""


def sign_letter(
    session: Session,
    *,
    slug: str,
    data: SignatureIn,
    settings: Settings,
    source_hash: str = "",
    trapped: abuse.EventKind | None = None,
) -> None:
    """Records one submission. Returns nothing on purpose, and does the same work for a
    new, pending, confirmed or capped address: the caller cannot tell them apart.

    The letter's settings apply first (InvalidInput, no submission stored): required
    fields, anonymous signatures refused, the badge asked for with a free-mail address
    or a name threshold without the badge (`badge_errors`), then the address's domain
    (app.abuse.domains),
    whose refusal is recorded as an AbuseEvent of its kind, with the letter and
    `source_hash` only (the caller's transaction must commit for it to be kept). A
    field the letter does not ask for is not stored.
    The submission records the version of the text it signs, and `source_hash`, the
    keyed hash of the submitting client's network (app.abuse.service.source_hash).
    A submission `trapped` by the sign form's traps (a bot's) goes through the same
    checks, so its answer is anyone's, but only the AbuseEvent is stored."""
    now = utcnow()
    letter = get_letter_for_signing(session, slug=slug)
    if not letter.is_open(now):
        raise LetterNotOpen()
    errors = signer_rule_errors(letter, data.model_dump())
    if errors:
        raise _refuse(errors)
    refusal = email_domain_refusal(letter, data.email)  # throwaway, forbidden, not required
    if refusal is not None:
        abuse.record(session, kind=refusal.kind, letter_id=letter.id, source_hash=source_hash)
        raise refusal.error()
    if trapped is not None:
        abuse.record(session, kind=trapped, letter_id=letter.id, source_hash=source_hash)
        return
    public = data.display == SignatureDisplay.PUBLIC
    comment = _asked(letter, "comment", data.comment)
    # Waiting for N colleagues is about a person's name: meaningless for an anonymous
    # signature (never named) and for an organization (the organization is the signer).
    threshold = (
        data.name_threshold
        if public and data.show_domain and letter.signers == SignerKind.PEOPLE
        else None
    )
    session.execute(
        _INSERT_PENDING,
        dict(
            public_id=secrets.token_urlsafe(18),
            letter_id=letter.id,
            state=PendingState.WAITING,
            display=data.display,
            name=data.name,
            title=_asked(letter, "title", data.title),
            organization=_asked(letter, "organization", data.organization),
            city=_asked(letter, "city", data.city),
            comment=comment,
            comment_public_ok=bool(comment) and data.comment_public_ok,
            version=letter.version,
            show_domain=data.show_domain,
            name_threshold=threshold,
            # An anonymous signature keeps no address, so it cannot be contacted.
            contact_ok=data.contact_ok and public,
            email=data.email,
            email_hash=email_hash(settings.secret, letter.id, data.email),
            email_domain=email_domain(data.email),
            created_at=now,
            due_at=now,
            expires_at=now + timedelta(seconds=settings.verify_max_age_seconds),
            source_hash=source_hash,
            locale=current_locale(),  # the language of its emails, and then of updates
        ),
    )
    metrics.count_after_commit(session, metrics.SIGNATURES, letter.slug)


def verify_token(settings: Settings, pending: PendingSignature) -> str:
    return tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, pending.public_id)


def notify_pending(
    session: Session, *, settings: Settings, now: datetime | None = None, limit: int = 100
) -> int:
    """The worker's step before delivery: decide what each new submission gets.

    - the address already has a confirmed signature: an "already signed" note;
    - the signature was removed by moderation, or the letter has closed: nothing;
    - otherwise: its own confirmation link.
    Over the cap, a submission waits until the window allows another email; if a newer
    submission for the same address is waiting too, the older one is dropped (its link
    would confirm what the person no longer wants). Returns how many were decided.
    Submissions are taken in turn across the networks that sent them (`source_hash`),
    so a flood from one network never delays anyone else's link.
    """
    now = now or utcnow()
    cap, window = settings.email_cap
    rows = _waiting_in_turn(session, now=now, limit=limit)
    if not rows:
        return 0
    letters = {
        letter.id: letter
        for letter in session.scalars(
            select(Letter).where(Letter.id.in_({row.letter_id for row in rows}))
        )
    }
    titles = _translated_titles(session, rows)
    # Addresses another worker is deciding for wait for the next pass; for the rest,
    # what they already have (a signature, emails in the window) in two queries.
    mine = _claim_addresses(session, list(dict.fromkeys(_address(row) for row in rows)))
    statuses: dict[Address, SignatureStatus] = {}
    manage_ids: dict[Address, str | None] = {}  # an "already signed" note's manage link
    sent_in_window: dict[Address, list[datetime]] = {address: [] for address in mine}
    if mine:
        for letter_id, hashed, found, public_id in session.execute(
            select(
                Signature.letter_id, Signature.email_hash, Signature.status, Signature.public_id
            ).where(tuple_(Signature.letter_id, Signature.email_hash).in_(mine))
        ):
            statuses[(letter_id, hashed)] = found
            manage_ids[(letter_id, hashed)] = public_id
        for letter_id, hashed, at in session.execute(
            select(
                PendingSignature.letter_id,
                PendingSignature.email_hash,
                PendingSignature.notified_at,
            )
            .where(
                tuple_(PendingSignature.letter_id, PendingSignature.email_hash).in_(mine),
                PendingSignature.notified_at > now - window,
            )
            .order_by(PendingSignature.notified_at)
        ):
            if at is not None:
                sent_in_window[(letter_id, hashed)].append(at)
    decided = 0
    for row in rows:
        address = _address(row)
        if address not in sent_in_window:
            continue
        recent = sent_in_window[address]
        letter = letters[row.letter_id]
        status = statuses.get(address)
        if status == SignatureStatus.REMOVED or not letter.is_open(now):
            _forget(row, state=PendingState.SKIPPED)
        elif len(recent) >= cap:
            if _newer_waiting(session, row):
                _forget(row, state=PendingState.SKIPPED)
            else:
                # Held: looked at again when the oldest email in the window ages out.
                row.due_at = recent[-cap] + window
                continue
        else:
            already = status == SignatureStatus.VERIFIED
            manage_id = manage_ids.get(address) if already else row.public_id
            title = titles.get((letter.id, row.locale), letter.title)
            _send(session, row, letter, settings, already=already, manage_id=manage_id, title=title)
            row.notified_at = now
            # The link is good for VERIFY_MAX_AGE_DAYS from now; so is this row.
            row.expires_at = now + timedelta(seconds=settings.verify_max_age_seconds)
            recent.append(now)
        decided += 1
    session.flush()
    return decided


def _waiting_in_turn(session: Session, *, now: datetime, limit: int) -> list[PendingSignature]:
    """Due waiting submissions, served in turn across the networks that sent them
    (`source_hash`): the oldest of each source, then the second of each…, so that a
    flood from one source never holds up anyone else's link (`in_turn`: it ranks the
    oldest and the newest due rows, read through the index (state, due_at)). Locked
    here; on PostgreSQL, rows another worker holds are skipped."""
    due = (PendingSignature.state == PendingState.WAITING) & (PendingSignature.due_at <= now)
    candidates = in_turn(
        id_=PendingSignature.id,
        key=PendingSignature.source_hash,
        at=PendingSignature.due_at,
        where=due,
        limit=limit * CANDIDATES_PER_BATCH,
    )
    return list(
        session.scalars(
            select(PendingSignature)
            .join(candidates, candidates.c.id == PendingSignature.id)
            .where(due)
            .order_by(candidates.c.turn, candidates.c.at, PendingSignature.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=PendingSignature)
        )
    )


CANDIDATES_PER_BATCH = 2
"""Ranked candidates per submission decided: a second worker ranking at the same moment
skips the first one's locked rows and still finds a batch."""


Address = tuple[int, str]
"""(letter_id, email_hash): one person on one letter."""


def _address(row: PendingSignature) -> Address:
    return (row.letter_id, row.email_hash)


ADDRESS_LOCKS = 0x7369676E  # "sign": the advisory-lock namespace for addresses


def _claim_addresses(session: Session, addresses: list[Address]) -> list[Address]:
    """The addresses this worker may decide for: one worker at a time per address, so
    that two workers cannot both count the same window and send past the cap.
    PostgreSQL: transaction-scoped advisory locks, tried without waiting (waiting could
    deadlock two workers that hold each other's addresses), in one query. SQLite:
    writers are serialised already."""
    if session.get_bind().dialect.name != "postgresql" or not addresses:
        return addresses
    # Any 32 bits of the hash make the key; a collision only makes an address wait.
    keys = [int(hashed[:8], 16) - 2**31 for _, hashed in addresses]
    taken = session.execute(
        text(
            "SELECT pg_try_advisory_xact_lock(:space, key) FROM unnest(CAST(:keys AS int[])) "
            "WITH ORDINALITY AS k(key, n) ORDER BY n"
        ),
        {"space": ADDRESS_LOCKS, "keys": keys},
    ).scalars()
    return [address for address, ok in zip(addresses, taken, strict=True) if ok]


def _newer_waiting(session: Session, row: PendingSignature) -> bool:
    return (
        session.scalar(
            select(PendingSignature.id)
            .where(
                PendingSignature.letter_id == row.letter_id,
                PendingSignature.email_hash == row.email_hash,
                PendingSignature.state == PendingState.WAITING,
                PendingSignature.id > row.id,
            )
            .limit(1)
        )
        is not None
    )


def _translated_titles(
    session: Session, rows: Sequence[PendingSignature]
) -> dict[tuple[int, str], str]:
    """The letter titles these submissions' signers read, where a translation in their
    language exists: (letter id, locale) -> title, in one query (none when every
    signer used the letter's own language)."""
    wanted = {(row.letter_id, row.locale) for row in rows if row.locale != DEFAULT_LOCALE}
    if not wanted:
        return {}
    found = session.execute(
        select(
            LetterTranslation.letter_id, LetterTranslation.locale, LetterTranslation.title
        ).where(LetterTranslation.letter_id.in_({letter_id for letter_id, _ in wanted}))
    )
    return {(letter_id, locale): title for letter_id, locale, title in found}


def _send(
    session: Session,
    row: PendingSignature,
    letter: Letter,
    settings: Settings,
    *,
    already: bool,
    manage_id: str | None = None,
    title: str | None = None,
) -> None:
    """`manage_id`: the public id whose manage link the email carries (this
    submission's for a confirmation link, the existing signature's for a note).
    `title`: the letter's title in the signer's language (its own by default)."""
    assert row.email is not None, "a waiting submission keeps its address"
    context: dict[str, Any] = {
        "letter": letter,
        "title": title or letter.title,
        "letter_url": urls.letter_url(settings.base_url, letter.slug),
        "manage_url": manage_url(settings, manage_id) if manage_id else None,
    }
    if not already:
        context["verify_url"] = urls.verify_url(settings.base_url, verify_token(settings, row))
        context["max_age_days"] = settings.verify_max_age_days
        # The receipt (issue 12): its secret goes into this email only; the submission
        # keeps the commitment, which its confirmation puts into the signature log.
        secret, row.receipt_commitment = signlog.new_receipt()
        context["receipt_code"] = receipts.receipt_code(letter.slug, secret)
        context["receipt_url"] = receipts.receipt_url(settings.base_url, letter.slug, secret)
    enqueue(
        session,
        settings=settings,
        kind="already_signed" if already else "verify",
        to=row.email,
        context=context,
        priority=Priority.WAITING,
        # The outbox serves the submitting network's emails in turn with everyone
        # else's: an honest signer at a flood's domain is not queued behind it.
        fairness_key=row.source_hash or None,
        locale=row.locale,
    )
    if already:
        _forget(row, state=PendingState.SENT)
        return
    row.state = PendingState.SENT
    if not row.contact_ok:
        row.email = None  # the outbox has it until the email is sent


def _forget(row: PendingSignature, *, state: PendingState) -> None:
    """Keeps only what the cap and the link's own page need."""
    row.state = state
    for field, value in _SUBMISSION_GONE.items():
        setattr(row, field, value)
    row.email = None
    row.email_domain = ""
    row.contact_ok = False


# --- Verifying -----------------------------------------------------------------------


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


def _gone() -> InvalidToken:
    return InvalidToken(
        N_("This link no longer points at a signature. Sign the letter again."), reason="gone"
    )


def _find(session: Session, public_id: str) -> tuple[PendingSignature, Letter]:
    row = session.execute(
        select(PendingSignature, Letter)
        .join(Letter, Letter.id == PendingSignature.letter_id)
        .where(PendingSignature.public_id == public_id)
    ).first()
    if row is None or row[0].state == PendingState.SKIPPED:
        raise _gone()
    return row[0], row[1]


def _signature_status(session: Session, letter_id: int, hashed: str) -> SignatureStatus | None:
    return session.scalar(
        select(Signature.status).where(
            Signature.letter_id == letter_id, Signature.email_hash == hashed
        )
    )


def read_verification(session: Session, *, token: str, settings: Settings) -> Verification:
    """For the verify page (GET): checks the link, changes nothing."""
    pending, letter = _find(session, _public_id_from(token, settings))
    status = _signature_status(session, pending.letter_id, pending.email_hash)
    if status == SignatureStatus.REMOVED:
        raise _gone()
    already = pending.state == PendingState.CONFIRMED or status == SignatureStatus.VERIFIED
    return Verification(pending, letter, already)


_CONFIRM_READS = (
    "id",
    "public_id",
    "state",
    "letter_id",
    "email_hash",
    "display",
    "show_domain",
    "email_domain",
    *_IDENTITY_GONE,
    "contact_ok",
    "email",
    "name_threshold",
    "comment",
    "comment_public_ok",
    "version",
    "locale",
    "receipt_commitment",
)
"""The submission's columns a confirmation reads."""
_LETTERS = cast(Table, Letter.__table__)
_LOCK_ADDRESS = (
    select(
        *(_PENDING.c[name] for name in _CONFIRM_READS),
        _LETTERS.c.slug.label("letter_slug"),
        _LETTERS.c.goal.label("letter_goal"),
        _LETTERS.c.goal_reached_at.label("letter_goal_reached_at"),
        # The letter model's own rule, in SQL (a hybrid), at the confirmation's time.
        cast("ColumnElement[bool]", Letter.is_open(cast(datetime, bindparam("now")))).label(
            "letter_open"
        ),
    )
    .join_from(_PENDING, _LETTERS, _LETTERS.c.id == _PENDING.c.letter_id)
    .where(
        tuple_(_PENDING.c.letter_id, _PENDING.c.email_hash).in_(
            select(_PENDING.c.letter_id, _PENDING.c.email_hash).where(
                _PENDING.c.public_id == bindparam("public_id")
            )
        )
    )
    .order_by(_PENDING.c.id)
    .with_for_update(of=_PENDING)
)
"""`_lock_address`'s query, built once, on the tables (as the other statements on the
confirm path): rows, not entities, and only the columns a confirmation reads."""


def _lock_address(
    session: Session, public_id: str, now: datetime, *, on_postgresql: bool
) -> tuple[Any, list[int]]:
    """The submission with its letter's slug, goal and whether it is open at `now`, and
    the ids of its address's submissions, every one of them locked first, in id order:
    two versions confirmed at once queue here instead of deadlocking further on. One
    query."""
    values = {"public_id": public_id, "now": now}
    rows: Sequence[Any] = (
        _LOCK_ON_DRIVER.rows(session, values)
        if on_postgresql
        else session.execute(_LOCK_ADDRESS, values).all()
    )
    for row in rows:
        if row.public_id == public_id and row.state != PendingState.SKIPPED:
            return row, [submission.id for submission in rows]
    raise _gone()


_WIPE_ADDRESS = (
    update(_PENDING)
    .where(
        _PENDING.c.letter_id == bindparam("address_letter"),
        _PENDING.c.email_hash == bindparam("address_hash"),
    )
    .values(
        **_SUBMISSION_GONE,
        email_domain="",
        contact_ok=False,
        email=case(
            (
                and_(
                    _PENDING.c.state == PendingState.WAITING,
                    _PENDING.c.id != bindparam("pending_id"),
                ),
                _PENDING.c.email,
            ),
            else_=None,
        ),
        state=case(
            (_PENDING.c.id == bindparam("pending_id"), PendingState.CONFIRMED.value),
            else_=_PENDING.c.state,
        ),
    )
)


def _address_of(submission: Any) -> dict[str, Any]:
    """`_WIPE_ADDRESS`'s parameters for a submission being confirmed."""
    return {
        "address_letter": submission.letter_id,
        "address_hash": submission.email_hash,
        "pending_id": submission.id,
    }


_CONFIRMED_COLUMNS = (
    *_IDENTITY_GONE,
    "display",
    "status",
    "email",
    "contact_ok",
    "email_domain",
    "show_domain",
    "name_threshold",
    "comment",
    "comment_public_ok",
    "comment_approved",
    "version",
    "verified_at",
    "position",
    "public_id",
    "locale",
    "receipt_commitment",
)
"""What a confirmation writes into a signature row (`verify_signature`'s values)."""


@cache
def _confirm_upsert(dialect: str) -> Any:
    """The confirmation's INSERT … ON CONFLICT, built once per dialect with bound
    parameters (building it per call cost more CPU than running it): a new row, or a
    withdrawn one brought back with the new values; a confirmed or removed one is left
    alone (no row returned). On PostgreSQL the same statement wipes the address's
    submissions (`_WIPE_ADDRESS`, a data-modifying CTE: one round trip, not two)."""
    table = _SIGNATURES
    names = ("letter_id", "email_hash", *_CONFIRMED_COLUMNS)
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    # Parameters named apart from the columns: SQLAlchemy would take a parameter named
    # as a column for one more SET of the UPDATE in the CTE.
    # (The columns' Python-side defaults as SQL too: SQLAlchemy fills those in wrongly
    # when a CTE's UPDATE comes with the INSERT.)
    statement = insert.values(
        {
            **{name: bindparam(f"new_{name}", type_=table.c[name].type) for name in names},
            "hidden": false(),
            "organizer_confirmed": false(),
        }
    )
    upsert = statement.on_conflict_do_update(
        index_elements=["letter_id", "email_hash"],
        set_={name: statement.excluded[name] for name in _CONFIRMED_COLUMNS},
        where=table.c.status == SignatureStatus.WITHDRAWN,
    ).returning(table.c.id)
    if dialect == "postgresql":
        upsert = upsert.add_cte(_WIPE_ADDRESS.cte("wipe"))
    return upsert


_TALLIES = cast(Table, LetterTally.__table__)
_TALLY = (
    update(_TALLIES)
    .where(_TALLIES.c.letter_id == bindparam("tally_of"))
    .values(
        verified_count=_TALLIES.c.verified_count + 1,
        last_position=_TALLIES.c.last_position + 1,
    )
    .returning(_TALLIES.c.letter_id, _TALLIES.c.last_position, _TALLIES.c.verified_count)
    .cte("tally")
)
_COUNT_AND_PLACE = (
    update(_SIGNATURES)
    .where(
        _SIGNATURES.c.id == bindparam("signature_of"),
        _SIGNATURES.c.letter_id == _TALLY.c.letter_id,
    )
    .values(position=_TALLY.c.last_position)
    .returning(_TALLY.c.last_position, _TALLY.c.verified_count)
    .add_cte(signlog.INSERT_ONE.cte("entry"))
)
"""PostgreSQL: the confirmation's log entry (`signlog.INSERT_ONE`),
`letters.service.count_new_signature` and the new signature's list position in one
statement (data-modifying CTEs)."""
# PostgreSQL: the confirmation's three statements run on the driver (D199): through
# SQLAlchemy's execution they cost 40 % of the service's instructions, a sixth of the
# whole request's (D198, D199).
_LOCK_ON_DRIVER = OnDriver(_LOCK_ADDRESS)
_UPSERT_ON_DRIVER = OnDriver(_confirm_upsert("postgresql"))
_COUNT_ON_DRIVER = OnDriver(_COUNT_AND_PLACE)


def verify_signature(session: Session, *, token: str, settings: Settings) -> Confirmation:
    """Confirms exactly the submission this link was sent for, once. The tally and the
    list position move in the same transaction.

    The signature gets the submission's fields (an anonymous one: none of its identity,
    but its comment), the version it signed, and the submission's random `public_id`
    for the signer's private links (manage, unsubscribe). A withdrawn signature that
    comes back takes the new submission's, and its new comment waits for approval again.

    On PostgreSQL, three statements before the commit (the lock, the upsert with the
    address's wipe, the log entry with the count and the place); on SQLite, one writer
    at a time anyway, five plain ones."""
    public_id = _public_id_from(token, settings)
    now = utcnow()
    dialect = session.get_bind().dialect.name
    on_postgresql = dialect == "postgresql"
    pending, submissions = _lock_address(session, public_id, now, on_postgresql=on_postgresql)
    if pending.state == PendingState.CONFIRMED:
        return Confirmation(pending.id, pending.letter_slug, already=True)
    if not pending.letter_open:
        raise LetterClosedBeforeVerification()
    public = pending.display == SignatureDisplay.PUBLIC
    # The badge: the domain the link reached, never a free-mail one (checked when
    # signing too). An anonymous signer who chose it keeps the domain, and only that.
    show_domain = (
        pending.show_domain
        and bool(pending.email_domain)
        and not is_free_mail(pending.email_domain)
    )
    identity: dict[str, Any] = (
        {
            "name": pending.name,
            "title": pending.title,
            "organization": pending.organization,
            "city": pending.city,
        }
        if public
        else dict(_IDENTITY_GONE)
    )
    values: dict[str, Any] = {
        **identity,
        "display": pending.display,
        "status": SignatureStatus.VERIFIED,
        "email": pending.email if public and pending.contact_ok else None,
        "contact_ok": public and pending.contact_ok,
        "email_domain": pending.email_domain if public or show_domain else "",
        "show_domain": show_domain,
        "name_threshold": pending.name_threshold if public and show_domain else None,
        "comment": pending.comment,
        "comment_public_ok": pending.comment_public_ok and bool(pending.comment),
        "comment_approved": False,
        "version": pending.version,
        "verified_at": now,
        "position": None,
        "locale": pending.locale,
        # The commitment its receipt email carries the secret of (a submission queued
        # before receipts existed gets one whose secret nobody holds).
        "receipt_commitment": pending.receipt_commitment or signlog.new_receipt()[1],
        # The submission's own random id: the manage link in the email that carried
        # this confirmation link (salt `signature-manage`) then manages the signature
        # it made.
        "public_id": public_id,
    }
    letter_id, hashed = pending.letter_id, pending.email_hash
    # A withdrawn signature comes back with this submission's fields and links (the
    # old ones stop working); a confirmed or removed one is left alone (no row).
    # None of the address's submissions can be confirmed any more: none keeps an
    # identity or a comment (`_WIPE_ADDRESS`; on PostgreSQL, in the same statement).
    upserted = {
        "new_letter_id": letter_id,
        "new_email_hash": hashed,
        **{f"new_{name}": value for name, value in values.items()},
        **(_address_of(pending) if on_postgresql else {}),
    }
    signature_id: int | None = (
        next((row.id for row in _UPSERT_ON_DRIVER.rows(session, upserted)), None)
        if on_postgresql
        else session.scalar(_confirm_upsert(dialect), upserted)
    )
    if signature_id is None and _signature_status(session, letter_id, hashed) == (
        SignatureStatus.REMOVED
    ):
        raise _gone()  # (the wipe is rolled back with the rest)
    if not on_postgresql:
        session.execute(_WIPE_ADDRESS, _address_of(pending))
    if signature_id is None:
        _reload_later(session, letter_id=letter_id, submission_ids=submissions, signature_id=None)
        return Confirmation(pending.id, pending.letter_slug, already=True)
    # Last, so the one row every confirmation of this letter needs is locked only until
    # the commit that follows.
    goal = pending.letter_goal if pending.letter_goal_reached_at is None else None
    commitment = values["receipt_commitment"]
    if on_postgresql:
        # One round trip while the counter row is locked, not two: the app's thread
        # may wait for the GIL between statements, and every confirmation of this
        # letter waits with it.
        (counted,) = _COUNT_ON_DRIVER.rows(
            session,
            {
                "tally_of": letter_id,
                "signature_of": signature_id,
                **signlog.entry_values(
                    letter_id=letter_id,
                    reason=LogReason.CONFIRMED,
                    commitment=commitment,
                    now=now,
                ),
            },
        )
        count = counted.verified_count
        if goal is not None and count >= goal:
            note_goal_reached(session, letter_id=letter_id, count=count)
    else:  # SQLite: one writer at a time anyway
        signlog.record(
            session,
            letter_id=letter_id,
            reason=LogReason.CONFIRMED,
            commitments=[commitment],
            now=now,
        )
        position = count_new_signature(session, letter_id=letter_id, goal=goal)
        session.execute(
            update(_SIGNATURES).where(_SIGNATURES.c.id == signature_id).values(position=position)
        )
    metrics.count_after_commit(session, metrics.CONFIRMATIONS, pending.letter_slug)
    _reload_later(
        session, letter_id=letter_id, submission_ids=submissions, signature_id=signature_id
    )
    return Confirmation(pending.id, pending.letter_slug, already=False)


def _reload_later(
    session: Session, *, letter_id: int, submission_ids: Sequence[int], signature_id: int | None
) -> None:
    """The confirmation wrote with Core statements, which leave the entities a session
    holds as they were: the ones it changed (the address's submissions, the signature,
    the counter) are read again when next used. A request's session holds none."""
    if not session.identity_map:
        return
    keys = [
        *(identity_key(PendingSignature, submission) for submission in submission_ids),
        identity_key(LetterTally, letter_id),
    ]
    if signature_id is not None:
        keys.append(identity_key(Signature, signature_id))
    for key in keys:
        held = session.identity_map.get(key)
        if held is not None:
            session.expire(held)


# --- Listing -------------------------------------------------------------------------


def encode_cursor(settings: Settings, position: int) -> str:
    """Opaque to clients: a signed list position, never a row id."""
    return tokens.issue(settings.secret, tokens.Purpose.LIST_CURSOR, position)


def decode_cursor(settings: Settings, cursor: str) -> int:
    try:
        position = tokens.read(settings.secret, tokens.Purpose.LIST_CURSOR, cursor)
    except InvalidToken as exc:
        raise InvalidInput(
            N_("The cursor is not valid."), fields={"cursor": "not a cursor"}
        ) from exc
    if not isinstance(position, int) or not 0 < position <= MAX_POSITION:
        raise InvalidInput(N_("The cursor is not valid."), fields={"cursor": "not a cursor"})
    return position


def _public_rows(letter_id: int) -> Select[Signature]:
    """Counted signatures a moderator has not hidden from the list."""
    return select(Signature).where(
        Signature.letter_id == letter_id,
        Signature.status == SignatureStatus.VERIFIED,
        Signature.hidden.is_(False),
    )


def require_public_list(letter: Letter) -> None:
    """SignersNotPublic unless the letter's organizers publish its signer list."""
    if not letter.show_signers:
        raise SignersNotPublic()


def _letter_of(session: Session, letter_id: int) -> Letter:
    """The letter (usually already in the session: no query)."""
    letter = session.get(Letter, letter_id)
    if letter is None:
        raise NotFound()
    return letter


def to_public(signature: Signature, crowds: badges.Crowds) -> PublicSignature:
    """A listed signature as the public sees it. Its badge (the verified domain, and the
    company the organizers named for it) shows whether it is named or anonymous; its
    name, details and the organizers' confirmation only when it is public and any
    threshold it chose is reached (app.signatures.badges)."""
    domain = crowds.badge(signature.show_domain, signature.email_domain)
    named = crowds.names_shown(
        display=signature.display,
        show_domain=signature.show_domain,
        domain=signature.email_domain,
        name_threshold=signature.name_threshold,
    )
    return PublicSignature(
        name=signature.name if named else None,
        title=(signature.title or None) if named else None,
        organization=(signature.organization or None) if named else None,
        city=(signature.city or None) if named else None,
        verified_domain=domain,
        verified_company=crowds.company(domain),
        organizer_confirmed=named and signature.organizer_confirmed,
        signed_on=signature.verified_at.date(),
    )


def check_search(query: str) -> str:
    """A search term, trimmed; InvalidInput when it is too short to use the index."""
    query = query.strip()
    if 0 < len(query) < MIN_SEARCH_LENGTH:
        raise InvalidInput(
            _("Search with at least %(n)s characters.") % {"n": MIN_SEARCH_LENGTH},
            fields={"q": f"at least {MIN_SEARCH_LENGTH} characters"},
        )
    return query


def _matching(session: Session, query: str) -> Any:
    """Public signers whose name or organization contains `query`, through an index:
    trigram GIN indexes on PostgreSQL, an FTS5 trigram table on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return or_(
            Signature.name.ilike(pattern, escape="\\"),
            Signature.organization.ilike(pattern, escape="\\"),
        )
    phrase = '"' + query.replace('"', '""') + '"'
    matches = (
        text("SELECT rowid FROM signatures_search WHERE signatures_search MATCH :phrase")
        .bindparams(phrase=phrase)
        .columns(column("rowid", Integer))
    )
    return Signature.id.in_(matches)


def list_public_signatures(
    session: Session,
    *,
    letter_id: int,
    query: str = "",
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[PublicSignature], int | None]:
    """Newest first, keyset-paginated on the list position. A search matches public
    signers' names and organizations only, so it can never find an anonymous signer,
    nor one whose name waits for a threshold (the page is filled past them, so neither
    its length nor its cursor tells that one was skipped).

    Returns the page and the position to continue after (None on the last page)."""
    query = check_search(query)
    letter = _letter_of(session, letter_id)
    statement = _public_rows(letter_id)
    if query:
        statement = statement.where(
            Signature.display == SignatureDisplay.PUBLIC, _matching(session, query)
        )

    def batch(before: int | None) -> list[Signature]:
        page = statement if before is None else statement.where(Signature.position < before)
        return list(session.scalars(page.order_by(Signature.position.desc()).limit(limit + 1)))

    if not query:
        rows = batch(after)
        crowds = badges.crowds_for(session, letter, rows[:limit])
        next_after = rows[limit - 1].position if len(rows) > limit else None  # never NULL
        return [to_public(row, crowds) for row in rows[:limit]], next_after
    found: list[PublicSignature] = []
    positions: list[int | None] = []
    before = after
    while True:
        rows = batch(before)
        crowds = badges.crowds_for(session, letter, rows)
        for row in rows:
            item = to_public(row, crowds)
            if item.name is not None:  # its name is shown: it may be found by it
                found.append(item)
                positions.append(row.position)
        if len(found) > limit or len(rows) <= limit:
            break
        before = rows[-1].position
    next_after = positions[limit - 1] if len(found) > limit else None
    return found[:limit], next_after


def recent_public_signers(
    session: Session, *, letter_id: int, limit: int = 10
) -> Sequence[PublicSignature]:
    """The newest listed signers with something to show: a name, or a badge."""
    rows = list(
        session.scalars(
            _public_rows(letter_id)
            .where(
                or_(
                    Signature.display == SignatureDisplay.PUBLIC,
                    Signature.show_domain.is_(True),
                )
            )
            .order_by(Signature.position.desc())
            .limit(limit)
        )
    )
    crowds = badges.crowds_for(session, _letter_of(session, letter_id), rows)
    items = [to_public(row, crowds) for row in rows]
    return [item for item in items if item.name is not None or item.verified_domain]


# --- Retention -----------------------------------------------------------------------


def purge_expired_pending(session: Session, *, now: datetime) -> int:
    """Submissions are deleted once their link has expired, or would have (confirmed
    ones too: until then they only let their link say "already confirmed")."""
    result = session.execute(delete(PendingSignature).where(PendingSignature.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
