"""Moderation: the organizers' view of a letter's signatures; hiding, removing and
restoring one; bulk invalidation by a filter; and approving comments.

Rules kept here:
- The tally counts `verified` signatures, hidden or not. Every change of status is one
  `UPDATE … WHERE status = <the state it leaves>`, and the counter moves by the number
  of rows that statement really changed, in the same transaction: a double click, two
  moderators at once or a signer withdrawing meanwhile can never count twice.
- A bulk invalidation removes exactly what its preview counted, or fewer (some left
  the count meanwhile), never more: the preview freezes the moment it was made
  (`as_of`), and the preview's COUNT and the applied UPDATE share one WHERE. Should the
  UPDATE hit more rows than previewed (a restore in between), it is undone (a
  savepoint) and the owner is shown the new preview.
- Organizers see a signer's email domain, never their address (the export has the
  addresses of those who agreed to be contacted).
- A comment is public only when its signer agreed (`comment_public_ok`) and an owner
  approved it, and only while the signature is counted and not hidden.
- Every change is recorded in the audit log with list positions, never an address.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Integer, column, func, select, text, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import InvalidInput, NotFound
from app.i18n import N_
from app.i18n import gettext as _
from app.letters.models import Letter, LetterTally
from app.letters.service import add_to_tally
from app.organizers.service import Actor, record
from app.signatures import badges
from app.signatures.models import RemovalReason, Signature, SignatureDisplay, SignatureStatus
from app.signlog import entries as signlog
from app.signlog.models import LogReason

PAGE_SIZE = 50
EXAMPLES = 5
"""How many signatures a bulk preview shows as examples."""
PUBLIC_COMMENTS = 20
"""How many approved comments the public letter page shows."""
MIN_TEXT = 3
"""Name and organization filters need this many characters (trigram indexes)."""
MAX_TEXT = 200
MAX_DOMAIN = 253
MAX_POSITION = 2**31 - 1

_DOMAIN = re.compile(r"^[^\s@/\\]+\.[^\s@/\\]+$")
_MOMENT = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2})(:\d{2})?)?$")
DATE_HELP = N_("Enter a date as YYYY-MM-DD, or a date and time as YYYY-MM-DD HH:MM (UTC).")


class StatusFilter(StrEnum):
    """Which signatures the moderation list shows. The four states besides `all`
    split every confirmed signature into exactly one group."""

    ALL = "all"
    VERIFIED = "verified"  # counted and listed in public
    HIDDEN = "hidden"  # counted, left out of the public list
    REMOVED = "removed"  # removed by a moderator: not counted
    WITHDRAWN = "withdrawn"  # withdrawn by the signer: not counted


@dataclass(frozen=True, slots=True)
class SignatureFilter:
    """A moderation filter, checked (`parse_filter`). Times are UTC; `until` excludes."""

    status: StatusFilter = StatusFilter.ALL
    domain: str = ""
    organization: str = ""
    name: str = ""
    confirmed_from: str = ""
    """As typed (trimmed): a date, or a date and time."""
    confirmed_to: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @property
    def narrows(self) -> bool:
        """Whether it narrows the letter's signatures enough for a bulk invalidation:
        by email domain, organization or time (status and name do not count)."""
        return bool(self.domain or self.organization or self.since or self.until)

    def query(self) -> dict[str, str]:
        """Its query-string parameters (those set), for links and forms."""
        values = {
            "status": "" if self.status == StatusFilter.ALL else self.status.value,
            "domain": self.domain,
            "organization": self.organization,
            "name": self.name,
            "from": self.confirmed_from,
            "to": self.confirmed_to,
        }
        return {key: value for key, value in values.items() if value}

    def bulk_query(self) -> dict[str, str]:
        """The part of it a bulk invalidation uses."""
        return {
            key: value
            for key, value in self.query().items()
            if key in ("domain", "organization", "from", "to")
        }


FILTER_PARAMETERS = ("status", "domain", "organization", "name", "from", "to")


@dataclass(frozen=True, slots=True)
class ModeratedSignature:
    """One confirmed signature as organizers see it: no email address, ever."""

    position: int
    display: SignatureDisplay
    name: str | None
    """None for an anonymous signer (who keeps no identity fields)."""
    title: str
    organization: str
    city: str
    email_domain: str
    confirmed_at: datetime
    version: int
    status: SignatureStatus
    hidden: bool
    removed_reason: RemovalReason | None
    comment: str
    comment_public_ok: bool
    comment_approved: bool
    organizer_confirmed: bool = False
    """Checked by hand by the organizers: its own badge in public lists."""

    @property
    def state(self) -> StatusFilter:
        """Its group in the moderation list."""
        if self.status == SignatureStatus.VERIFIED:
            return StatusFilter.HIDDEN if self.hidden else StatusFilter.VERIFIED
        return StatusFilter(self.status.value)

    @property
    def anonymous(self) -> bool:
        return self.display == SignatureDisplay.ANONYMOUS


@dataclass(frozen=True, slots=True)
class PublicComment:
    """An approved comment as the public sees it."""

    name: str | None
    """None for an anonymous signer."""
    comment: str
    signed_on: date


@dataclass(frozen=True, slots=True)
class BulkPreview:
    filter: SignatureFilter
    as_of: datetime
    """The moment the preview was made: signatures confirmed since are never hit."""
    count: int
    """Counted signatures that applying it now would remove."""
    examples: list[ModeratedSignature]


@dataclass(frozen=True, slots=True)
class BulkResult:
    removed: int
    previewed: int


# --- Filters ---------------------------------------------------------------------------


def _clean_text(value: str) -> str | None:
    """NFC and trimmed; None when it holds control characters (PostgreSQL refuses NUL)."""
    value = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(char) in {"Cc", "Cs", "Co", "Cn"} for char in value):
        return None
    return value


def _moment(value: str, *, end: bool) -> datetime | None:
    """A date or a date and time (UTC) as a moment: the start of what was written, or
    (`end`) the moment just after it, so that a "to" includes the whole day (or minute,
    or second) it names. None when it is not one."""
    match = _MOMENT.match(value)
    if match is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T")).replace(tzinfo=UTC)
    except ValueError:
        return None
    if not end:
        return moment
    if match.group(3):
        step = timedelta(seconds=1)
    elif match.group(2):
        step = timedelta(minutes=1)
    else:
        step = timedelta(days=1)
    try:
        return moment + step
    except OverflowError:
        return None


def parse_filter(
    *,
    status: str = "",
    domain: str = "",
    organization: str = "",
    name: str = "",
    confirmed_from: str = "",
    confirmed_to: str = "",
) -> SignatureFilter:
    """A filter from what an organizer typed; InvalidInput naming each field that is
    not valid (keys as in the query string: status, domain, organization, name, from,
    to)."""
    errors: dict[str, str] = {}
    cleaned: dict[str, str] = {}
    for key, value in (
        ("status", status),
        ("domain", domain),
        ("organization", organization),
        ("name", name),
        ("from", confirmed_from),
        ("to", confirmed_to),
    ):
        clean = _clean_text(value)
        if clean is None:
            errors[key] = N_("Remove invisible or control characters.")
        cleaned[key] = clean or ""

    state = StatusFilter.ALL
    if cleaned["status"]:
        try:
            state = StatusFilter(cleaned["status"])
        except ValueError:
            errors["status"] = N_("Choose one of the options.")

    domain = cleaned["domain"].lower().removeprefix("@")
    if domain and (len(domain) > MAX_DOMAIN or not _DOMAIN.match(domain)):
        errors["domain"] = N_("Enter a domain like example.org (the part after the @).")

    for key in ("organization", "name"):
        if 0 < len(cleaned[key]) < MIN_TEXT:
            errors[key] = _("Use at least %(n)s characters.") % {"n": MIN_TEXT}
        elif len(cleaned[key]) > MAX_TEXT:
            errors[key] = _("Use at most %(n)s characters.") % {"n": MAX_TEXT}

    since = until = None
    if cleaned["from"]:
        since = _moment(cleaned["from"], end=False)
        if since is None:
            errors.setdefault("from", DATE_HELP)
    if cleaned["to"]:
        until = _moment(cleaned["to"], end=True)
        if until is None:
            errors.setdefault("to", DATE_HELP)
    if since is not None and until is not None and until <= since:
        errors["to"] = N_("The end of the time window is before its start.")

    if errors:
        raise InvalidInput(N_("Some of the filter is not valid."), fields=errors)
    return SignatureFilter(
        status=state,
        domain=domain,
        organization=cleaned["organization"],
        name=cleaned["name"],
        confirmed_from=cleaned["from"],
        confirmed_to=cleaned["to"],
        since=since,
        until=until,
    )


_FTS_MATCH = {
    "name": "SELECT rowid FROM signatures_search WHERE signatures_search MATCH :match_name",
    "organization": "SELECT rowid FROM signatures_search "
    "WHERE signatures_search MATCH :match_organization",
}
"""SQLite: one column of the FTS5 trigram table (distinct parameter names, so that a
filter on both columns binds both)."""


def _contains(session: Session, field: str, query: str) -> ColumnElement[bool]:
    """Signatures whose `field` (name or organization) contains `query`, ignoring case,
    through an index: trigram GIN indexes on PostgreSQL, the FTS5 trigram table on
    SQLite (which folds Unicode case; PostgreSQL folds as its locale does)."""
    if session.get_bind().dialect.name == "postgresql":
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        column_: Any = getattr(Signature, field)
        return column_.ilike(pattern, escape="\\")  # type: ignore[no-any-return]
    phrase = field + ' : "' + query.replace('"', '""') + '"'
    matches = (
        text(_FTS_MATCH[field])
        .bindparams(**{f"match_{field}": phrase})
        .columns(column("rowid", Integer))
    )
    return Signature.id.in_(matches)


def _where(session: Session, letter_id: int, found: SignatureFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Signature.letter_id == letter_id]
    if found.status == StatusFilter.VERIFIED:
        conditions += [Signature.status == SignatureStatus.VERIFIED, Signature.hidden.is_(False)]
    elif found.status == StatusFilter.HIDDEN:
        conditions += [Signature.status == SignatureStatus.VERIFIED, Signature.hidden.is_(True)]
    elif found.status == StatusFilter.REMOVED:
        conditions.append(Signature.status == SignatureStatus.REMOVED)
    elif found.status == StatusFilter.WITHDRAWN:
        conditions.append(Signature.status == SignatureStatus.WITHDRAWN)
    if found.domain:
        conditions.append(Signature.email_domain == found.domain)
    if found.organization:
        conditions.append(_contains(session, "organization", found.organization))
    if found.name:
        conditions.append(_contains(session, "name", found.name))
    if found.since is not None:
        conditions.append(Signature.verified_at >= found.since)
    if found.until is not None:
        conditions.append(Signature.verified_at < found.until)
    return conditions


# --- The list --------------------------------------------------------------------------

_COLUMNS = (
    Signature.position,
    Signature.display,
    Signature.name,
    Signature.title,
    Signature.organization,
    Signature.city,
    Signature.email_domain,
    Signature.verified_at,
    Signature.version,
    Signature.status,
    Signature.hidden,
    Signature.removed_reason,
    Signature.comment,
    Signature.comment_public_ok,
    Signature.comment_approved,
    Signature.organizer_confirmed,
)


def _moderated(row: Any) -> ModeratedSignature:
    anonymous = row.display == SignatureDisplay.ANONYMOUS
    return ModeratedSignature(
        position=row.position,
        display=row.display,
        name=None if anonymous else row.name,
        title=row.title,
        organization=row.organization,
        city=row.city,
        email_domain=row.email_domain,
        confirmed_at=row.verified_at,
        version=row.version,
        status=row.status,
        hidden=row.hidden,
        removed_reason=row.removed_reason,
        comment=row.comment,
        comment_public_ok=row.comment_public_ok,
        comment_approved=row.comment_approved,
        organizer_confirmed=row.organizer_confirmed,
    )


def list_signatures(
    session: Session,
    *,
    letter_id: int,
    found: SignatureFilter,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[ModeratedSignature], int | None]:
    """Newest first (by list position), keyset-paginated, in one query. Returns the page
    and the position to continue after (None on the last page)."""
    statement = select(*_COLUMNS).where(*_where(session, letter_id, found))
    if after is not None:
        statement = statement.where(Signature.position < after)
    rows = session.execute(statement.order_by(Signature.position.desc()).limit(limit + 1)).all()
    page = [_moderated(row) for row in rows[:limit]]
    return page, (page[-1].position if len(rows) > limit else None)


def count_signatures(session: Session, *, letter_id: int, found: SignatureFilter) -> int:
    """How many signatures the filter matches (all pages)."""
    return int(
        session.scalar(
            select(func.count()).select_from(Signature).where(*_where(session, letter_id, found))
        )
        or 0
    )


def tally(session: Session, *, letter_id: int) -> int:
    """The letter's counter (what the public sees)."""
    return int(
        session.scalar(select(LetterTally.verified_count).where(LetterTally.letter_id == letter_id))
        or 0
    )


