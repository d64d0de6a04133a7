"""Abuse control: the keyed source of a client, the sign form's traps, and the record of
trapped and refused attempts (`AbuseEvent`).

No IP address is ever stored. A client's *network* (its IPv4 /24 or IPv6 /48) is kept
as `source_hash`, an HMAC-SHA256 under a key derived from SECRET_KEY: enough to see that
one network is sending a letter's flood (the attack view) and to serve the outbox fairly,
useless to anyone without the key (there are only 2^24 IPv4 /24s: a bare hash would be
a lookup table away from the network). The rate limits count the full address instead
(`app.web.ratelimit`): a network hash would make a whole office or carrier one client.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from enum import StrEnum
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import tokens
from app.abuse.models import AbuseEvent
from app.errors import InvalidToken
from app.letters.models import Letter
from app.letters.service import is_slug

IPV4_NETWORK_PREFIX = 24
"""A /24 is the smallest IPv4 block routed on the internet: one provider's customers, or
one organization's, share it, so it groups what one operator controls."""
IPV6_NETWORK_PREFIX = 48
"""A /48 is a typical site's allocation (a provider hands a customer a /48 to /56)."""


class EventKind(StrEnum):
    """What an AbuseEvent records."""

    RATE_LIMITED = "rate_limited"
    HONEYPOT = "honeypot"
    """The hidden field that people never see was filled in."""
    TOO_FAST = "too_fast"
    """The sign form came back sooner than `form_min_seconds` after it was shown."""
    NO_TIMESTAMP = "no_timestamp"
    """The form's signed render time was missing or not ours."""
    DISPOSABLE_DOMAIN = "disposable_domain"
    """An address at a throwaway-address domain (app.abuse.domains)."""
    FORBIDDEN_DOMAIN = "forbidden_domain"
    """An address at a domain the letter forbids."""
    REQUIRED_DOMAIN = "required_domain"
    """An address outside the domains the letter requires."""
    PROOF_FAILED = "proof_failed"
    """A proof of work that was not ours, wrong, expired or for another letter."""
    PROOF_REPLAYED = "proof_replayed"
    """A proof of work used a second time."""


# --- A client's source -----------------------------------------------------------------


@lru_cache(maxsize=8)
def _source_key(secret_key: str) -> bytes:
    # A sub-key, so this hash's key is never the token-signing key itself.
    return hmac.new(secret_key.encode(), b"undersigned/source-hash/v1", hashlib.sha256).digest()


def network_of(ip: str) -> str:
    """The network a client address belongs to (`198.51.100.0/24`, `2001:db8:1::/48`);
    an IPv4-mapped IPv6 address counts as IPv4. Text that is not an IP address (a Unix
    socket, a name) is its own network."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return f"literal:{ip.strip().lower()[:100]}"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_NETWORK_PREFIX if address.version == 4 else IPV6_NETWORK_PREFIX
    return str(ipaddress.ip_network((address, prefix), strict=False))


def source_hash(secret_key: str, ip: str) -> str:
    """The keyed hash of the client's network: 64 hex characters, never the address."""
    return hmac.new(_source_key(secret_key), network_of(ip).encode(), hashlib.sha256).hexdigest()


# --- The sign form's traps -------------------------------------------------------------


def form_timestamp(secret_key: str, *, now: float | None = None) -> str:
    """A signed token of the moment the sign form was shown (milliseconds)."""
    moment = time.time() if now is None else now
    return tokens.issue(secret_key, tokens.Purpose.FORM_RENDERED, int(moment * 1000))


def rendered_at(secret_key: str, token: str) -> float | None:
    """When the form carrying `token` was shown (seconds), or None when the token is
    missing or not ours. Never expired: a form left open for days is a person's."""
    if not token or len(token) > 200:
        return None
    try:
        millis = tokens.read(secret_key, tokens.Purpose.FORM_RENDERED, token)
    except InvalidToken:
        return None
    if not isinstance(millis, int) or isinstance(millis, bool):
        return None
    return millis / 1000


def form_trap(
    secret_key: str,
    *,
    honeypot: str,
    timestamp: str,
    min_seconds: float,
    now: float | None = None,
) -> EventKind | None:
    """Which trap a sign form fell into, or None for a person's form.

    The honeypot is a field people never see; the timestamp, signed when the form was
    shown, tells a form sent back sooner than `min_seconds` (no person reads a letter
    and types a name and an address that fast). `min_seconds` 0 turns the timestamp
    check off altogether (a missing or foreign one is then not a trap either)."""
    if honeypot:
        return EventKind.HONEYPOT
    if min_seconds <= 0:
        return None
    shown = rendered_at(secret_key, timestamp)
    if shown is None:
        return EventKind.NO_TIMESTAMP
    moment = time.time() if now is None else now
    if moment - shown < min_seconds:
        return EventKind.TOO_FAST
    return None


# --- The record ------------------------------------------------------------------------


def record(
    session: Session, *, kind: EventKind, letter_id: int | None = None, source_hash: str = ""
) -> None:
    """One AbuseEvent, in the caller's transaction."""
    session.add(AbuseEvent(letter_id=letter_id, kind=kind.value, source_hash=source_hash))
    session.flush()


def record_rate_limited(
    session: Session, *, secret_key: str, ip: str, letter_slug: str | None = None
) -> None:
    """A client hit a rate limit (recorded once per client, limit and window by the
    caller). `letter_slug`, when the limit was a letter's, names the letter."""
    record_from(
        session, kind=EventKind.RATE_LIMITED, secret_key=secret_key, ip=ip, letter_slug=letter_slug
    )


def record_from(
    session: Session, *, kind: EventKind, secret_key: str, ip: str, letter_slug: str | None
) -> None:
    """One AbuseEvent from a client at `ip` (kept as its network's keyed hash), about
    the letter `letter_slug` names; a slug no letter has records no letter."""
    letter_id = None
    if letter_slug and is_slug(letter_slug):
        letter_id = session.scalar(select(Letter.id).where(Letter.slug == letter_slug))
    record(session, kind=kind, letter_id=letter_id, source_hash=source_hash(secret_key, ip))
