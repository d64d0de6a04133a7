"""`undersigned log verify` (app/signlog/verify.py) against the real app served on a
loopback port: a clean log verifies; a changed entry, a rewritten history, a count that
disagrees with the log, a wrong key and another letter's checkpoint are each caught.

The log is made by the real flows (confirmations, a withdrawal, removals and a restore,
each queuing its entry in the transaction that moves the count) and sequenced by the
worker's sequencer; tampering is done in the database behind the server's back,
as an operator (or an intruder) could."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.sql import Executable

from app.config import Settings
from app.db import Database, utcnow
from app.letters.models import Letter
from app.letters.service import add_to_tally
from app.organizers.service import SHELL
from app.signatures.manage import manage_token, withdraw
from app.signatures.models import RemovalReason, Signature
from app.signatures.moderation import remove_signature, restore_signature
from app.signlog import keys
from app.signlog.entries import new_receipt
from app.signlog.models import LogCheckpoint, LogEntry, LogHash, LogHead
from app.signlog.sequencer import sequence_all
from app.signlog.verify import (
    Client,
    FetchError,
    Report,
    UrllibClient,
    UsageError,
    parse_letter_url,
    verify_letter,
)
from app.transparency import merkle
from app.transparency.note import Checkpoint, Signer, sign_checkpoint
from tests.conftest import sqlite_copy
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.live import serve
from tests.support.ports import free_socket
from tests.support.processes import clean_env, run_in_process


@dataclass
class Site:
    database: Database
    settings: Settings
    base_url: str
    letter: Letter
    other: Letter
    cwd: Path

    @property
    def url(self) -> str:
        return f"{self.base_url}/letters/{self.letter.slug}"

    @property
    def key(self) -> str:
        return keys.verifier(self.settings).vkey()

    def confirm(self, how_many: int, letter: Letter | None = None) -> None:
        with self.database.write() as session:
            for _ in range(how_many):
                sign_and_confirm(session, letter or self.letter, self.settings)

    def sequence(self) -> None:
        """One pass of the worker's sequencer (everything queued: small batches)."""
        sequence_all(self.database, self.settings)

    def verify(self, since: str | None = None, *, key: str | None = None) -> Report:
        return verify_letter(self.url, key or self.key, since)

    def cli(self, *args: str) -> tuple[int, str, str]:
        done = run_in_process(["log", "verify", *args], cwd=self.cwd, env=clean_env())
        return done.returncode, done.stdout, done.stderr

    def execute(self, statement: Executable) -> None:
        with self.database.write() as session:
            session.execute(statement)

    def letter_signatures(self) -> list[tuple[str, int]]:
        """(public_id, position) of the letter's signatures, in list order."""
        with self.database.read() as session:
            rows = session.execute(
                select(Signature.public_id, Signature.position)
                .where(Signature.letter_id == self.letter.id)
                .order_by(Signature.position)
            ).all()
        return [(public_id, position) for public_id, position in rows if public_id and position]


@contextmanager
def live_site(database: Database, tmp_path: Path) -> Iterator[Site]:
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database.url, base_url=base_url)
    with database.write() as session:
        letter = make_letter(session)
        other = make_letter(session)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with serve(sock, settings):
        yield Site(database, settings, base_url, letter, other, cwd)


def _made(site: Site) -> Site:
    """A letter with 6 confirmations, a withdrawal, two removals and a restore (10
    entries, counting 4), sequenced in two passes; and a second letter with a log of
    its own (2 entries)."""
    site.confirm(4)
    site.confirm(2, site.other)
    site.sequence()
    site.confirm(2)
    first, second, third = site.letter_signatures()[:3]
    with site.database.write() as session:
        withdraw(session, token=manage_token(site.settings, first[0]), settings=site.settings)
        for (_, position), reason in (
            (second, RemovalReason.DUPLICATE),
            (third, RemovalReason.BOT),
        ):
            remove_signature(
                session, actor=SHELL, letter_id=site.letter.id, position=position, reason=reason
            )
        restore_signature(session, actor=SHELL, letter_id=site.letter.id, position=third[1])
    site.sequence()
    return site


@pytest.fixture
def site(sqlite_template: Path, tmp_path: Path) -> Iterator[Site]:
    """The log of `_made`, on SQLite (most tests: the verifier sees HTTP only)."""
    database = Database(sqlite_copy(sqlite_template, tmp_path))
    try:
        with live_site(database, tmp_path) as site:
            yield _made(site)
    finally:
        database.dispose()