# --- One signature ---------------------------------------------------------------------


def _one(letter_id: int, position: int) -> list[ColumnElement[bool]]:
    return [Signature.letter_id == letter_id, Signature.position == position]


def _changed(session: Session, statement: Any) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _change(session: Session, letter_id: int, position: int, where: Any, values: Any) -> bool:
    """One guarded UPDATE of the signature at `position`: whether it changed a row.
    NotFound when there is no signature there at all."""
    return _change_logged(session, letter_id, position, where, values)[0]


def _change_logged(
    session: Session, letter_id: int, position: int, where: Any, values: Any
) -> tuple[bool, str | None]:
    """`_change`, and the changed signature's receipt commitment (for the signature
    log)."""
    if not 0 < position <= MAX_POSITION:
        raise NotFound(N_("There is no signature at this position."))
    statement = (
        update(Signature)
        .where(*_one(letter_id, position), *where)
        .values(**values)
        .returning(Signature.receipt_commitment)
        .execution_options(synchronize_session=False)
    )
    changed = session.execute(statement).first()
    if changed is not None:
        return True, changed[0]
    exists = session.scalar(select(Signature.id).where(*_one(letter_id, position)))
    if exists is None:
        raise NotFound(N_("There is no signature at this position."))
    return False, None


def set_hidden(
    session: Session, *, actor: Actor, letter_id: int, position: int, hidden: bool
) -> bool:
    """Hides a signature from the public list (it still counts), or shows it again.
    Returns whether anything changed."""
    changed = _change(
        session, letter_id, position, [Signature.hidden.is_(not hidden)], {"hidden": hidden}
    )
    if changed:
        action = "signature.hide" if hidden else "signature.unhide"
        record(session, actor=actor, letter_id=letter_id, action=action, position=position)
    return changed


