"""Sign-in links: asked for on /login, sent by the worker, used once.

Rules kept here:
- `request_login_link` does the same work whatever the address: it inserts one waiting
  `LoginLink` row and nothing else, so neither the answer nor its timing tells whether
  an address belongs to an organizer. The worker decides (`send_login_links`): a link
  for an organizer (or a new account, with OPEN_REGISTRATION), nothing for anyone else.
  Either way the row forgets the address.
- A link is a token (salt `organizer-login`, 15 minutes) whose payload is the row's
  random id. It signs in once: one conditional UPDATE claims it (`use_login_link`).
- At most `EMAILS_PER_WINDOW` sign-in emails go to one organizer per `EMAIL_WINDOW`;
  more requests are dropped without a word, so /login cannot flood an inbox.
- Opening a link (GET) changes nothing: mail scanners fetch links before people do.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from app import tokens, urls
from app.config import Settings
from app.db import utcnow
from app.errors import InvalidToken
from app.i18n import N_, current_locale
from app.mail.service import enqueue
from app.organizers.models import LoginLink, LoginState, Organizer
from app.organizers.service import Actor, canonical_email, create_organizer, record

LINK_LIFETIME = timedelta(minutes=15)
LINK_MAX_AGE_SECONDS = int(LINK_LIFETIME.total_seconds())
EMAILS_PER_WINDOW = 5
EMAIL_WINDOW = timedelta(hours=1)
BATCH = 100

_SENT_AT_OFFSET = EMAIL_WINDOW - LINK_LIFETIME
"""A sent row's `expires_at` is its sending time + LINK_LIFETIME, so "sent in the last
EMAIL_WINDOW" is `expires_at > now - _SENT_AT_OFFSET`; sent rows are kept that long
past their expiry (they hold no address) so that the cap counts them."""


# --- Asking --------------------------------------------------------------------------


def request_login_link(session: Session, *, email: str, now: datetime | None = None) -> None:
    """Records one request for a sign-in link. Returns nothing on purpose, and does the
    same work for any address: the caller cannot tell an organizer from a stranger."""
    now = now or utcnow()
    session.add(
        LoginLink(
            id=secrets.token_urlsafe(24),  # 32 characters, 192 random bits
            state=LoginState.WAITING,
            email=canonical_email(email),
            locale=current_locale(),
            created_at=now,
            expires_at=now + LINK_LIFETIME,
        )
    )
    session.flush()


# --- Sending (the worker) --------------------------------------------------------------


def login_token(settings: Settings, link_id: str) -> str:
    return tokens.issue(settings.secret, tokens.Purpose.ORGANIZER_LOGIN, link_id)


def login_url(settings: Settings, link_id: str) -> str:
    return urls.login_url(settings.base_url, login_token(settings, link_id))


ADDRESS_LOCKS = 0x6C6F676E  # "logn": the advisory-lock namespace for sign-in addresses


def _claim_addresses(session: Session, addresses: list[str]) -> set[str]:
    """The addresses this worker may decide for. PostgreSQL: one worker at a time per
    address (transaction-scoped advisory locks, tried without waiting), so that two
    workers neither count the same window twice nor create one account twice. SQLite:
    writers are serialised already."""
    if session.get_bind().dialect.name != "postgresql" or not addresses:
        return set(addresses)
    keys = [int(hashlib.sha256(a.encode()).hexdigest()[:8], 16) - 2**31 for a in addresses]
    taken = session.execute(
        text(
            "SELECT pg_try_advisory_xact_lock(:space, key) FROM unnest(CAST(:keys AS int[])) "
            "WITH ORDINALITY AS k(key, n) ORDER BY n"
        ),
        {"space": ADDRESS_LOCKS, "keys": keys},
    ).scalars()
    return {address for address, ok in zip(addresses, taken, strict=True) if ok}


def _sent_in_window(session: Session, organizer_ids: list[int], now: datetime) -> dict[int, int]:
    if not organizer_ids:
        return {}
    rows = session.execute(
        select(LoginLink.organizer_id, func.count())
        .where(
            LoginLink.organizer_id.in_(organizer_ids),
            LoginLink.state == LoginState.SENT,
            LoginLink.expires_at > now - _SENT_AT_OFFSET,
        )
        .group_by(LoginLink.organizer_id)
    ).all()
    return {organizer_id: int(n) for organizer_id, n in rows if organizer_id is not None}


def send_login_links(
    session: Session, *, settings: Settings, now: datetime | None = None, limit: int = BATCH
) -> int:
    """Worker step: decides each waiting request. An organizer (or, with
    OPEN_REGISTRATION, a new one) gets a link unless past the cap; the rest are
    deleted. Every row forgets its address. Returns how many requests it handled."""
    now = now or utcnow()
    rows = list(
        session.scalars(
            select(LoginLink)
            .where(LoginLink.state == LoginState.WAITING, LoginLink.email.is_not(None))
            .order_by(LoginLink.created_at, LoginLink.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # SQLite: plain SELECT
        )
    )
    if not rows:
        return 0
    mine = _claim_addresses(
        session, list(dict.fromkeys(row.email for row in rows if row.email is not None))
    )
    organizers = {
        organizer.email: organizer
        for organizer in session.scalars(select(Organizer).where(Organizer.email.in_(mine)))
    }
    sent = _sent_in_window(session, [o.id for o in organizers.values()], now)
    handled = 0
    for row in rows:
        assert row.email is not None  # selected so
        if row.email not in mine:
            continue  # another worker is deciding for this address: next pass
        organizer = organizers.get(row.email)
        created = False
        if organizer is None and settings.open_registration:
            organizer = create_organizer(session, email=row.email)
            organizers[organizer.email] = organizer
            record(session, actor=Actor(organizer), letter_id=None, action="organizer.register")
            created = True
        if organizer is None or sent.get(organizer.id, 0) >= EMAILS_PER_WINDOW:
            session.delete(row)  # a stranger, or past the cap: nothing is sent
            handled += 1
            continue
        row.organizer_id = organizer.id
        row.state = LoginState.SENT
        row.email = None
        row.expires_at = now + LINK_LIFETIME  # the token's own clock starts now too
        enqueue(
            session,
            settings=settings,
            kind="organizer_login",
            to=organizer.email,
            locale=row.locale,
            context={
                "login_url": login_url(settings, row.id),
                "minutes": LINK_MAX_AGE_SECONDS // 60,
                "base_url": settings.base_url,
                "new_account": created,
            },
        )
        sent[organizer.id] = sent.get(organizer.id, 0) + 1
        handled += 1
    session.flush()
    return handled


# --- Using ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """What the link's page (GET) shows to its holder."""

    organizer: Organizer