@pytest.fixture
def any_site(clean_database: Database, tmp_path: Path) -> Iterator[Site]:
    """The log of `_made`, on SQLite and on PostgreSQL."""
    with live_site(clean_database, tmp_path) as site:
        yield _made(site)


def letter_log(site: Site) -> list[tuple[int, str, str]]:
    with site.database.read() as session:
        return [
            (seq, event, reason)
            for seq, event, reason in session.execute(
                select(LogEntry.seq, LogEntry.event, LogEntry.reason)
                .where(LogEntry.letter_id == site.letter.id)
                .order_by(LogEntry.seq)
            )
            if seq is not None
        ]


# --- a clean log ---


def test_a_clean_log_verifies_and_its_count_is_the_tally(any_site: Site) -> None:
    site = any_site
    assert [event for _, event, _ in letter_log(site)] == ["add"] * 6 + ["remove"] * 3 + ["add"]
    report = site.verify()
    assert report.problems == []
    assert report.ok
    assert (report.size, report.adds, report.removes, report.count) == (10, 7, 3, 4)
    assert report.tally == 4
    assert report.unsequenced == 0
    assert report.inclusion_checked == 3
    assert report.notes == []
    with site.database.read() as session:
        signed = session.scalar(
            select(LogCheckpoint.root)
            .where(LogCheckpoint.letter_id == site.letter.id)
            .order_by(LogCheckpoint.size.desc())
            .limit(1)
        )
    assert report.root_hash == signed


def test_the_command_verifies_saves_and_later_checks_the_log_only_grew(
    any_site: Site, tmp_path: Path
) -> None:
    site = any_site
    saved = tmp_path / "checkpoint.txt"
    status, out, err = site.cli(site.url, "--key", site.key, "--save", str(saved))
    assert (status, err) == (0, "")
    assert "Size:  10 entries" in out
    assert "Count: 4 (7 added, 3 taken away); public count 4" in out
    assert "OK (3 inclusion proofs checked too)" in out
    note = saved.read_text()
    assert note.startswith(f"{parse_letter_url(site.url).origin}\n10\n")
    root = note.split("\n")[2]
    assert f"Root:  {root}" in out

    site.confirm(3)
    site.sequence()
    key_file = tmp_path / "key.txt"
    key_file.write_text(site.key + "\n")
    status, out, err = site.cli(site.url, "--key-file", str(key_file), "--since", str(saved))
    assert (status, err) == (0, "")
    assert "Size:  13 entries" in out
    assert "Since: it extends the saved checkpoint of 10 entries" in out
    assert "Count: 7 (10 added, 3 taken away); public count 7" in out
    # The same size again: nothing to prove but the same root.
    assert site.verify(since=site.verify().note).since_size == 13


def test_changes_not_yet_sequenced_are_said_and_not_a_problem(site: Site) -> None:
    site.confirm(2)
    report = site.verify()
    assert report.ok, report.problems
    assert (report.count, report.tally, report.unsequenced) == (4, 6, 2)
    assert report.notes == [
        "The public count is 6, 2 more than the log's: 2 changes were not yet sequenced. "
        "Check again in a few seconds."
    ]


def test_an_empty_log_verifies(clean_database: Database, tmp_path: Path) -> None:
    with live_site(clean_database, tmp_path) as site:
        report = site.verify()
    assert report.ok, report.problems
    assert (report.size, report.count, report.tally, report.root_hash) == (
        0,
        0,
        0,
        merkle.EMPTY_ROOT,
    )


def test_restoring_a_signature_removed_before_the_log_began_is_no_problem(
    clean_database: Database, tmp_path: Path
) -> None:
    """Migration 0011 logged only the signatures then counted: one removed before it has
    a commitment and no entry, so its restore is the first entry it has."""
    with live_site(clean_database, tmp_path) as site:
        site.confirm(3)
        (_, position), *_ = site.letter_signatures()
        with site.database.write() as session:
            commitment = session.scalar(
                select(Signature.receipt_commitment).where(
                    Signature.letter_id == site.letter.id, Signature.position == position
                )
            )
            # As the log's beginning found it: removed, uncounted, never logged.
            session.execute(delete(LogEntry).where(LogEntry.commitment == commitment))
            session.execute(
                update(Signature)
                .where(Signature.letter_id == site.letter.id, Signature.position == position)
                .values(status="removed", removed_reason=RemovalReason.DUPLICATE)
            )
            add_to_tally(session, letter_id=site.letter.id, delta=-1)
        with site.database.write() as session:
            assert restore_signature(
                session, actor=SHELL, letter_id=site.letter.id, position=position
            )
        site.sequence()
        report = site.verify()
    assert report.problems == []
    assert (report.size, report.count, report.tally) == (3, 3, 3)
    assert report.notes == [
        "1 restored signatures had been removed before the log began (their removal is not in it)."
    ]