def remove_signature(
    session: Session, *, actor: Actor, letter_id: int, position: int, reason: RemovalReason
) -> bool:
    """A counted signature stops counting (removed, with a reason). Returns whether it
    was counted until now: the tally moves only then."""
    changed, commitment = _change_logged(
        session,
        letter_id,
        position,
        [Signature.status == SignatureStatus.VERIFIED],
        {"status": SignatureStatus.REMOVED, "removed_reason": reason},
    )
    if changed:
        signlog.record(
            session,
            letter_id=letter_id,
            reason=LogReason(reason.value),
            commitments=[commitment],
            now=utcnow(),
        )
        add_to_tally(session, letter_id=letter_id, delta=-1)
        record(
            session,
            actor=actor,
            letter_id=letter_id,
            action="signature.remove",
            position=position,
            reason=reason.value,
        )
    return changed


def restore_signature(session: Session, *, actor: Actor, letter_id: int, position: int) -> bool:
    """A removed signature counts again. Returns whether it was removed until now (a
    withdrawn one stays withdrawn: that was its signer's choice)."""
    changed, commitment = _change_logged(
        session,
        letter_id,
        position,
        [Signature.status == SignatureStatus.REMOVED],
        {"status": SignatureStatus.VERIFIED, "removed_reason": None},
    )
    if changed:
        signlog.record(
            session,
            letter_id=letter_id,
            reason=LogReason.RESTORED,
            commitments=[commitment],
            now=utcnow(),
        )
        add_to_tally(session, letter_id=letter_id, delta=1)
        record(
            session, actor=actor, letter_id=letter_id, action="signature.restore", position=position
        )
    return changed


