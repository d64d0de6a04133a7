"""`dev seed` writes its log entries in their places (no queue, no numbering UPDATE) and
their stored hashes and checkpoints through the sequencer's own `Appending`: the log it
leaves is the one the sequencer would have built (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import InvalidInput
from app.letters.models import FieldRule, Letter, LetterStatus, LetterTally, SignerKind
from app.letters.service import signature_count
from app.signatures import seed
from app.signatures.models import Signature
from app.signlog import sequencer, service
from app.signlog.entries import leaf_bytes
from app.signlog.hashes import TableHashes
from app.signlog.models import LogCheckpoint, LogEntry, LogHead
from app.transparency import merkle
from tests.signlog.test_sequencer import _check_log, _checkpoints, _entries, _queued
from tests.support.factories import make_letter, sign_and_confirm

SECRET = "seed-log-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


def test_the_seed_appends_its_entries_after_the_queue_and_the_log_checks_out(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks and rounds: several checkpoints and several rounds, at odd sizes.
    monkeypatch.setattr(seed, "_CHUNK", 7)
    monkeypatch.setattr(seed, "LOG_BATCH", 7)
    monkeypatch.setattr(seed, "_ROUND", 21)
    letter = make_letter(session)
    real = [sign_and_confirm(session, letter, settings) for _ in range(3)]
    assert sequencer.sequence(session, settings, letter_id=letter.id, limit=2) == 2
    assert _queued(session, letter.id) == 1  # one real confirmation still queued

    done = seed.seed_signatures(session, letter=letter, count=50, secret_key=SECRET,
                                random_seed=4, settings=settings, force=True)  # fmt: skip
    assert (done.first_position, done.last_position, done.verified_count) == (4, 53, 53)
    assert _queued(session, letter.id) == 0
    leaves = _check_log(session, settings, letter)
    assert len(leaves) == 53
    entries = _entries(session, letter.id)
    commitments = dict(
        session.execute(
            select(Signature.position, Signature.receipt_commitment).where(
                Signature.letter_id == letter.id
            )
        ).all()
    )
    # The queued real entry first, then one add per seeded row in position order.
    assert [e.commitment for e in entries] == [commitments[p] for p in range(1, 54)]
    assert [e.commitment for e in entries[:3]] == [s.receipt_commitment for s in real]
    assert {(e.event, e.reason) for e in entries[3:]} == {("add", "confirmed")}
    seeded = session.scalars(
        select(Signature.verified_at)
        .where(Signature.letter_id == letter.id, Signature.position > 3)
        .order_by(Signature.position)
    ).all()
    assert [e.hour for e in entries[3:]] == [
        moment.replace(minute=0, second=0, microsecond=0) for moment in seeded
    ]
    # The drained entry's checkpoint, then one per chunk of the seed.
    sizes = [row.size for row in _checkpoints(session, letter.id)]
    assert sizes == [2, 3, *range(10, 53, 7), 53]
    # Every stored hash is the one the tree has: the root of each size from the table.
    stored = TableHashes(session, letter.id)
    for size in range(1, 54):
        assert merkle.tree_hash(stored, size) == merkle.root(leaves[:size])
    latest = service.latest(session, settings, letter_id=letter.id, slug=letter.slug)
    assert (latest.size, latest.count) == (53, signature_count(session, letter_id=letter.id))

    # A second seed continues the log from its head (a frontier of several subtrees).
    again = seed.seed_signatures(session, letter=letter, count=12, secret_key=SECRET,
                                 settings=settings, force=True)  # fmt: skip
    assert (again.first_position, again.last_position) == (54, 65)
    leaves = _check_log(session, settings, letter)
    assert len(leaves) == 65
    assert merkle.tree_hash(TableHashes(session, letter.id), 65) == merkle.root(leaves)
    tally = session.get_one(LetterTally, letter.id)
    head = session.get_one(LogHead, letter.id)
    assert (tally.verified_count, tally.last_position) == (65, 65)
    assert (head.size, head.adds, head.removes) == (65, 65, 0)


def test_without_settings_the_seeds_entries_are_queued_for_the_sequencer(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session, status=LetterStatus.DRAFT)
    seed.seed_signatures(session, letter=letter, count=40, secret_key=SECRET, random_seed=2)
    assert _queued(session, letter.id) == 40
    assert (
        session.scalar(select(LogCheckpoint.size).where(LogCheckpoint.letter_id == letter.id))
        is None
    )
    assert sequencer.drain(session, settings, letter_id=letter.id, limit=15) == 40
    assert len(_check_log(session, settings, letter)) == 40


def test_the_seed_is_refused_while_entries_it_cannot_sequence_are_queued(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    letter = make_letter(session)
    sign_and_confirm(session, letter, settings)
    monkeypatch.setattr(seed, "drain", lambda *args, **kwargs: 0)  # a sequencer that fails
    with pytest.raises(InvalidInput) as refused:
        seed.seed_signatures(session, letter=letter, count=5, secret_key=SECRET,
                             settings=settings, force=True)  # fmt: skip
    assert refused.value.fields == {"letter": "log entries queued"}
    assert "1 log entries that could not be sequenced" in refused.value.detail
    assert "undersigned log sequence --letter" in refused.value.detail
    assert session.scalar(select(LogEntry.id).where(LogEntry.seq.is_not(None))) is None


def test_the_fast_copy_lines_are_the_generic_ones() -> None:
    letter = SimpleNamespace(id=9, version=3, allow_anonymous=True, signers=SignerKind.PEOPLE,
                             field_rule=lambda field: FieldRule.OPTIONAL)  # fmt: skip
    rows = seed._Rows(cast(Letter, letter), secret_key=SECRET, start=1, count=3000, days=30,
                      now=datetime(2026, 11, 28, 3, 17, tzinfo=UTC),
                      rng=random.Random(8))  # fmt: skip
    chunk, entries = next(rows.chunks())
    assert any(row[18] is not None for row in chunk) and any(row[19] is None for row in chunk)
    assert [seed._signature_line(row) for row in chunk] == [seed._copy_line(row) for row in chunk]
    for seq in (None, 41):
        assert seed._entry_lines(9, seq, entries) == "".join(
            seed._copy_line(row) for row in seed._entry_rows(9, seq, entries)
        )


def test_appending_in_batches_is_sequencing_them(session: Session, settings: Settings) -> None:
    """The seed's way (entries in their places, `Appending` batch by batch) and the
    sequencer's (queued, numbered, sequenced) leave the same tree, checkpoints and head."""
    letter = make_letter(session)
    for _ in range(5):
        sign_and_confirm(session, letter, settings)
    sequencer.drain(session, settings, letter_id=letter.id, limit=2)  # sizes 2, 4, 5
    entries = _entries(session, letter.id)
    head = (5, 5, 0)
    leaves = [merkle.leaf_hash(leaf_bytes(entry)) for entry in entries]
    tree = sequencer.Appending(session, letter.id, head)
    more = [("add", "confirmed", datetime(2026, 11, 28, hour, tzinfo=UTC), f"{hour:064x}")
            for hour in range(9)]  # fmt: skip
    tree.append(more[:4])
    tree.append(more[4:])
    expected = leaves + sequencer.leaf_hashes(more)[0]
    assert (tree.size, tree.adds, tree.removes) == (14, 14, 0)
    assert [signed.root for signed in tree.signed] == [
        merkle.root(expected[:9]),
        merkle.root(expected),
    ]
    assert tree.start == merkle.stored_hash_count(5)
    assert len(tree.new) == merkle.stored_hash_count(14) - tree.start