# --- tampering, each caught ---


@pytest.mark.parametrize("column", ["commitment", "reason", "hour"])
def test_a_changed_entry_is_caught(site: Site, column: str) -> None:
    changed: dict[str, Any] = {
        "commitment": new_receipt()[1],
        "reason": "restored",  # entry 1: a confirmation made a restore
        "hour": utcnow().replace(year=2020, minute=0, second=0, microsecond=0),
    }
    site.execute(
        update(LogEntry)
        .where(LogEntry.letter_id == site.letter.id, LogEntry.seq == 1)
        .values({column: changed[column]})
    )
    report = site.verify()
    assert not report.ok
    assert any(p.startswith("The entries do not rebuild the signed root") for p in report.problems)
    status, out, _ = site.cli(site.url, "--key", site.key)
    assert status == 1
    assert "PROBLEM: The entries do not rebuild the signed root" in out
    assert "\nOK" not in out


def test_an_entry_taken_out_and_the_rest_moved_up_is_caught(site: Site) -> None:
    """Deleting the withdrawal (entry 6) and renumbering: the signed root gives it away,
    and so do the inclusion proofs (the stored hashes are the old tree's)."""
    site.execute(delete(LogEntry).where(LogEntry.letter_id == site.letter.id, LogEntry.seq == 6))
    site.execute(
        update(LogEntry)
        .where(LogEntry.letter_id == site.letter.id, LogEntry.seq > 6)
        .values(seq=LogEntry.seq - 1)
    )
    site.execute(
        insert(LogEntry).values(  # a harmless last entry, so the size holds
            letter_id=site.letter.id,
            seq=9,
            event="add",
            reason="confirmed",
            hour=utcnow().replace(minute=0, second=0, microsecond=0),
            commitment=new_receipt()[1],
        )
    )
    report = site.verify()
    assert any(p.startswith("The entries do not rebuild the signed root") for p in report.problems)
    assert any("inclusion proof fails" in p for p in report.problems)


def test_a_removal_of_a_signature_never_counted_is_caught(site: Site) -> None:
    """A log rebuilt (and signed) with a removal whose commitment no add ever had: the
    tree is consistent, the story is not."""
    site.execute(
        update(LogEntry)
        .where(LogEntry.letter_id == site.letter.id, LogEntry.seq.is_not(None))
        .values(seq=None)
    )
    site.execute(
        update(LogEntry)
        .where(LogEntry.letter_id == site.letter.id, LogEntry.reason == "withdrawn")
        .values(commitment=new_receipt()[1])
    )
    for table in (LogHash, LogCheckpoint, LogHead):
        site.execute(delete(table).where(table.letter_id == site.letter.id))
    site.sequence()
    report = site.verify()
    assert report.problems == ["Entry 6 removes (withdrawn) a signature that was not counted."]


def rebuild(site: Site, *, change: int | None, keep: int | None = None) -> None:
    """The letter's log thrown away and made again from its entries (entry `change`
    with another commitment; only `keep` of them), then signed with the same key.
    Entry 3 is a confirmation nothing later refers to: its change leaves a log that
    holds together on its own."""
    with site.database.write() as session:
        rows = session.execute(
            select(LogEntry.event, LogEntry.reason, LogEntry.hour, LogEntry.commitment)
            .where(LogEntry.letter_id == site.letter.id)
            .order_by(LogEntry.seq)
        ).all()
        for table in (LogEntry, LogHash, LogCheckpoint, LogHead):
            session.execute(delete(table).where(table.letter_id == site.letter.id))
        values = [row._asdict() for row in rows[:keep]]
        if change is not None:
            values[change]["commitment"] = new_receipt()[1]
        session.execute(
            insert(LogEntry),
            [{"letter_id": site.letter.id, "seq": None, **value} for value in values],
        )
    site.sequence()