def set_comment_approved(
    session: Session, *, actor: Actor, letter_id: int, position: int, approved: bool
) -> bool:
    """Approves a comment for the public page (only if its signer agreed it may be
    shown), or takes the approval back. Returns whether anything changed."""
    where: list[ColumnElement[bool]] = [Signature.comment_approved.is_(not approved)]
    if approved:
        where += [Signature.comment_public_ok.is_(True), Signature.comment != ""]
    changed = _change(session, letter_id, position, where, {"comment_approved": approved})
    if changed:
        action = "comment.approve" if approved else "comment.unapprove"
        record(session, actor=actor, letter_id=letter_id, action=action, position=position)
    elif approved:
        agreed = session.scalar(
            select(Signature.id).where(
                *_one(letter_id, position),
                Signature.comment_public_ok.is_(True),
                Signature.comment != "",
            )
        )
        if agreed is None:
            private = N_(
                "This signer did not agree that their comment may be shown, so it stays private."
            )
            raise InvalidInput(private, fields={"comment": private})
    return changed


def set_organizer_confirmed(
    session: Session, *, actor: Actor, letter_id: int, position: int, confirmed: bool
) -> bool:
    """Marks a signature "confirmed by the organizers" (checked by hand: a notable
    signer), or takes the mark back. Only a counted signature shown with its name can
    be confirmed (an anonymous one has nothing to vouch for). Returns whether anything
    changed; the change is in the audit log."""
    where: list[ColumnElement[bool]] = [Signature.organizer_confirmed.is_(not confirmed)]
    if confirmed:
        where += [
            Signature.status == SignatureStatus.VERIFIED,
            Signature.display == SignatureDisplay.PUBLIC,
        ]
    changed = _change(session, letter_id, position, where, {"organizer_confirmed": confirmed})
    if changed:
        action = "signature.confirm" if confirmed else "signature.unconfirm"
        record(session, actor=actor, letter_id=letter_id, action=action, position=position)
    elif confirmed:
        already = session.scalar(
            select(Signature.organizer_confirmed).where(*_one(letter_id, position))
        )
        if not already:
            refused = N_("Only a counted signature shown with its name can be confirmed.")
            raise InvalidInput(refused, fields={"confirmed": refused})
    return changed


