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


def login_url(base_url: str, token: str | None = None) -> str:
    """The sign-in page, or a sign-in link when `token` (a signed opaque id) is given."""
    return f"{base_url}/login/{token}" if token else f"{base_url}/login"


def dashboard_letter_url(base_url: str, slug: str) -> str:
    return f"{base_url}/dashboard/letters/{quote(slug)}"


def unsubscribe_url(base_url: str, token: str) -> str:
    """The one-click unsubscribe link of an update email (RFC 8058)."""
    return f"{base_url}/unsubscribe/{token}"


def manage_url(base_url: str, token: str) -> str:
    """A signer's private manage link (change, withdraw, stop updates); `token` is a
    signed opaque id."""
    return f"{base_url}/signature/{token}"