def test_public_ids_and_commitments_rise_with_the_position_and_stay_random() -> None:
    letter = SimpleNamespace(id=9, version=3, allow_anonymous=True, signers=SignerKind.PEOPLE,
                             field_rule=lambda field: FieldRule.OPTIONAL)  # fmt: skip
    count = 9000
    rows = seed._Rows(cast(Letter, letter), secret_key=SECRET, start=1, count=count, days=30,
                      now=datetime(2026, 11, 28, 3, 17, tzinfo=UTC),
                      rng=random.Random(8))  # fmt: skip
    ids = rows.public_ids(4090, 10) + rows.public_ids(8190, 10)  # across the digit tables
    assert ids == sorted(ids) and len(set(ids)) == 20
    assert all(len(public_id) == 24 and public_id.startswith(rows.prefix) for public_id in ids)
    assert [public_id[7:12] for public_id in ids[:10]] == [
        seed._sortable(index) for index in range(4090, 4100)
    ]
    assert len({public_id[12:] for public_id in ids}) == 20
    commitments = rows.commitments(0, count)
    assert commitments == sorted(commitments) and len(set(commitments)) == count
    for index in (0, 1, 4444, count - 1):
        value = int(commitments[index], 16)
        assert (index << 256) // count <= value < ((index + 1) << 256) // count
    assert rows.commitments(5, 3) != commitments[5:8]  # drawn afresh