# --- Bulk invalidation -------------------------------------------------------------------


def parse_as_of(value: str, *, now: datetime | None = None) -> datetime:
    """The preview's moment, from the confirm form (never later than now)."""
    now = now or utcnow()
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        again = N_("The preview is not valid: preview the filter again.")
        raise InvalidInput(again, fields={"as_of": again})
    return min(moment.astimezone(UTC), now)


def _bulk_where(
    session: Session, letter_id: int, found: SignatureFilter, as_of: datetime
) -> list[ColumnElement[bool]]:
    """The one WHERE of a bulk invalidation: counted signatures matching the filter,
    confirmed before the preview. Used by the preview's COUNT and by the UPDATE."""
    if not found.narrows:
        raise InvalidInput(
            N_("Choose an email domain, an organization or a time window."),
            fields={"filter": N_("Choose an email domain, an organization or a time window.")},
        )
    counted = SignatureFilter(
        status=StatusFilter.ALL,
        domain=found.domain,
        organization=found.organization,
        since=found.since,
        until=found.until,
    )
    return [
        *_where(session, letter_id, counted),
        Signature.status == SignatureStatus.VERIFIED,
        Signature.verified_at < as_of,
    ]


def preview_bulk(
    session: Session,
    *,
    letter_id: int,
    found: SignatureFilter,
    as_of: datetime | None = None,
    examples: int = EXAMPLES,
) -> BulkPreview:
    """How many counted signatures the filter would remove now, and the newest few."""
    as_of = as_of or utcnow()
    where = _bulk_where(session, letter_id, found, as_of)
    count = int(session.scalar(select(func.count()).select_from(Signature).where(*where)) or 0)
    rows = session.execute(
        select(*_COLUMNS).where(*where).order_by(Signature.position.desc()).limit(examples)
    ).all()
    return BulkPreview(found, as_of, count, [_moderated(row) for row in rows])


