"""Proof of work on the sign form (D69): a self-hosted ALTCHA challenge that costs a
browser about a second and a bot farm that second for every signature it fakes.

- `PROOF_OF_WORK`: `off`; `always`; or `auto`, asked for only while a letter's sign
  requests run above `PROOF_OF_WORK_ABOVE` (counted by app.web.ratelimit).
- A challenge is a `PBKDF2/SHA-256` ALTCHA v2 challenge (the `altcha` package), signed
  with an HMAC under a key derived from SECRET_KEY, naming the letter it is for and
  expiring after `CHALLENGE_LIFETIME`. A solution is checked against that signature and
  the letter, and spent: the hash of its nonce is stored until the challenge expires,
  so a solution signs once (`SpentChallenge`). Nothing in a challenge or its record is
  personal.
- A sign request without a solution (no JavaScript) is still taken, under the tighter
  RATE_LIMIT_SIGN_UNPROVEN limits: people without JavaScript can sign; a bot that skips
  the work gets only that trickle.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

import altcha
from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.abuse.models import SpentChallenge
from app.config import ProofOfWork, Settings
from app.db import upsert, utcnow

ALGORITHM = "PBKDF2/SHA-256"
KEY_PREFIX = "00"
"""The derived key must start with this byte: 1 try in 256 succeeds."""
CHALLENGE_LIFETIME = timedelta(minutes=30)
"""Long enough to read a letter and fill in the form after the widget did its work."""
MAX_PAYLOAD_CHARS = 4000
"""A real solution is about 600 characters of base64."""


class ProofResult(StrEnum):
    VERIFIED = "verified"
    MISSING = "missing"
    INVALID = "invalid"
    """Not ours, tampered with, wrong answer, or for another letter."""
    EXPIRED = "expired"
    REPLAYED = "replayed"


@lru_cache(maxsize=8)
def _key(secret_key: str) -> bytes:
    # A sub-key for the challenges' HMAC, never the token-signing key itself.
    return hmac.new(secret_key.encode(), b"undersigned/altcha/v1", hashlib.sha256).digest()


def asked_for(settings: Settings, *, busy: bool) -> bool:
    """Whether a letter's sign form asks for proof of work now. `busy`: its signing
    runs above PROOF_OF_WORK_ABOVE (only looked at in auto mode)."""
    if settings.proof_of_work == ProofOfWork.ALWAYS:
        return True
    return settings.proof_of_work == ProofOfWork.AUTO and busy


def new_challenge(settings: Settings, *, letter_slug: str) -> dict[str, Any]:
    """A signed challenge for one letter, as the widget reads it (JSON)."""
    challenge = altcha.create_challenge(
        ALGORITHM,
        settings.proof_of_work_cost,
        key_prefix=KEY_PREFIX,
        expires_at=utcnow() + CHALLENGE_LIFETIME,
        data={"letter": letter_slug},
        hmac_secret=_key(settings.secret),
    )
    result: dict[str, Any] = challenge.to_dict()
    return result


def check(session: Session, settings: Settings, *, payload: str, letter_slug: str) -> ProofResult:
    """Checks a solution (the widget's base64 payload) for this letter and spends it,
    in the caller's transaction. Costs an HMAC, then one key derivation (PROOF_OF_WORK_COST
    iterations, about 2 ms at the default) only for a challenge this server signed."""
    if not payload:
        return ProofResult.MISSING
    if len(payload) > MAX_PAYLOAD_CHARS:
        return ProofResult.INVALID
    try:
        parsed = altcha.Payload.from_base64(payload)
        outcome = altcha.verify_solution(parsed, _key(settings.secret))
    except (ValueError, TypeError, KeyError, AttributeError):
        return ProofResult.INVALID
    if outcome.expired:
        return ProofResult.EXPIRED
    if not outcome.verified:
        return ProofResult.INVALID
    parameters = parsed.challenge.parameters
    if not isinstance(parameters.data, dict) or parameters.data.get("letter") != letter_slug:
        return ProofResult.INVALID
    if not _spend(session, nonce=parameters.nonce, expires_at=parameters.expires_at):
        return ProofResult.REPLAYED
    return ProofResult.VERIFIED


def _spend(session: Session, *, nonce: str, expires_at: int | None) -> bool:
    """Records the challenge as used; False when it already was (a replay). One
    INSERT … ON CONFLICT DO NOTHING: two requests racing with one solution, one wins."""
    expiry = (
        datetime.fromtimestamp(expires_at, UTC)
        if expires_at is not None
        else utcnow() + CHALLENGE_LIFETIME
    )
    statement = (
        upsert(session, SpentChallenge)
        .values(nonce_hash=hashlib.sha256(nonce.encode()).hexdigest(), expires_at=expiry)
        .on_conflict_do_nothing(index_elements=["nonce_hash"])
        .returning(SpentChallenge.nonce_hash)
    )
    return session.execute(statement).scalar() is not None


def purge_spent_challenges(session: Session, *, now: datetime) -> int:
    """Spent challenges past their expiry (a replay of one is refused as expired)."""
    result = session.execute(delete(SpentChallenge).where(SpentChallenge.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
