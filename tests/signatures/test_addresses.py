"""Canonical addresses decide "one signature per person"; the hash must be keyed."""

from __future__ import annotations

import hashlib

import pytest

from app.signatures.addresses import canonical_email, email_domain, email_hash

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
    hashes = {email_hash(SECRET, address) for address in variants}
    assert len(hashes) == 1


def test_hash_differs_for_different_people() -> None:
    assert email_hash(SECRET, "first.last@example.org") != email_hash(
        SECRET, "firstlast@example.org"
    )
    assert email_hash(SECRET, "alice@example.org") != email_hash(SECRET, "alice@example.net")


def test_hash_is_keyed() -> None:
    address = "alice@example.org"
    assert email_hash(SECRET, address) != email_hash("another-server-key", address)
    # Not a bare hash of the address: anyone could compute that from a guessed address.
    keyed = email_hash(SECRET, address)
    for unkeyed in (
        hashlib.sha256(address.encode()).hexdigest(),
        hashlib.sha256(canonical_email(address).encode()).hexdigest(),
        hashlib.sha256((SECRET + address).encode()).hexdigest(),
    ):
        assert keyed != unkeyed


def test_hash_fits_the_column() -> None:
    value = email_hash(SECRET, "alice@example.org")
    assert len(value) == 64
    assert int(value, 16) >= 0  # hex digits only
