"""Updates: news from a letter's owners to the signers who agreed to be contacted, and
the one-click unsubscribe (RFC 8058) every update email carries.

Sending is in two steps. The owner's request only stores the update (`queue_update`);
the mail worker then puts one email per recipient into the outbox, a batch per pass
(`fan_out_updates`), keyset on the signature's list position. The batch's emails and
the update's cursor (`next_position`, `recipients`) are written in one transaction, so
a crash between batches resumes after the last committed batch: nobody is skipped,
nobody gets it twice.

Who gets an update: the letter's verified signatures that agreed to be contacted and
still have an address (`contact_ok`, `email` not null), confirmed before the update was
written (so the count the owner is shown when sending is the most it reaches; a
withdrawn, removed or unsubscribed signer is never mailed again).

Unsubscribing erases the address (the one reason it was kept is gone) and turns
`contact_ok` off, for good: later updates never reach the signer, whose signature still
counts. Emails of an earlier update already in the outbox for them may still go.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from app import tokens, urls
from app.config import Settings
from app.db import utcnow
from app.errors import InvalidToken
from app.i18n import N_
from app.letters.models import Letter
from app.letters.service import render_markdown
from app.mail.service import Priority, enqueue
from app.organizers.service import Actor, record
from app.signatures.models import Signature, SignatureStatus
from app.updates.models import LetterUpdate, UpdateState
from app.updates.schemas import UpdateIn

BATCH_SIZE = 200
"""Emails queued per worker pass (one transaction): small enough to keep a pass short,
large enough that a big letter's update goes out at a good pace."""

DUPLICATE_WINDOW = timedelta(minutes=10)
"""The same subject and body again within this time is a double click, not a new update."""

HISTORY_LIMIT = 100
"""Past updates shown on the dashboard, newest first."""

PUBLIC_ID_MAX_LENGTH = 32  # Signature.public_id's column width

ONE_CLICK = "List-Unsubscribe=One-Click"
"""RFC 8058's `List-Unsubscribe-Post` value: what mail providers POST to the link."""


# --- Writing an update -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedUpdate:
    update: LetterUpdate
    recipients: int
    """How many signers it will reach, as of now."""
    duplicate: bool
    """The same update was queued moments ago: that one stands, nothing new was stored."""


def _recipients(letter_id: int) -> ColumnElement[bool]:
    """Who may get a letter's updates: the WHERE clause shared by counting and fan-out."""
    return and_(
        Signature.letter_id == letter_id,
        Signature.status == SignatureStatus.VERIFIED,
        Signature.contact_ok.is_(True),
        Signature.email.is_not(None),
    )


def count_recipients(session: Session, *, letter_id: int) -> int:
    """How many signers an update written now would reach."""
    count = session.scalar(
        select(func.count()).select_from(Signature).where(_recipients(letter_id))
    )
    return int(count or 0)


def list_updates(
    session: Session, *, letter_id: int, limit: int = HISTORY_LIMIT
) -> Sequence[LetterUpdate]:
    """A letter's updates, newest first."""
    return session.scalars(
        select(LetterUpdate)
        .where(LetterUpdate.letter_id == letter_id)
        .order_by(LetterUpdate.id.desc())
        .limit(limit)
    ).all()


def preview_html(data: UpdateIn) -> Markup:
    """The body as the email's HTML part shows it (sanitized: safe to show as is)."""
    return Markup(render_markdown(data.body))  # noqa: S704 (render_markdown sanitizes)


def queue_update(session: Session, *, letter: Letter, actor: Actor, data: UpdateIn) -> QueuedUpdate:
    """Stores the update for the worker to send, and records it in the audit log. The
    caller has checked that `actor` is an owner of `letter`."""
    recipients = count_recipients(session, letter_id=letter.id)
    earlier = session.scalars(
        select(LetterUpdate)
        .where(
            LetterUpdate.letter_id == letter.id,
            LetterUpdate.subject == data.subject,
            LetterUpdate.body_markdown == data.body,
            LetterUpdate.created_at >= utcnow() - DUPLICATE_WINDOW,
        )
        .order_by(LetterUpdate.id.desc())
        .limit(1)
    ).first()
    if earlier is not None:
        return QueuedUpdate(earlier, recipients, duplicate=True)
    letter_update = LetterUpdate(
        letter_id=letter.id,
        organizer_id=actor.organizer_id,
        subject=data.subject,
        body_markdown=data.body,
        state=UpdateState.QUEUED,
        next_position=0,
        recipients=0,
        created_at=utcnow(),
    )
    session.add(letter_update)
    session.flush()
    # Facts only: the subject is the owner's words, and no signer is named.
    record(
        session,
        actor=actor,
        letter_id=letter.id,
        action="update.send",
        update_id=letter_update.id,
        subject=data.subject,
        recipients=recipients,
    )
    return QueuedUpdate(letter_update, recipients, duplicate=False)


# --- The worker's fan-out --------------------------------------------------------------


