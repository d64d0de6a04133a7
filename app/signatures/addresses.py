"""Canonical email addresses and their keyed hash."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


def canonical_email(address: str) -> str:
    """Lower-cased, `+tag` dropped; Gmail dots dropped and googlemail.com -> gmail.com."""
    local, _, domain = address.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def email_domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


@lru_cache(maxsize=8)
def _hash_key(secret_key: str) -> bytes:
    # A sub-key, so the hash key is never the token-signing key itself.
    return hmac.new(secret_key.encode(), b"undersigned/email-hash/v1", hashlib.sha256).digest()


def email_hash(secret_key: str, address: str) -> str:
    """HMAC-SHA256 of the canonical address: addresses are guessable, so no bare hash."""
    return hmac.new(
        _hash_key(secret_key), canonical_email(address).encode(), hashlib.sha256
    ).hexdigest()