def _link_id(settings: Settings, token: str) -> str:
    if not token or len(token) > 300:
        raise InvalidToken()
    payload = tokens.read(
        settings.secret, tokens.Purpose.ORGANIZER_LOGIN, token, max_age=LINK_MAX_AGE_SECONDS
    )
    if not isinstance(payload, str):
        raise InvalidToken()
    return payload


def _problem(link: LoginLink | None, now: datetime) -> InvalidToken | None:
    """Why a correctly signed link cannot sign anyone in, or None if it can."""
    if link is None or link.state != LoginState.SENT or link.organizer_id is None:
        return InvalidToken(N_("This sign-in link does not work."))
    if link.used_at is not None:
        return InvalidToken(N_("This sign-in link has already been used."), reason="used")
    if link.expires_at <= now:
        return InvalidToken(N_("This sign-in link has expired."), reason="expired")
    return None


def check_login_link(
    session: Session, *, token: str, settings: Settings, now: datetime | None = None
) -> LoginCheck:
    """For the link's page (GET): checks the link, changes nothing."""
    now = now or utcnow()
    link = session.get(LoginLink, _link_id(settings, token))
    problem = _problem(link, now)
    if problem is not None:
        raise problem
    assert link is not None and link.organizer_id is not None
    return LoginCheck(organizer=session.get_one(Organizer, link.organizer_id))


def use_login_link(
    session: Session, *, token: str, settings: Settings, now: datetime | None = None
) -> Organizer:
    """Claims the link with one conditional UPDATE, so that it signs in once: of two
    requests racing with one link, one wins. The caller then starts a session for the
    organizer returned."""
    now = now or utcnow()
    link_id = _link_id(settings, token)
    result = session.execute(
        update(LoginLink)
        .where(
            LoginLink.id == link_id,
            LoginLink.used_at.is_(None),
            LoginLink.state == LoginState.SENT,
            LoginLink.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    claimed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    link = session.get(LoginLink, link_id, populate_existing=True)
    if claimed != 1 or link is None or link.organizer_id is None:
        raise _problem(link, now) or InvalidToken(N_("This sign-in link does not work."))
    # The row goes with its organizer (ON DELETE CASCADE): the organizer is there.
    return session.get_one(Organizer, link.organizer_id)


# --- Retention -----------------------------------------------------------------------


def purge_login_links(session: Session, *, now: datetime) -> int:
    """Deletes expired requests: a waiting one (it still holds an address) as soon as it
    expires; a sent one, which holds no address, once it no longer counts towards the
    hourly cap (EMAIL_WINDOW after it was sent). Returns how many went."""
    result = session.execute(
        delete(LoginLink).where(
            or_(
                and_(LoginLink.state == LoginState.WAITING, LoginLink.expires_at <= now),
                LoginLink.expires_at <= now - _SENT_AT_OFFSET,
            )
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
