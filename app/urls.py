"""Every absolute link the app hands out (emails, the API's `url`, share links, the
CLI), built from the configured BASE_URL and plain values: never from a request's Host
header, which a client chooses. Redirects inside the site stay relative."""

from __future__ import annotations

from urllib.parse import quote


def letter_url(base_url: str, slug: str) -> str:
    return f"{base_url}/letters/{quote(slug)}"


def verify_url(base_url: str, token: str) -> str:
    """The link in a confirmation email; `token` is a signed opaque id."""
    return f"{base_url}/verify/{token}"


def dev_mailbox_url(base_url: str) -> str:
    return f"{base_url}/dev/mail"
