"""The sequencer: queued entries get their places in the log, the tree and the signed
checkpoints follow them exactly, proofs from the service verify against the signed
roots (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import jobs
from app.config import Settings
from app.db import Database
from app.letters.models import Letter
from app.letters.service import signature_count
from app.mail.backends import make_backend
from app.organizers.service import SHELL
from app.signatures import manage
from app.signatures.models import RemovalReason
from app.signatures.moderation import (
    apply_bulk,
    parse_filter,
    preview_bulk,
    remove_signature,
    restore_signature,
)
from app.signlog import keys, sequencer, service
from app.signlog.entries import leaf_bytes
from app.signlog.models import LogCheckpoint, LogEntry, LogHead
from app.transparency import merkle
from app.transparency.note import open_checkpoint
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign, sign_and_confirm


def _entries(session: Session, letter_id: int) -> list[LogEntry]:
    return list(
        session.scalars(
            select(LogEntry)
            .where(LogEntry.letter_id == letter_id, LogEntry.seq.is_not(None))
            .order_by(LogEntry.seq)
        )
    )


def _queued(session: Session, letter_id: int) -> int:
    return service.unsequenced(session, letter_id=letter_id)


def _checkpoints(session: Session, letter_id: int) -> list[LogCheckpoint]:
    return list(
        session.scalars(
            select(LogCheckpoint)
            .where(LogCheckpoint.letter_id == letter_id)
            .order_by(LogCheckpoint.size)
        )
    )


def _check_log(session: Session, settings: Settings, letter: Letter) -> list[bytes]:
    """Every checkpoint of the letter: signed by the log's key for the letter's origin,
    its root that of the entries' first `size` leaves, its adds and removes theirs; the
    head equal to the last one. Returns the leaf hashes."""
    entries = _entries(session, letter.id)
    assert [entry.seq for entry in entries] == list(range(len(entries)))
    leaves = [merkle.leaf_hash(leaf_bytes(entry)) for entry in entries]
    checkpoints = _checkpoints(session, letter.id)
    assert checkpoints, "no checkpoint"
    for row in checkpoints:
        signed = open_checkpoint(
            row.note, keys.verifier(settings), origin=keys.origin(settings, letter.slug)
        )
        assert (signed.size, signed.root_hash) == (row.size, row.root)
        assert row.root == merkle.root(leaves[: row.size])
        adds = sum(entry.event == "add" for entry in entries[: row.size])
        assert (row.adds, row.removes) == (adds, row.size - adds)
    head = session.get_one(LogHead, letter.id)
    session.refresh(head)
    last = checkpoints[-1]
    assert (head.size, head.adds, head.removes) == (last.size, last.adds, last.removes)
    assert last.size == len(entries)
    return leaves


def test_one_pass_sequences_every_confirmation_and_signs_the_tree(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signatures = [sign_and_confirm(session, letter, settings) for _ in range(7)]
    assert _queued(session, letter.id) == 7
    assert not _checkpoints(session, letter.id)

    assert sequencer.sequence(session, settings, letter_id=letter.id) == 7

    assert _queued(session, letter.id) == 0
    leaves = _check_log(session, settings, letter)
    entries = _entries(session, letter.id)
    # One add per confirmation, in order, with the signature's own commitment.
    assert [(e.event, e.reason) for e in entries] == [("add", "confirmed")] * 7
    assert [e.commitment for e in entries] == [s.receipt_commitment for s in signatures]
    assert all(e.hour == s.verified_at.replace(minute=0, second=0, microsecond=0)
               for e, s in zip(entries, signatures, strict=True))  # fmt: skip
    (checkpoint,) = _checkpoints(session, letter.id)
    assert (checkpoint.size, checkpoint.adds, checkpoint.removes) == (7, 7, 0)
    assert checkpoint.root == merkle.root(leaves)
    latest = service.latest(session, settings, letter_id=letter.id, slug=letter.slug)
    assert (latest.size, latest.count, latest.root_hash) == (7, 7, merkle.root(leaves))
    assert latest.count == signature_count(session, letter_id=letter.id)


def test_removals_are_logged_with_their_reasons_and_commitments(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    withdrawn = sign_and_confirm(session, letter, settings)
    duplicate = sign_and_confirm(session, letter, settings)
    bots = [sign_and_confirm(session, letter, settings, email=f"b{i}@spam.example")
            for i in range(3)]  # fmt: skip
    kept = sign_and_confirm(session, letter, settings)
    assert sequencer.sequence(session, settings, letter_id=letter.id) == 6

    position = duplicate.position
    assert withdrawn.public_id and position
    token = manage.manage_token(settings, withdrawn.public_id)
    assert manage.withdraw(session, token=token, settings=settings)
    assert remove_signature(session, actor=SHELL, letter_id=letter.id, position=position,
                            reason=RemovalReason.DUPLICATE)  # fmt: skip
    assert restore_signature(session, actor=SHELL, letter_id=letter.id, position=position)
    found = parse_filter(domain="spam.example")
    preview = preview_bulk(session, letter_id=letter.id, found=found)
    bulk = apply_bulk(session, actor=SHELL, letter_id=letter.id, found=found,
                      as_of=preview.as_of, reason=RemovalReason.BOT,
                      expected=preview.count)  # fmt: skip
    assert bulk.removed == 3
    assert _queued(session, letter.id) == 6

    assert sequencer.sequence(session, settings, letter_id=letter.id) == 6

    _check_log(session, settings, letter)
    logged = [(e.event, e.reason, e.commitment) for e in _entries(session, letter.id)[6:]]
    assert logged[:3] == [
        ("remove", "withdrawn", withdrawn.receipt_commitment),
        ("remove", "duplicate", duplicate.receipt_commitment),
        ("add", "restored", duplicate.receipt_commitment),
    ]
    # The bulk removal: one entry per signature, each with the reason.
    assert sorted(logged[3:]) == sorted(("remove", "bot", b.receipt_commitment) for b in bots)
    latest = service.latest(session, settings, letter_id=letter.id, slug=letter.slug)
    assert (latest.size, latest.adds, latest.removes) == (12, 7, 5)
    assert latest.count == signature_count(session, letter_id=letter.id) == 2
    assert kept.receipt_commitment not in {c for _, _, c in logged}


def test_sizes_strictly_increase_and_an_empty_queue_signs_nothing(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    assert sequencer.sequence(session, settings, letter_id=letter.id) == 0
    assert not _checkpoints(session, letter.id)
    sizes = []
    for batch in (2, 1, 3):
        for _ in range(batch):
            sign_and_confirm(session, letter, settings)
        assert sequencer.sequence(session, settings, letter_id=letter.id) == batch
        sizes.append(_checkpoints(session, letter.id)[-1].size)
        # Nothing queued since: no new checkpoint.
        assert sequencer.sequence(session, settings, letter_id=letter.id) == 0
    assert sizes == [2, 3, 6]
    assert [row.size for row in _checkpoints(session, letter.id)] == [2, 3, 6]
    _check_log(session, settings, letter)


def test_a_batch_limit_splits_the_queue_and_every_checkpoint_stays_right(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    other = make_letter(session)
    for _ in range(10):
        sign_and_confirm(session, letter, settings)
    sign_and_confirm(session, other, settings)
    passes = []
    while done := sequencer.sequence(session, settings, letter_id=letter.id, limit=3):
        passes.append(done)
    assert passes == [3, 3, 3, 1]
    assert [row.size for row in _checkpoints(session, letter.id)] == [3, 6, 9, 10]
    _check_log(session, settings, letter)
    # The other letter's entry is still queued: one log per letter.
    assert _queued(session, other.id) == 1
    queued = sequencer.queued_letters(session)  # (other tests' letters may be queued too)
    assert other.id in queued and letter.id not in queued
    with pytest.raises(ValueError, match="at least one"):
        sequencer.sequence(session, settings, letter_id=letter.id, limit=0)


def test_drain_sequences_a_long_queue_in_batches(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    for _ in range(11):
        sign_and_confirm(session, letter, settings)
    assert sequencer.drain(session, settings, letter_id=letter.id, limit=4) == 11
    assert [row.size for row in _checkpoints(session, letter.id)] == [4, 8, 11]
    _check_log(session, settings, letter)


def test_proofs_from_the_service_verify_against_the_signed_roots(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    for batch in (1, 4, 2, 6):
        for _ in range(batch):
            sign_and_confirm(session, letter, settings)
        sequencer.sequence(session, settings, letter_id=letter.id)
    leaves = _check_log(session, settings, letter)
    checkpoints = _checkpoints(session, letter.id)
    latest = checkpoints[-1].size
    assert [row.size for row in checkpoints] == [1, 5, 7, 13]
    for row in checkpoints:
        for index in range(row.size):
            proof = service.inclusion_proof(session, letter_id=letter.id, index=index,
                                            size=row.size, latest_size=latest)  # fmt: skip
            merkle.verify_inclusion(leaves[index], index, row.size, proof, row.root)
    for first in checkpoints:
        for second in checkpoints:
            if first.size <= second.size:
                proof = service.consistency_proof(
                    session, letter_id=letter.id, first=first.size, second=second.size,
                    latest_size=latest,
                )  # fmt: skip
                merkle.verify_consistency(first.size, second.size, first.root, second.root, proof)
    # A proof against a root the log never signed fails.
    proof = service.inclusion_proof(
        session, letter_id=letter.id, index=0, size=5, latest_size=latest
    )
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaves[0], 0, 5, proof, checkpoints[2].root)


def test_an_entry_already_numbered_stops_the_batch(session: Session, settings: Settings) -> None:
    """The guarded UPDATE's numbers must follow the head: a head that fell behind its
    entries (a bug, or a hand edit) makes the sequencer refuse, not fork the log."""
    letter = make_letter(session)
    for _ in range(3):
        sign_and_confirm(session, letter, settings)
    sequencer.sequence(session, settings, letter_id=letter.id)
    sign_and_confirm(session, letter, settings)
    session.execute(text("UPDATE log_heads SET size = 1 WHERE letter_id = :l"), {"l": letter.id})
    with pytest.raises(IntegrityError), session.begin_nested():
        sequencer.sequence(session, settings, letter_id=letter.id)
    assert _queued(session, letter.id) == 1


# --- Committed work: passes over every letter, the worker, PostgreSQL's SKIP LOCKED ----


def _confirm_some(database: Database, settings: Settings, count: int, **letter: object) -> int:
    with database.write() as session:
        made = make_letter(session, **letter)
        for _ in range(count):
            sign_and_confirm(session, made, settings)
        return made.id


def test_sequence_all_takes_every_letter_in_its_own_transaction(
    tmp_path: Path, clean_database: Database
) -> None:
    settings = make_settings(tmp_path, clean_database.url)
    first = _confirm_some(clean_database, settings, 3)
    second = _confirm_some(clean_database, settings, 2)
    _confirm_some(clean_database, settings, 0)

    assert sequencer.sequence_all(clean_database, settings) == 5
    assert sequencer.sequence_all(clean_database, settings) == 0
    with clean_database.read() as session:
        assert sequencer.queued_letters(session) == []
        for letter_id, size in ((first, 3), (second, 2)):
            letter = session.get_one(Letter, letter_id)
            _check_log(session, settings, letter)
            assert _checkpoints(session, letter_id)[-1].size == size
            assert signature_count(session, letter_id=letter_id) == size


def test_a_second_sequencer_skips_a_letter_another_holds(
    tmp_path: Path, postgres: Database
) -> None:
    """PostgreSQL: while one transaction sequences a letter, another passes over it at
    once (SKIP LOCKED) and takes the next letter; nothing is sequenced twice."""
    from tests.support.databases import truncate

    truncate(postgres)
    settings = make_settings(tmp_path, postgres.url)
    busy = _confirm_some(postgres, settings, 2)
    free = _confirm_some(postgres, settings, 1)
    with postgres.write() as holder:
        assert sequencer.sequence(holder, settings, letter_id=busy) == 2
        started = time.monotonic()
        done = sequencer.sequence_letters(postgres, settings)
        assert time.monotonic() - started < 5
        assert [(d.letter_id, d.appended) for d in done] == [(free, 1)]
    assert sequencer.sequence_all(postgres, settings) == 0
    with postgres.read() as session:
        for letter_id in (busy, free):
            _check_log(session, settings, session.get_one(Letter, letter_id))


def test_the_worker_sequences_within_the_interval_and_survives_a_failing_pass(
    tmp_path: Path, clean_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, clean_database.url, log_sequence_seconds=0.2)
    letter_id = _confirm_some(clean_database, settings, 3)
    stop = threading.Event()
    worker = threading.Thread(
        target=jobs.run_worker,
        args=(clean_database, make_backend(settings)),
        kwargs={"settings": settings, "stop": stop, "poll_seconds": 0.05},
    )
    failing = {"left": 2}
    real = sequencer.sequence_letters

    def flaky(database: Database, settings: Settings) -> list[sequencer.Sequenced]:
        if failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("the database went away")
        return real(database, settings)

    caplog.set_level(logging.ERROR, logger="undersigned.jobs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sequencer, "sequence_letters", flaky)
        worker.start()
        try:
            deadline = time.monotonic() + 20
            while True:
                with clean_database.read() as session:
                    if _queued(session, letter_id) == 0:
                        break
                assert time.monotonic() < deadline, "the worker did not sequence"
                time.sleep(0.05)
            # Mail went on meanwhile: a new submission gets its email.
            with clean_database.write() as session:
                pending_id = sign(session, session.get_one(Letter, letter_id), settings).id
            deadline = time.monotonic() + 20
            while True:
                with clean_database.read() as session:
                    sent = session.scalar(
                        text("SELECT notified_at FROM pending_signatures WHERE id = :i"),
                        {"i": pending_id},
                    )
                if sent is not None:
                    break
                assert time.monotonic() < deadline, "the worker sent no email"
                time.sleep(0.05)
        finally:
            stop.set()
            worker.join(timeout=20)
    assert failing["left"] == 0
    failures = [r for r in caplog.records if "log sequencing failed" in r.getMessage()]
    assert len(failures) == 2
    with clean_database.read() as session:
        _check_log(session, settings, session.get_one(Letter, letter_id))


def test_no_personal_data_reaches_the_log(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature = sign_and_confirm(
        session, letter, settings, name="Ada Lovelace", email="ada@example.org"
    )
    sequencer.sequence(session, settings, letter_id=letter.id)
    (entry,) = _entries(session, letter.id)
    leaf = leaf_bytes(entry).decode()
    (checkpoint,) = _checkpoints(session, letter.id)
    for secret in ("Ada", "Lovelace", "ada@", "example.org", signature.email_hash,
                   signature.public_id or "-"):  # fmt: skip
        assert secret not in leaf and secret not in checkpoint.note
    assert leaf.split(" ")[:3] == ["undersigned-log/v1", "add", "confirmed"]
    assert leaf.split(" ")[4] == signature.receipt_commitment


def test_the_command_sequences_every_letter_or_one(
    tmp_path: Path, clean_database: Database
) -> None:
    from tests.support.config import TEST_SECRET
    from tests.support.processes import clean_env, run_in_process

    settings = make_settings(tmp_path, clean_database.url)
    first = _confirm_some(clean_database, settings, 3)
    second = _confirm_some(clean_database, settings, 2)
    with clean_database.read() as session:
        slugs = [session.get_one(Letter, letter_id).slug for letter_id in (first, second)]
    env = clean_env(database_url=clean_database.url, data_dir=str(tmp_path),
                    secret_key=TEST_SECRET, base_url="http://testserver")  # fmt: skip

    def undersigned(*args: str) -> tuple[int, str, str]:
        done = run_in_process(["log", "sequence", *args], cwd=tmp_path, env=env)
        return done.returncode, done.stdout, done.stderr

    assert undersigned("--letter", "no-such-letter")[0] == 1
    assert undersigned("--letter", slugs[1]) == (
        0,
        f"{slugs[1]}: 2 entries appended; log size 2.\n",
        "",
    )
    assert undersigned() == (0, f"{slugs[0]}: 3 entries appended; log size 3.\n", "")
    assert undersigned() == (0, "Nothing was queued.\n", "")
    with clean_database.read() as session:
        for letter_id in (first, second):
            _check_log(session, settings, session.get_one(Letter, letter_id))