def test_a_rewritten_history_is_caught_with_the_saved_checkpoint(
    any_site: Site, tmp_path: Path
) -> None:
    site = any_site
    saved = tmp_path / "checkpoint.txt"
    assert site.cli(site.url, "--key", site.key, "--save", str(saved))[0] == 0
    rebuild(site, change=3)
    site.confirm(1)
    site.sequence()

    alone = site.verify()
    assert alone.ok, alone.problems  # on its own, the new log holds together
    report = site.verify(saved.read_text())
    assert report.since_size is None
    assert any(
        p.startswith(
            "The log's history was rewritten: the latest checkpoint (11 entries) does not "
            "extend the saved one (10 entries)"
        )
        for p in report.problems
    ), report.problems
    assert (
        "The log's history was rewritten: its first 10 entries no longer rebuild the root "
        "of the saved checkpoint."
    ) in report.problems
    status, out, _ = site.cli(site.url, "--key", site.key, "--since", str(saved))
    assert status == 1
    assert "PROBLEM: The log's history was rewritten" in out


def test_a_log_that_shrank_is_caught(site: Site) -> None:
    saved = site.verify().note
    rebuild(site, change=None, keep=6)
    site.execute(
        text("UPDATE letter_tallies SET verified_count = 6 WHERE letter_id = :id").bindparams(
            id=site.letter.id
        )
    )
    report = site.verify(saved)
    assert report.problems == [
        "The log shrank: the saved checkpoint has 10 entries, the latest only 6. "
        "Its history was rewritten."
    ]


def test_the_same_size_with_another_root_is_caught(site: Site) -> None:
    saved = site.verify().note
    rebuild(site, change=3)
    report = site.verify(saved)
    assert (
        "Two different signed roots for the same size 10: the log's history was rewritten."
    ) in report.problems


def test_a_count_that_disagrees_with_the_log_is_caught(site: Site) -> None:
    site.execute(
        text(
            "UPDATE letter_tallies SET verified_count = verified_count + 3 WHERE letter_id = :id"
        ).bindparams(id=site.letter.id)
    )
    report = site.verify()
    assert report.problems == [
        "The public count (7) disagrees with the log (4) by +3, more than the 0 changes "
        "not yet sequenced."
    ]
    saved = site.cwd / "checkpoint.txt"
    status, out, _ = site.cli(site.url, "--key", site.key, "--save", str(saved))
    assert status == 1
    assert "Count: 4 (7 added, 3 taken away); public count 7" in out
    assert "PROBLEM: The public count (7) disagrees with the log (4)" in out
    assert f"Nothing saved to {saved}: the log did not verify." in out
    assert not saved.exists()


def test_a_count_off_by_more_than_the_queue_is_caught(site: Site) -> None:
    site.confirm(1)  # one change queued: a difference of one would be explained
    site.execute(
        text(
            "UPDATE letter_tallies SET verified_count = verified_count + 1 WHERE letter_id = :id"
        ).bindparams(id=site.letter.id)
    )
    report = site.verify()
    assert report.problems == [
        "The public count (6) disagrees with the log (4) by +2, more than the 1 changes "
        "not yet sequenced."
    ]


def test_a_checkpoint_whose_counts_disagree_with_its_entries_is_caught(site: Site) -> None:
    site.execute(
        update(LogCheckpoint)
        .where(LogCheckpoint.letter_id == site.letter.id, LogCheckpoint.size == 10)
        .values(adds=LogCheckpoint.adds + 1)
    )
    report = site.verify()
    assert report.problems == [
        "The checkpoint says 8 adds - 3 removes = 5; its entries hold 7 - 3 = 4."
    ]


# --- keys and origins ---


def test_another_key_is_refused(site: Site) -> None:
    other = Signer.generate("impostor.example").verifier.vkey()
    report = site.verify(key=other)
    assert report.problems == [
        f"The latest checkpoint is not signed by the key {other} (a different key signed it)."
    ]
    assert report.note is None
    assert report.count is None
    status, out, _ = site.cli(site.url, "--key", other)
    assert status == 1
    assert "PROBLEM: The latest checkpoint is not signed by the key" in out


def test_a_checkpoint_signed_by_another_key_with_our_name_is_refused(site: Site) -> None:
    """The server's key name and ID, another private key: the signature fails."""
    honest = keys.verifier(site.settings)
    forger = Signer.generate(honest.name)
    with site.database.write() as session:
        row = session.get(LogCheckpoint, (site.letter.id, 10))
        assert row is not None
        text_part = row.note[: row.note.index("\n\n") + 1]
        signature = forger.sign(text_part.encode())
        forged = base64.b64encode(honest.key_id.to_bytes(4, "big") + signature).decode()
        row.note = f"{text_part}\n\u2014 {honest.name} {forged}\n"
    report = site.verify()
    assert report.problems == [
        f"The latest checkpoint has an invalid signature by the key {honest.vkey()}."
    ]