def apply_bulk(
    session: Session,
    *,
    actor: Actor,
    letter_id: int,
    found: SignatureFilter,
    as_of: datetime,
    reason: RemovalReason,
    expected: int,
) -> BulkResult:
    """Removes the counted signatures the preview counted, in one statement; the tally
    moves by the rows it changed. Fewer than previewed (some were removed or withdrawn
    meanwhile) is applied and reported; more (some were restored meanwhile) is undone
    and refused with InvalidInput (field `expected`): nobody removes signatures they
    were not shown."""
    where = _bulk_where(session, letter_id, found, as_of)
    if expected < 0:
        again = N_("The preview is not valid: preview the filter again.")
        raise InvalidInput(again, fields={"preview": again})
    with session.begin_nested():
        commitments = list(
            session.scalars(
                update(Signature)
                .where(*where)
                .values(status=SignatureStatus.REMOVED, removed_reason=reason)
                .returning(Signature.receipt_commitment)
                .execution_options(synchronize_session=False)
            )
        )
        removed = len(commitments)
        if removed > expected:
            raise InvalidInput(
                f"The filter now matches {removed} counted signatures, more than the "
                f"{expected} you previewed. Nothing was removed: check the new preview.",
                fields={"expected": "changed"},
            )
    if removed:
        # One removal entry per signature, with the reason: the log shows each one.
        signlog.record(
            session,
            letter_id=letter_id,
            reason=LogReason(reason.value),
            commitments=commitments,
            now=utcnow(),
        )
        add_to_tally(session, letter_id=letter_id, delta=-removed)
    record(
        session,
        actor=actor,
        letter_id=letter_id,
        action="signatures.bulk_remove",
        filter={**found.bulk_query(), "as_of": as_of.isoformat()},
        reason=reason.value,
        removed=removed,
        previewed=expected,
    )
    return BulkResult(removed=removed, previewed=expected)


# --- Comments ----------------------------------------------------------------------------


def public_comments(
    session: Session, *, letter_id: int, limit: int = PUBLIC_COMMENTS
) -> list[PublicComment]:
    """Approved comments of counted, listed signatures whose signers agreed, newest
    first. A signer's name is shown as in the public list: not for an anonymous one,
    nor for one whose name waits for enough colleagues (app.signatures.badges)."""
    rows = session.execute(
        select(
            Signature.display,
            Signature.name,
            Signature.comment,
            Signature.verified_at,
            Signature.show_domain,
            Signature.email_domain,
            Signature.name_threshold,
        )
        .where(
            Signature.letter_id == letter_id,
            Signature.status == SignatureStatus.VERIFIED,
            Signature.hidden.is_(False),
            Signature.comment_approved.is_(True),
            Signature.comment_public_ok.is_(True),
            Signature.comment != "",
        )
        .order_by(Signature.position.desc())
        .limit(limit)
    ).all()
    letter = session.get(Letter, letter_id)
    if letter is None:
        return []
    crowds = badges.Crowds(letter, badges.crowd_sizes(session, letter, _waiting(rows)))
    return [
        PublicComment(
            name=row.name if _named(crowds, row) else None,
            comment=row.comment,
            signed_on=row.verified_at.date(),
        )
        for row in rows
    ]


def _waiting(rows: Any) -> set[str]:
    return {
        row.email_domain
        for row in rows
        if row.display == SignatureDisplay.PUBLIC and row.name_threshold is not None
    }


def _named(crowds: badges.Crowds, row: Any) -> bool:
    return crowds.names_shown(
        display=row.display,
        show_domain=row.show_domain,
        domain=row.email_domain,
        name_threshold=row.name_threshold,
    )
