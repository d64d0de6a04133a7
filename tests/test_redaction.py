"""`redact`: what it takes out of error texts and what it leaves readable."""

from __future__ import annotations

import pytest

from app.redaction import redact
from tests.mail.test_privacy import PUBLIC_ID, TOKEN, VICTIM, assert_nothing_leaked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"550 b'<{VICTIM}> unknown'", "550 b'<[address]> unknown'"),
        ("550 b'\\xc3\\xa9ric@exämple.org'", "550 b'[address]'"),
        ("victim%40example.org", "[address]"),
        (f"see https://x.org/verify/{TOKEN}#thanks", "see https://x.org/verify/[token]#thanks"),
        (f"/signature/{TOKEN}?x=1", "/signature/[token]?x=1"),
        (f"GET /?token={PUBLIC_ID}&q=1", "GET /?token=[token]&q=1"),
        (f"claim {PUBLIC_ID} lost", "claim [token] lost"),
        # Words, codes, exception names and short numbers stay readable.
        (
            "ConnectionRefusedError: [Errno 111] Connection refused; 421 4.7.0 try later",
            "ConnectionRefusedError: [Errno 111] Connection refused; 421 4.7.0 try later",
        ),
    ],
    # Named: a token is issued at import with the time in it, and pytest-xdist needs
    # the same test ids in every worker.
    ids=[
        "address",
        "escaped-address",
        "percent-address",
        "verify-link",
        "manage-link",
        "query-token",
        "claim-token",
        "readable-error",
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_takes_a_bare_token_apart() -> None:
    redacted = redact(f"bad payload in {TOKEN}!")
    assert redacted.startswith("bad payload in [token].") and redacted.endswith("!")
    assert_nothing_leaked(redacted)
