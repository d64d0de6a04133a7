"""The delivery packet's signers, on SQLite and PostgreSQL: who is listed, the grouping
by organization, keyset batches that add up to the whole list, and short sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.letters.models import Letter
from app.organizers.models import AuditEvent
from app.organizers.service import Actor
from app.signatures import packet
from app.signatures.models import SignatureStatus
from app.signatures.packet import (
    PacketSigner,
    count_anonymous,
    group_signers,
    iter_signers,
    signers_batch,
    start_packet,
)
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.organizers import make_organizer

# (name, organization, title), in the order they sign.
PEOPLE = [
    ("Zed", "Beta Org", "CTO"),
    ("Amy", "acme", ""),
    ("Bob", "", "Nurse"),
    ("Cat", "ACME", "Lead"),
    ("Dan", "Beta Org", ""),
    ("Eve", "", ""),
    ("Fay", "Acme", "Chair"),
]
# Packet order: organizations case-insensitively, each in signing order; then the rest.
EXPECTED = [
    ("Amy", "acme", ""),
    ("Cat", "ACME", "Lead"),
    ("Fay", "Acme", "Chair"),
    ("Zed", "Beta Org", "CTO"),
    ("Dan", "Beta Org", ""),
    ("Bob", "", "Nurse"),
    ("Eve", "", ""),
]


def sign_people(session: Session, letter: Letter, settings: Settings) -> None:
    for name, organization, title in PEOPLE:
        sign_and_confirm(
            session, letter, settings, name=name, organization=organization, title=title
        )


def listed(signers: list[PacketSigner]) -> list[tuple[str, str, str]]:
    return [(signer.name, signer.organization, signer.title) for signer in signers]


@pytest.fixture
def letter(session: Session, settings: Settings) -> Letter:
    letter = make_letter(session)
    sign_people(session, letter, settings)
    # Not listed: anonymous (counted), hidden, removed, withdrawn, another letter's.
    sign_and_confirm(session, letter, settings, display="anonymous", organization="Acme")
    sign_and_confirm(session, letter, settings, display="anonymous")
    sign_and_confirm(session, letter, settings, name="Hidden", organization="acme").hidden = True
    hidden_anonymous = sign_and_confirm(session, letter, settings, display="anonymous")
    hidden_anonymous.hidden = True
    removed = sign_and_confirm(session, letter, settings, name="Removed", organization="Acme")
    removed.status = SignatureStatus.REMOVED
    withdrawn = sign_and_confirm(session, letter, settings, name="Gone", organization="")
    withdrawn.status = SignatureStatus.WITHDRAWN
    sign_and_confirm(session, make_letter(session), settings, name="Elsewhere", organization="acme")
    session.flush()
    return letter


def test_public_signers_in_packet_order(session: Session, letter: Letter) -> None:
    assert listed(signers_batch(session, letter_id=letter.id, limit=100)) == EXPECTED


def test_grouped_by_organization_with_individuals_last(session: Session, letter: Letter) -> None:
    groups = [
        (group.organization, [signer.name for signer in group.signers])
        for group in group_signers(signers_batch(session, letter_id=letter.id, limit=100))
    ]
    # A group is named as its first signer wrote it.
    assert groups == [
        ("acme", ["Amy", "Cat", "Fay"]),
        ("Beta Org", ["Zed", "Dan"]),
        ("", ["Bob", "Eve"]),
    ]


def test_anonymous_signers_are_only_counted(session: Session, letter: Letter) -> None:
    assert count_anonymous(session, letter_id=letter.id) == 2
    names = {signer.name for signer in signers_batch(session, letter_id=letter.id, limit=100)}
    assert "" not in names and "Hidden" not in names and "Removed" not in names


def test_keyset_batches_add_up_to_the_whole_list(session: Session, letter: Letter) -> None:
    for limit in range(1, len(EXPECTED) + 2):
        collected: list[PacketSigner] = []
        after: PacketSigner | None = None
        calls = 0
        while True:
            batch = signers_batch(session, letter_id=letter.id, after=after, limit=limit)
            calls += 1
            assert len(batch) <= limit
            collected += batch
            if len(batch) < limit:
                break
            after = batch[-1]
        assert listed(collected) == EXPECTED, limit
        assert calls == len(EXPECTED) // limit + 1, limit


def test_a_letter_without_signers(session: Session) -> None:
    empty = make_letter(session)
    assert signers_batch(session, letter_id=empty.id) == []
    assert list(group_signers([])) == []
    assert count_anonymous(session, letter_id=empty.id) == 0


def test_start_packet_gives_the_tally_and_records_the_download(
    session: Session, letter: Letter
) -> None:
    owner = make_organizer(session, "owner@example.org")
    # The counter row, as is: it counted every confirmation (the fixture sets two
    # signatures' status directly, past the services that would move the counter).
    counted = len(PEOPLE) + 6
    assert start_packet(session, letter=letter, actor=Actor(owner)) == counted
    session.flush()
    event = session.scalars(select(AuditEvent).where(AuditEvent.letter_id == letter.id)).one()
    assert (event.action, event.organizer_id, event.detail) == (
        "letter.download_packet",
        owner.id,
        {"count": counted},
    )


def test_iter_signers_reads_in_short_sessions_of_one_batch(
    clean_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, clean_database.url)
    with clean_database.write() as session:
        letter = make_letter(session)
        sign_people(session, letter, settings)
        letter_id = letter.id

    opened = 0
    open_now = 0
    real_read = clean_database.read

    @contextmanager
    def counting_read() -> Iterator[Session]:
        nonlocal opened, open_now
        opened += 1
        open_now += 1
        with real_read() as session:
            yield session
        open_now -= 1

    monkeypatch.setattr(clean_database, "read", counting_read)
    monkeypatch.setattr(packet, "BATCH_SIZE", 2)

    signers = iter_signers(clean_database, letter_id=letter_id)
    seen: list[PacketSigner] = []
    for signer in signers:
        assert open_now == 0  # nothing is held open while the caller has a signer
        seen.append(signer)
    assert listed(seen) == EXPECTED
    assert opened == len(EXPECTED) // 2 + 1  # 2, 2, 2, 1


def test_a_name_waiting_for_its_threshold_is_only_counted(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    """The packet may go to the signer's employer: a name that waits for 10 others from
    its company is counted with the anonymous, never listed, until the 10th other signs
    (in every batch size: the keyset still moves past it)."""
    letter = make_letter(session)
    waiting = sign_and_confirm(session, letter, settings, name="Careful Person",
                               email="careful@acme-corp.example", show_domain=True,
                               name_threshold=10)  # fmt: skip
    for n in range(9):
        sign_and_confirm(session, letter, settings, name=f"Colleague {n}",
                         email=f"c{n}@acme-corp.example", show_domain=True)  # fmt: skip
    session.flush()
    assert waiting.name_threshold == 10 and waiting.show_domain
    for limit in (1, 3, 100):
        names = _all_names(session, letter, limit)
        assert "Careful Person" not in names and len(names) == 9, limit
    assert count_anonymous(session, letter_id=letter.id) == 1

    sign_and_confirm(session, letter, settings, name="Colleague 9",
                     email="c9@acme-corp.example", show_domain=True)  # fmt: skip
    session.flush()
    assert "Careful Person" in _all_names(session, letter, 100)
    assert count_anonymous(session, letter_id=letter.id) == 0


def _all_names(session: Session, letter: Letter, limit: int) -> list[str]:
    names: list[str] = []
    after: PacketSigner | None = None
    while True:
        batch = signers_batch(session, letter_id=letter.id, after=after, limit=limit)
        names += [signer.name for signer in batch if not signer.withheld]
        if len(batch) < limit:
            return names
        after = batch[-1]
