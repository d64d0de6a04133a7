"""Which email domains may sign a letter.

Three rules, on the part of the address after the @ (and every domain above it, so a
listed domain covers its subdomains):

- a letter's `required_domains`, when it has any, are the only ones that may sign (an
  employees-only letter);
- throwaway-address domains (the maintained `disposable-email-domains` list) may not,
  unless the letter requires that domain (or one above it): its organizers vouch for
  it, and the list's rare false positive must not lock an organization out of its own
  letter;
- a letter's `forbidden_domains` may not.

The answer depends on the letter and the address only (no query, no state), so a
refusal tells nothing about whether anyone signed; it is a few set lookups."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from disposable_email_domains import blocklist
from email_validator import EmailNotValidError, validate_email

from app.abuse.service import EventKind
from app.emails import email_domain
from app.errors import InvalidInput
from app.i18n import gettext as _
from app.letters.models import Letter

DISPOSABLE: frozenset[str] = frozenset(domain.strip().lower() for domain in blocklist)
"""Throwaway-address domains, in ASCII (IDNA) form, as the package lists them."""

SHOWN_MAX = 10
"""Required domains named in the refusal; more are counted."""


def _ascii(domain: str) -> str:
    """The domain's ASCII (IDNA) form, lower-case: how the lists are compared. A domain
    that is not one stays as it is (it then matches nothing listed)."""
    domain = domain.strip().lower().removesuffix(".")
    if domain.isascii():
        return domain
    try:
        return str(validate_email(f"x@{domain}", check_deliverability=False).ascii_domain)
    except EmailNotValidError:
        return domain


def _suffixes(domain: str) -> list[str]:
    """mail.example.co.uk -> mail.example.co.uk, example.co.uk, co.uk, uk."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


@lru_cache(maxsize=1024)
def _as_set(domains: tuple[str, ...]) -> frozenset[str]:
    """A letter's list in ASCII form; made once per distinct list."""
    return frozenset(_ascii(domain) for domain in domains)


def _listed(suffixes: list[str], domains: frozenset[str]) -> bool:
    return any(suffix in domains for suffix in suffixes)


def _only(required: list[str]) -> str:
    names = ", ".join(required[:SHOWN_MAX])
    if len(required) > SHOWN_MAX:
        more = len(required) - SHOWN_MAX
        names += " " + _("(or one of %(n)s other domains)") % {"n": more}
    return _("Only addresses at %(names)s can sign this letter.") % {"names": names}


@dataclass(frozen=True, slots=True)
class DomainRefusal:
    """Why an address may not sign a letter: the kind its AbuseEvent records (which
    names no domain: a required-domain miss may be a person's own domain) and the
    refusal the signer sees."""

    kind: EventKind
    message: str

    def error(self) -> InvalidInput:
        return InvalidInput(self.message, fields={"email": self.message})


def email_domain_refusal(letter: Letter, address: str) -> DomainRefusal | None:
    """Why this address may not sign `letter`, or None when it may: a domain outside
    the letter's required ones (when it has some), a throwaway-address domain, or a
    domain the letter forbids. Depends on the letter and the address only."""
    shown = email_domain(address)
    suffixes = _suffixes(_ascii(shown))
    required = letter.required_domains or []
    if required and not _listed(suffixes, _as_set(tuple(required))):
        return DomainRefusal(EventKind.REQUIRED_DOMAIN, _only(required))
    if not required and _listed(suffixes, DISPOSABLE):
        message = _("Addresses at %(domain)s are throwaway addresses; use your usual address.") % {
            "domain": shown
        }
        return DomainRefusal(EventKind.DISPOSABLE_DOMAIN, message)
    forbidden = letter.forbidden_domains or []
    if forbidden and _listed(suffixes, _as_set(tuple(forbidden))):
        message = _("This letter does not accept addresses at %(domain)s.") % {"domain": shown}
        return DomainRefusal(EventKind.FORBIDDEN_DOMAIN, message)
    return None


def check_email_domain(letter: Letter, address: str) -> None:
    """Raises InvalidInput(fields={"email": …}) when this address may not sign `letter`
    (`email_domain_refusal`). Records nothing: `app.signatures.service.sign_letter`
    records the refusal as an AbuseEvent."""
    refusal = email_domain_refusal(letter, address)
    if refusal is not None:
        raise refusal.error()
