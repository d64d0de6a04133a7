"""`get_letter_for_signing` keeps the letter it loaded for a second per process (D182):
one query a second for the busiest letter instead of one per signature, and a change is
never missed for longer than that."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput, LetterNotFound, LetterNotOpen
from app.letters import service as letters
from app.letters.models import FieldRule, Letter, LetterStatus
from app.signatures.service import sign_letter
from tests.support.factories import make_letter, signature_in


@pytest.fixture(autouse=True)
def _cold() -> Iterator[None]:
    letters.forget_signing_letters()
    yield
    letters.forget_signing_letters()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The cache's monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(letters, "_clock", lambda: now[0])
    return now


@contextmanager
def _letter_queries(session: Session) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("SELECT") and "FROM letters" in args[2]:
            seen.append(args[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_signatures_within_the_second_load_the_letter_once(
    session: Session, settings: Settings, clock: list[float]
) -> None:
    letter = make_letter(session)
    with _letter_queries(session) as seen:
        for _ in range(5):
            sign_letter(session, slug=letter.slug, data=signature_in(), settings=settings)
        assert len(seen) == 1
        clock[0] += letters.SIGNING_CACHE_SECONDS + 0.01
        sign_letter(session, slug=letter.slug, data=signature_in(), settings=settings)
        assert len(seen) == 2


def test_the_kept_letter_belongs_to_no_session_and_the_callers_stays_its_own(
    session: Session, clock: list[float]
) -> None:
    letter = make_letter(session)
    first = letters.get_letter_for_signing(session, slug=letter.slug)
    assert first is letter  # the first call returns the session's own instance
    kept = letters.get_letter_for_signing(session, slug=letter.slug)
    assert kept is not letter
    assert kept not in session
    assert (kept.id, kept.slug, kept.version, kept.status) == (
        letter.id,
        letter.slug,
        letter.version,
        letter.status,
    )
    # The caller's letter is still persistent: a change to it is flushed as usual.
    letter.title = "Changed"
    session.flush()
    assert letter in session


def test_a_change_made_in_this_process_is_seen_at_once(
    session: Session, settings: Settings, clock: list[float]
) -> None:
    letter = make_letter(session)
    sign_letter(session, slug=letter.slug, data=signature_in(), settings=settings)
    letter.status = LetterStatus.CLOSED
    session.flush()  # the ORM's update forgets every kept letter
    with pytest.raises(LetterNotOpen):
        sign_letter(session, slug=letter.slug, data=signature_in(), settings=settings)


def test_a_change_made_elsewhere_is_seen_within_the_second(
    session: Session, settings: Settings, clock: list[float]
) -> None:
    """Another process's change does not reach this one's listeners: it is seen when the
    kept copy runs out, and until then the old rules apply (a confirmation checks the
    letter again)."""
    letter = make_letter(session)
    sign_letter(session, slug=letter.slug, data=signature_in(), settings=settings)
    session.execute(
        update(Letter).where(Letter.id == letter.id).values(field_city=FieldRule.REQUIRED)
    )
    sign_letter(session, slug=letter.slug, data=signature_in(city=""), settings=settings)
    clock[0] += letters.SIGNING_CACHE_SECONDS + 0.01
    session.expire_all()
    with pytest.raises(InvalidInput) as refused:
        sign_letter(session, slug=letter.slug, data=signature_in(city=""), settings=settings)
    assert "city" in refused.value.fields


def test_a_draft_or_unknown_letter_is_never_kept(session: Session, clock: list[float]) -> None:
    draft = make_letter(session, status=LetterStatus.DRAFT)
    for _ in range(2):
        with pytest.raises(LetterNotFound):
            letters.get_letter_for_signing(session, slug=draft.slug)
        with pytest.raises(LetterNotFound):
            letters.get_letter_for_signing(session, slug="no-such-letter")
    draft.status = LetterStatus.OPEN
    session.flush()
    assert letters.get_letter_for_signing(session, slug=draft.slug).id == draft.id
