"""Canonical addresses decide "one signature per person"; the hash must be keyed."""

from __future__ import annotations

import hashlib

import pytest

from app.emails import email_domain
from app.signatures.addresses import canonical_email, email_hash, masked

SECRET = "one-server-key"


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("Alice@Example.ORG", "alice@example.org"),
        ("  alice@example.org  ", "alice@example.org"),
        ("alice+letters@example.org", "alice@example.org"),
        ("alice+a+b@example.org", "alice@example.org"),
        ("first.last@example.org", "first.last@example.org"),
        ("First.Last+x@Example.org", "first.last@example.org"),
        ("first.last@gmail.com", "firstlast@gmail.com"),
        ("F.i.r.s.t.Last+tag@GMail.com", "firstlast@gmail.com"),
        ("first.last@googlemail.com", "firstlast@gmail.com"),
        ("First.Last+news@GoogleMail.COM", "firstlast@gmail.com"),
        ("first.last@gmail.com.example.org", "first.last@gmail.com.example.org"),
        ("first.last@mail.gmail.com", "first.last@mail.gmail.com"),
    ],
)
def test_canonical_email(address: str, canonical: str) -> None:
    assert canonical_email(address) == canonical


def test_email_domain_is_lower_cased() -> None:
    assert email_domain("Someone@Example.ORG") == "example.org"
    assert email_domain("a.b+c@GoogleMail.com") == "googlemail.com"


def test_hash_is_equal_for_canonically_equal_addresses() -> None:
    variants = [
        "first.last@gmail.com",
        "FirstLast@gmail.com",
        "first.last+letters@googlemail.com",
        " F.I.R.S.T.L.A.S.T@GMAIL.COM ",
    ]
    hashes = {email_hash(SECRET, 1, address) for address in variants}
    assert len(hashes) == 1


def test_hash_differs_for_different_people() -> None:
    assert email_hash(SECRET, 1, "first.last@example.org") != email_hash(
        SECRET, 1, "firstlast@example.org"
    )
    assert email_hash(SECRET, 1, "alice@example.org") != email_hash(SECRET, 1, "alice@example.net")


def test_hash_is_keyed() -> None:
    address = "alice@example.org"
    assert email_hash(SECRET, 1, address) != email_hash("another-server-key", 1, address)
    # Not a bare hash of the address: anyone could compute that from a guessed address.
    keyed = email_hash(SECRET, 1, address)
    for unkeyed in (
        hashlib.sha256(address.encode()).hexdigest(),
        hashlib.sha256(canonical_email(address).encode()).hexdigest(),
        hashlib.sha256((SECRET + address).encode()).hexdigest(),
    ):
        assert keyed != unkeyed


def test_hash_fits_the_column() -> None:
    value = email_hash(SECRET, 1, "alice@example.org")
    assert len(value) == 64
    assert int(value, 16) >= 0  # hex digits only


def test_hash_is_keyed_per_letter() -> None:
    """The same person on two letters gets two unrelated hashes: a leaked database
    cannot join their signatures across letters without the key."""
    assert email_hash(SECRET, 1, "alice@example.org") != email_hash(SECRET, 2, "alice@example.org")
    assert email_hash(SECRET, 12, "alice@example.org") != email_hash(
        SECRET, 1, "2alice@example.org"
    )


def test_hash_can_be_rekeyed_from_the_old_one() -> None:
    """Migration 0004 re-keys stored hashes without the address: the new hash is an HMAC
    of the letter and the old (v1) hash, which is the inner step here."""
    import hmac

    v1_key = hmac.new(SECRET.encode(), b"undersigned/email-hash/v1", hashlib.sha256).digest()
    old = hmac.new(v1_key, b"alice@example.org", hashlib.sha256).hexdigest()
    letter_key = hmac.new(
        SECRET.encode(), b"undersigned/email-hash/per-letter/v2", hashlib.sha256
    ).digest()
    rekeyed = hmac.new(letter_key, f"7:{old}".encode(), hashlib.sha256).hexdigest()
    assert email_hash(SECRET, 7, "Alice+x@Example.org") == rekeyed


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("ada@example.org", "a•••@example.org"),
        ("Ada.Lovelace+x@Example.ORG", "A•••@example.org"),
        ("x@y.z", "x•••@y.z"),
    ],
)
def test_masked_addresses_show_the_first_letter_and_the_domain(address: str, shown: str) -> None:
    assert masked(address) == shown