class Swapping:
    """Answers requests for one URL with another's answer (a server serving another
    letter's checkpoint)."""

    def __init__(self, swap: dict[str, str]) -> None:
        self.swap = swap
        self.inner: Client = UrllibClient()

    def get(self, url: str, *, fresh: bool = False) -> bytes:
        return self.inner.get(self.swap.get(url, url), fresh=fresh)


def test_another_letters_checkpoint_is_refused(site: Site) -> None:
    other_url = f"{site.base_url}/api/v1/letters/{site.other.slug}/log/checkpoint"
    ours = parse_letter_url(site.url)
    client = Swapping({f"{ours.log_api}/checkpoint": other_url})
    report = verify_letter(site.url, site.key, client=client)
    other_origin = keys.origin(site.settings, site.other.slug)
    assert report.problems == [
        f"The latest checkpoint is signed for the log {other_origin!r}, not this letter's "
        f"({ours.origin!r})."
    ]


def test_a_saved_checkpoint_of_another_letter_or_key_is_a_problem(site: Site) -> None:
    other = verify_letter(f"{site.base_url}/letters/{site.other.slug}", site.key)
    assert other.ok and other.note is not None
    report = site.verify(other.note)
    assert report.problems[0].startswith("The saved checkpoint is signed for the log")
    foreign = sign_checkpoint(
        Checkpoint(parse_letter_url(site.url).origin, 3, merkle.EMPTY_ROOT),
        Signer.generate("elsewhere.example"),
    )
    report = site.verify(foreign)
    assert report.problems[0].startswith("The saved checkpoint is not signed by the key")


# --- the command's exit statuses ---


def test_without_a_key_the_command_says_it_trusts_the_server(site: Site) -> None:
    status, out, err = site.cli(site.url)
    assert status == 0
    assert "OK" in out
    assert "WARNING: no --key: checking with the key the server itself publishes" in err
    assert site.key in err


def test_usage_and_network_errors_exit_2(site: Site, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(site.key)
    both = site.cli(site.url, "--key", site.key, "--key-file", str(key_file))
    assert both[0] == 2 and "--key or --key-file" in both[2]
    assert site.cli("https://example.org/about", "--key", site.key)[0] == 2
    bad_key = site.cli(site.url, "--key", "not-a-key")
    assert bad_key[0] == 2 and "not a log key" in bad_key[2]
    missing = site.cli(site.url, "--key", site.key, "--since", str(tmp_path / "nothing"))
    assert missing[0] == 2
    unknown = site.cli(f"{site.base_url}/letters/no-such-letter", "--key", site.key)
    assert unknown[0] == 2 and "HTTP 404" in unknown[2]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    nobody = site.cli(f"http://127.0.0.1:{port}/letters/x", "--key", site.key)
    assert nobody[0] == 2 and "Could not check the log" in nobody[2]


def test_the_library_raises_for_usage_and_fetch_errors(site: Site) -> None:
    with pytest.raises(UsageError):
        verify_letter("ftp://example.org/letters/x", site.key)
    with pytest.raises(UsageError):
        verify_letter(site.url, "nope")
    with pytest.raises(FetchError, match="HTTP 404"):
        verify_letter(f"{site.base_url}/letters/no-such-letter", site.key)


def test_letter_urls() -> None:
    found = parse_letter_url("https://example.org/petitions/letters/ice-out/")
    assert found.site == "https://example.org/petitions"
    assert found.origin == "example.org/petitions/letters/ice-out"
    assert found.log_api == "https://example.org/petitions/api/v1/letters/ice-out/log"
    assert found.key_url == "https://example.org/petitions/.well-known/undersigned-log-key"
    for url in ("example.org/letters/x", "https://example.org/letters/", "https://x/letters/A"):
        with pytest.raises(UsageError):
            parse_letter_url(url)


def test_the_tally_is_read_from_the_letters_api(site: Site) -> None:
    with site.database.read() as session:
        counted = session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == site.letter.id, Signature.status == "verified")
        )
    assert site.verify().tally == counted == 4
