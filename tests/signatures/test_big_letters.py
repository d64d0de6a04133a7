"""Big letters: the breakdown of a letter with many signatures is cached for a minute
per process (D84); a small letter's is exact on every request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from app.letters.models import Letter
from app.signatures import breakdown, seed
from app.signatures.breakdown import letter_breakdown
from tests.support.factories import make_letter

SECRET = "big-letters-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    breakdown.forget_cached_breakdowns()
    yield
    breakdown.forget_cached_breakdowns()


def _seeded(session: Session, count: int, **overrides: object) -> Letter:
    letter = make_letter(session, **overrides)
    seed.seed_signatures(session, letter=letter, count=count, secret_key=SECRET, force=True,
                         random_seed=3)  # fmt: skip
    return letter


def test_a_small_letters_breakdown_is_exact_on_every_request(session: Session) -> None:
    letter = _seeded(session, 300)
    before = letter_breakdown(session, letter=letter)
    seed.seed_signatures(session, letter=letter, count=300, secret_key=SECRET, force=True)
    after = letter_breakdown(session, letter=letter)
    assert after.verified_domains.total > before.verified_domains.total
    assert after.organizations.total > before.organizations.total


def test_a_big_letters_breakdown_is_reused_for_a_minute(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(breakdown, "CACHE_FROM", 200)
    letter = _seeded(session, 300)
    clock = [1000.0]
    monkeypatch.setattr("app.signatures.breakdown.time.monotonic", lambda: clock[0])
    first = letter_breakdown(session, letter=letter)
    assert first.verified_domains.total > 0
    seed.seed_signatures(session, letter=letter, count=300, secret_key=SECRET, force=True)

    clock[0] += breakdown.CACHE_SECONDS - 1
    assert letter_breakdown(session, letter=letter) is first
    clock[0] += 2
    fresh = letter_breakdown(session, letter=letter)
    assert fresh.verified_domains.total > first.verified_domains.total

    # Naming a company changes the groups at once.
    letter.domain_names = {"northwind.example": "Northwind", "contoso.example": "Northwind"}
    named = letter_breakdown(session, letter=letter)
    assert named is not fresh
    assert {"Northwind"} <= {group.name for group in named.verified_domains.groups}
    assert named.verified_domains.total == fresh.verified_domains.total