def fan_out_updates(session: Session, *, settings: Settings, batch_size: int = BATCH_SIZE) -> int:
    """Worker step: queues the next batch of the oldest queued update's emails, in the
    caller's transaction. Returns how many emails it queued (0: nothing to do).

    The update's row is locked while its batch is written (PostgreSQL: FOR UPDATE SKIP
    LOCKED, so a second worker moves on to another update instead of queuing the same
    batch; SQLite has one writer at a time). An update with nobody left is marked sent
    and the next one is looked at, so a pass that returns 0 left no work behind."""
    while True:
        letter_update = session.scalars(
            select(LetterUpdate)
            .where(LetterUpdate.state == UpdateState.QUEUED)
            .order_by(LetterUpdate.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).first()
        if letter_update is None:
            return 0
        queued = _queue_batch(session, letter_update, settings=settings, batch_size=batch_size)
        if queued:
            return queued
        # Nobody was left: `_queue_batch` marked it sent, so the loop moves on.


def _queue_batch(
    session: Session, letter_update: LetterUpdate, *, settings: Settings, batch_size: int
) -> int:
    letter = session.get_one(Letter, letter_update.letter_id)
    rows = session.execute(
        select(
            Signature.id,
            Signature.position,
            Signature.email,
            Signature.public_id,
            Signature.locale,
        )
        .where(
            _recipients(letter.id),
            Signature.position > letter_update.next_position,
            Signature.verified_at <= letter_update.created_at,
        )
        .order_by(Signature.position)
        .limit(batch_size + 1)  # one more, to know whether this batch is the last
    ).all()
    last_batch = len(rows) <= batch_size
    rows = rows[:batch_size]
    context = _email_context(letter, letter_update, settings=settings)
    for signature_id, position, email, public_id, locale in rows:
        assert email is not None and position is not None  # selected for them
        link = unsubscribe_url(settings, public_id or _give_public_id(session, signature_id))
        enqueue(
            session,
            settings=settings,
            kind="update",
            to=email,
            context={**context, "unsubscribe_url": link},
            headers={"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": ONE_CLICK},
            priority=Priority.BULK,  # after anyone's link or sign-in
            locale=locale,  # each signer's own language
        )
        letter_update.next_position = position  # the cursor, written with these emails
    letter_update.recipients += len(rows)
    if last_batch:
        letter_update.state = UpdateState.SENT
        letter_update.sent_at = utcnow()
    session.flush()
    return len(rows)


def _email_context(
    letter: Letter, letter_update: LetterUpdate, *, settings: Settings
) -> dict[str, Any]:
    return {
        "letter": letter,
        "letter_url": urls.letter_url(settings.base_url, letter.slug),
        "subject": letter_update.subject,
        "body_text": letter_update.body_markdown,
        "body_html": Markup(render_markdown(letter_update.body_markdown)),  # noqa: S704
    }


def _give_public_id(session: Session, signature_id: int) -> str:
    """A signature confirmed without the random id its private links carry gets one
    now. (Migration 0005 gave every older signature one.)"""
    public_id = secrets.token_hex(16)
    session.execute(
        update(Signature)
        .where(Signature.id == signature_id, Signature.public_id.is_(None))
        .values(public_id=public_id)
    )
    return public_id


# --- Unsubscribing ---------------------------------------------------------------------


def unsubscribe_url(settings: Settings, public_id: str) -> str:
    """The link in every update (and its List-Unsubscribe header). The token holds the
    signature's random public id, never an address; it has no age limit, since an old
    email's link must still work."""
    token = tokens.issue(settings.secret, tokens.Purpose.UNSUBSCRIBE, public_id)
    return urls.unsubscribe_url(settings.base_url, token)


@dataclass(frozen=True, slots=True)
class Unsubscription:
    letter_title: str
    letter_slug: str
    already: bool
    """Unsubscribed before this request (or never subscribed)."""


def _public_id(token: str, settings: Settings) -> str:
    payload = tokens.read(settings.secret, tokens.Purpose.UNSUBSCRIBE, token)
    if not isinstance(payload, str) or not 0 < len(payload) <= PUBLIC_ID_MAX_LENGTH:
        raise InvalidToken()
    return payload


def read_unsubscribe(session: Session, *, token: str, settings: Settings) -> Unsubscription:
    """What the unsubscribe page shows. Changes nothing: mail scanners open links."""
    public_id = _public_id(token, settings)
    row = session.execute(
        select(Letter.title, Letter.slug, Signature.contact_ok, Signature.email)
        .join(Letter, Letter.id == Signature.letter_id)
        .where(Signature.public_id == public_id)
    ).first()
    if row is None:
        raise InvalidToken(N_("This link no longer works."), reason="gone")
    title, slug, contact_ok, email = row
    return Unsubscription(title, slug, already=not contact_ok and email is None)


def unsubscribe(session: Session, *, token: str, settings: Settings) -> Unsubscription:
    """Stops every later update to this signer, for good: `contact_ok` off and the
    address erased. The signature itself (and so the tally) is left alone. Doing it
    again changes nothing (`already`)."""
    found = read_unsubscribe(session, token=token, settings=settings)
    result = session.execute(
        update(Signature)
        .where(
            Signature.public_id == _public_id(token, settings),
            or_(Signature.contact_ok.is_(True), Signature.email.is_not(None)),
        )
        .values(contact_ok=False, email=None)
    )
    changed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return Unsubscription(found.letter_title, found.letter_slug, already=changed == 0)
