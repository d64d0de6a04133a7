"""Who signed, in numbers: a letter's verified signers by company (or verified work
domain) and by stated organization.

Rules kept here:
- By company: counted, listed signatures whose signers chose to show their verified
  domain (`show_domain`), named or anonymous; free-mail domains never count (they
  prove nothing). Domains the organizers named (`Letter.domain_names`) are summed under
  the company's name.
- By organization: what public signers wrote in the organization field, grouped
  ignoring case and spacing, shown as most of the group wrote it. Only signers listed
  with their details count: an anonymous signer keeps no organization, and one whose
  name waits for a threshold is not listed with it yet.
- Any group smaller than `MIN_GROUP` is folded into "other": a small group never points
  at a person. "Other" says how many, never who.
- One GROUP BY per dimension, whatever the letter's size; nothing per signer.
- A letter with at least `CACHE_FROM` signatures reuses, in each process, a breakdown
  computed at most `CACHE_SECONDS` ago (for the same `domain_names`): its GROUP BYs
  read every signature, which on a million is most of a second per page view. Smaller
  letters are computed on every request, exactly (D84).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import String, case, cast, func, literal, select
from sqlalchemy.orm import Session

from app.letters.models import Letter
from app.letters.service import signature_count
from app.signatures import badges
from app.signatures.models import Signature, SignatureDisplay

MIN_GROUP = 3
"""Groups smaller than this are folded into "other"."""
CACHE_FROM = 10_000
"""Letters with at least this many counted signatures have their breakdown cached."""
CACHE_SECONDS = 60.0
"""How long a cached breakdown is used (then the next request computes it again)."""
CACHE_LETTERS = 256
"""Big letters whose breakdown one process keeps (the oldest goes first)."""


class BreakdownGroup(BaseModel):
    name: str = Field(description="A company name, a verified domain or an organization.")
    kind: Literal["company", "domain", "organization"] = Field(
        description="`company`: a name the letter's organizers gave to one or more "
        "domains; `domain`: a verified domain they did not name; `organization`: as "
        "signers wrote it."
    )
    count: int


class BreakdownDimension(BaseModel):
    groups: list[BreakdownGroup] = Field(
        description=f"Groups of at least {MIN_GROUP} signers, largest first."
    )
    other: int = Field(
        description=f"Signers in groups smaller than {MIN_GROUP}, folded together so "
        "that no small group points at a person."
    )
    total: int = Field(description="Every signer this dimension counts (groups and other).")


class Breakdown(BaseModel):
    """A letter's verified signers by company or verified domain, and by stated
    organization."""

    verified_domains: BreakdownDimension = Field(
        description="Signers who chose to show the domain their confirmation link reached "
        "(named or anonymous), by the company the organizers named for it or else by the "
        "domain. Free-mail domains are never counted."
    )
    organizations: BreakdownDimension = Field(
        description="Signers listed with their details, by the organization they gave "
        "(ignoring case and spacing)."
    )
    min_group_size: int = MIN_GROUP


def _fold(counts: dict[tuple[str, str], int]) -> BreakdownDimension:
    """`counts`: (kind, name) -> signers."""
    groups = sorted(
        (
            BreakdownGroup(name=name, kind=kind, count=count)
            for (kind, name), count in counts.items()
        ),
        key=lambda group: (-group.count, group.name.casefold(), group.name),
    )
    shown = [group for group in groups if group.count >= MIN_GROUP]
    other = sum(group.count for group in groups if group.count < MIN_GROUP)
    return BreakdownDimension(groups=shown, other=other, total=sum(counts.values()))


def _by_domain(session: Session, letter: Letter) -> dict[badges.Group, int]:
    sizes: dict[badges.Group, int] = defaultdict(int)
    for domain, count in session.execute(
        select(Signature.email_domain, func.count())
        .where(
            *badges.listed(letter.id),
            Signature.show_domain.is_(True),
            Signature.email_domain != "",
        )
        .group_by(Signature.email_domain)
    ):
        if badges.badge_domain(True, domain):
            sizes[badges.group_of(letter, domain)] += int(count)
    return sizes


def _organization_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _spelling(spellings: Counter[str]) -> str:
    """The group's name as most of it wrote it (ties: the first in sorted order)."""
    return min(spellings.items(), key=lambda item: (-item[1], item[0]))[0]


def _by_organization(
    session: Session, letter: Letter, crowds: badges.Crowds
) -> dict[tuple[str, str], int]:
    # A signer waiting for a threshold needs its crowd: its badge domain rides along,
    # for those rows only (so the groups stay few).
    waiting = Signature.name_threshold.is_not(None)
    domain = case(
        (waiting & Signature.show_domain.is_(True), Signature.email_domain),
        else_=cast(literal(""), String),
    )
    rows: Iterable[tuple[str, int | None, str, int]] = session.execute(
        select(Signature.organization, Signature.name_threshold, domain, func.count())
        .where(
            *badges.listed(letter.id),
            Signature.display == SignatureDisplay.PUBLIC,
            Signature.organization != "",
        )
        .group_by(Signature.organization, Signature.name_threshold, domain)
    )
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    for organization, threshold, badge, count in rows:
        shown = crowds.names_shown(
            display=SignatureDisplay.PUBLIC,
            show_domain=bool(badge),
            domain=badge or None,
            name_threshold=threshold,
        )
        if shown:
            spellings[_organization_key(organization)][organization.strip()] += int(count)
    return {("organization", _spelling(names)): sum(names.values()) for names in spellings.values()}


_Key = tuple[str, int]
_Stamp = tuple[tuple[str, str], ...]
_cached: dict[_Key, tuple[float, _Stamp, Breakdown]] = {}
_cache_lock = threading.Lock()


def letter_breakdown(session: Session, *, letter: Letter) -> Breakdown:
    """The letter's breakdown (two GROUP BY queries; a big letter's may be up to
    `CACHE_SECONDS` old). The caller checks that the letter publishes its signers."""
    if signature_count(session, letter_id=letter.id) < CACHE_FROM:
        return _computed(session, letter)
    key = (session.get_bind().engine.url.render_as_string(), letter.id)
    stamp = tuple(sorted((letter.domain_names or {}).items()))
    now = time.monotonic()
    with _cache_lock:
        found = _cached.get(key)
    if found is not None and found[1] == stamp and now - found[0] < CACHE_SECONDS:
        return found[2]
    breakdown = _computed(session, letter)
    with _cache_lock:
        _cached.pop(key, None)
        _cached[key] = (now, stamp, breakdown)
        while len(_cached) > CACHE_LETTERS:
            del _cached[next(iter(_cached))]
    return breakdown


def forget_cached_breakdowns() -> None:
    """Drops every cached breakdown (tests)."""
    with _cache_lock:
        _cached.clear()


def _computed(session: Session, letter: Letter) -> Breakdown:
    sizes = _by_domain(session, letter)
    return Breakdown(
        verified_domains=_fold(dict(sizes)),
        organizations=_fold(_by_organization(session, letter, badges.Crowds(letter, sizes))),
    )
