"""One mailbox, one spelling: the canonical form of an email address, shared by the
signature hash (app.signatures.addresses) and the sign-in rate limit (app.web.ratelimit);
and the domain of an address, shared by what a signature keeps (app.signatures) and the
domain rules (app.abuse.domains)."""

from __future__ import annotations

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
    """The part after the last @, lower-cased, as typed (not IDNA-encoded): what a
    submission keeps as its domain and what a refusal names."""
    return address.rpartition("@")[2].strip().lower()
