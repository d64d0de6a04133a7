"""Canonical email addresses, their keyed hash, and how a page may show one."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache

from app.emails import GMAIL_DOMAINS, canonical_email

__all__ = ["GMAIL_DOMAINS", "canonical_email", "email_hash", "email_hasher", "masked"]


@lru_cache(maxsize=8)
def _hash_keys(secret_key: str) -> tuple[bytes, bytes]:
    # Sub-keys, so the hash keys are never the token-signing key itself.
    secret = secret_key.encode()
    return (
        hmac.new(secret, b"undersigned/email-hash/v1", hashlib.sha256).digest(),
        hmac.new(secret, b"undersigned/email-hash/per-letter/v2", hashlib.sha256).digest(),
    )


def email_hash(secret_key: str, letter_id: int, address: str) -> str:
    """An HMAC-SHA256 of the letter and the canonical address under server keys.

    Keyed, because addresses are guessable (a bare hash is a lookup table away from the
    address); per letter, so that a leaked database cannot join one person's signatures
    across letters (an anonymous one here with a public one there). It is computed in
    two steps, HMAC(k2, letter, HMAC(k1, address)), so that migration 0004 could re-key
    the hashes stored before it without knowing any address."""
    address_key, letter_key = _hash_keys(secret_key)
    inner = hmac.new(address_key, canonical_email(address).encode(), hashlib.sha256).hexdigest()
    return hmac.new(letter_key, f"{letter_id}:{inner}".encode(), hashlib.sha256).hexdigest()


def email_hasher(secret_key: str, letter_id: int) -> Callable[[str], str]:
    """`email_hash` for one letter, as a function of the address: the same hash, with
    the keys and the letter's prefix worked out once (a bulk insert hashes a million)."""
    address_key, letter_key = _hash_keys(secret_key)
    prefix = f"{letter_id}:".encode()

    def hashed(address: str) -> str:
        inner = hmac.digest(address_key, canonical_email(address).encode(), "sha256").hex()
        return hmac.digest(letter_key, prefix + inner.encode(), "sha256").hex()

    return hashed


def masked(address: str) -> str:
    """`a•••@example.org`: enough for a person to spot a typo in what they typed, too
    little to read someone else's address over their shoulder."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local[:1]}•••@{domain.lower()}"
