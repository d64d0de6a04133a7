"""A signer's receipt: the letter's slug and the receipt secret, as one code to keep
(`ice-out:3q2-…`) and as a link whose fragment holds the code (`/receipt#ice-out:3q2-…`).
A browser never sends a fragment to the server: the receipt page checks the code in the
page (`static/receipt.js`), asking the server only for a bucket of entries whose
commitments share a short prefix, and the proofs of a random group of those entries."""

from __future__ import annotations

from app.letters.service import is_slug
from app.signlog.entries import commitment_of

SEPARATOR = ":"


def receipt_code(slug: str, secret: str) -> str:
    return f"{slug}{SEPARATOR}{secret}"


def receipt_url(base_url: str, slug: str, secret: str) -> str:
    return f"{base_url}/receipt#{receipt_code(slug, secret)}"


def parse_receipt_code(code: str) -> tuple[str, str]:
    """(slug, commitment) of a receipt code; ValueError when it is not one."""
    slug, separator, secret = code.strip().rpartition(SEPARATOR)
    if not separator or not is_slug(slug):
        raise ValueError("not a receipt code")
    return slug, commitment_of(secret)
