"""`undersigned dev seed`: test and benchmark data in bulk, with the tally exact, the
rows shaped like confirmed signatures, and search working (both databases)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.errors import InvalidInput
from app.letters.badges import earns_badge
from app.letters.models import FieldRule, Letter, LetterStatus, LetterTally
from app.letters.service import signature_count
from app.signatures import seed
from app.signatures.addresses import email_hash, email_hasher
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus
from app.signatures.service import list_public_signatures
from app.signlog import service as log_service
from app.signlog.models import LogEntry
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.processes import clean_env, run_in_process

SECRET = "seed-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
N = 2_000


def _cli(tmp_path: Path, database: Database) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = clean_env(database_url=database.url, data_dir=str(tmp_path / "data"), secret_key=SECRET)

    def undersigned(*args: str) -> subprocess.CompletedProcess[str]:
        return run_in_process(args, cwd=tmp_path, env=env)

    return undersigned


def _rows(session: Session, letter_id: int) -> list[Signature]:
    return list(
        session.scalars(
            select(Signature).where(Signature.letter_id == letter_id).order_by(Signature.position)
        )
    )


@pytest.mark.slow
def test_seed_continues_after_real_signatures_and_keeps_the_tally_exact(
    tmp_path: Path, clean_database: Database
) -> None:
    settings = make_settings(tmp_path, clean_database.url, secret_key=SECRET)
    with clean_database.write() as session:
        letter = make_letter(session, slug="seeded", field_comment=FieldRule.OPTIONAL)
        real = [sign_and_confirm(session, letter, settings) for _ in range(2)]
        letter_id = letter.id
    undersigned = _cli(tmp_path, clean_database)

    done = undersigned("dev", "seed", "--letter", "seeded", "--signatures", str(N), "--force",
                       "--random-seed", "7")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{N:,} signatures added (positions 3 to {N + 2:,})" in done.stdout
    assert f"tally {N + 2:,}" in done.stdout
    check = undersigned("check")
    assert check.returncode == 0, check.stdout
    assert "0 differ" in check.stdout
    # The signature log: a commitment and an add per seeded row, all sequenced (the two
    # real confirmations' queued entries first), in list order, in checkpoints of a batch.
    with clean_database.read() as session:
        latest = log_service.latest(session, settings, letter_id=letter_id, slug="seeded")
        assert (latest.size, latest.count) == (N + 2, N + 2)
        assert log_service.unsequenced(session, letter_id=letter_id) == 0
        commitments = dict(
            session.execute(
                select(Signature.position, Signature.receipt_commitment).where(
                    Signature.letter_id == letter_id
                )
            ).all()
        )
        logged = session.execute(
            select(LogEntry.commitment, LogEntry.event, LogEntry.reason)
            .where(LogEntry.letter_id == letter_id)
            .order_by(LogEntry.seq)
        ).all()
        assert [entry.commitment for entry in logged] == [
            commitments[position] for position in range(1, N + 3)
        ]
        assert {(entry.event, entry.reason) for entry in logged} == {("add", "confirmed")}
        assert len(set(commitments.values())) == N + 2

    with clean_database.read() as session:
        assert signature_count(session, letter_id=letter_id) == N + 2
        tally = session.get_one(LetterTally, letter_id)
        assert tally.last_position == N + 2
        rows = _rows(session, letter_id)
        assert [row.position for row in rows] == list(range(1, N + 3))
        assert {row.email_hash for row in rows[:2]} == {row.email_hash for row in real}
        seeded = rows[2:]
        assert all(row.status == SignatureStatus.VERIFIED and not row.hidden for row in seeded)
        assert len({row.public_id for row in rows}) == N + 2
        assert len({row.email_hash for row in rows}) == N + 2
        # Keyed hashes computed like real ones: a kept address hashes to its row's hash.
        kept = [row for row in seeded if row.email is not None]
        assert len(kept) > N // 10
        assert all(row.email_hash == email_hash(SECRET, letter_id, row.email or "") for row in kept)
        assert all(row.contact_ok for row in kept)
        # Realistic and varied, within the privacy rules of a confirmed signature.
        anonymous = [row for row in seeded if row.display == SignatureDisplay.ANONYMOUS]
        assert N // 40 < len(anonymous) < N // 5
        assert all(not (r.name or r.title or r.organization or r.city or r.email)
                   for r in anonymous)  # fmt: skip
        assert all(r.email_domain == "" for r in anonymous if not r.show_domain)
        public = [row for row in seeded if row.display == SignatureDisplay.PUBLIC]
        assert len({row.name for row in public}) > 500
        assert len({row.organization for row in public}) > 10
        assert len({row.city for row in public}) > 10
        assert len({row.title for row in public}) > 10
        badges = [row for row in seeded if row.show_domain]
        assert badges and all(earns_badge(row.email_domain) for row in badges)
        thresholds = [row for row in seeded if row.name_threshold is not None]
        assert thresholds and all(row.show_domain for row in thresholds)
        assert any(row.comment for row in seeded)
        # Confirmed over the past 30 days, in the order of their positions.
        times = [row.verified_at for row in seeded]
        assert times == sorted(times)
        assert utcnow() - timedelta(days=31) < times[0] < times[-1] <= utcnow()
        assert times[-1] - times[0] > timedelta(days=29)

        # Search finds a seeded name (SQLite: through the FTS triggers).
        name = public[N // 2].name
        found, _ = list_public_signatures(session, letter_id=letter_id, query=name, limit=100)
        assert name in {item.name for item in found}
        surname = name.split()[-1]
        expected = sum(
            1
            for row in public
            if row.name_threshold is None and surname.lower() in row.name.lower()
        )
        found, _ = list_public_signatures(session, letter_id=letter_id, query=surname, limit=100)
        assert len(found) >= min(expected, 100) > 0

    again = undersigned("dev", "seed", "--letter", "seeded", "--signatures", "10", "--force")
    assert again.returncode == 0, again.stderr
    assert f"positions {N + 3:,} to {N + 12:,}" in again.stdout
    assert undersigned("check").returncode == 0


@pytest.mark.slow
def test_seed_refuses_bad_input_and_published_letters(
    tmp_path: Path, clean_database: Database
) -> None:
    with clean_database.write() as session:
        make_letter(session, slug="open-one")
        make_letter(session, slug="draft-one", status=LetterStatus.DRAFT)
    undersigned = _cli(tmp_path, clean_database)

    unknown = undersigned("dev", "seed", "--letter", "nope", "--signatures", "5")
    assert unknown.returncode == 1
    assert "There is no letter with the slug 'nope'" in unknown.stderr
    for count in ("0", "-3", str(seed.MAX_SEED + 1)):
        refused = undersigned("dev", "seed", "--letter", "draft-one", "--signatures", count)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "between 1 and 10,000,000" in refused.stderr
    published = undersigned("dev", "seed", "--letter", "open-one", "--signatures", "5")
    assert published.returncode == 2
    assert "is published" in published.stderr and "--force" in published.stderr
    missing = undersigned("dev", "seed", "--letter", "draft-one")
    assert missing.returncode == 2
    with clean_database.read() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 0
        assert set(session.scalars(select(LetterTally.verified_count))) == {0}

    draft = undersigned("dev", "seed", "--letter", "draft-one", "--signatures", "5")
    assert draft.returncode == 0, draft.stderr
    helped = undersigned("dev", "seed", "--help")
    assert "TEST AND BENCHMARK DATA ONLY" in helped.stdout


def test_seeded_rows_follow_the_letters_rules(session: Session) -> None:
    letter = make_letter(
        session,
        status=LetterStatus.DRAFT,
        allow_anonymous=False,
        field_title=FieldRule.OFF,
        field_city=FieldRule.OFF,
        field_comment=FieldRule.OFF,
    )
    done = seed.seed_signatures(session, letter=letter, count=500, secret_key=SECRET,
                                random_seed=1)  # fmt: skip
    assert (done.first_position, done.last_position, done.verified_count) == (1, 500, 500)
    rows = _rows(session, letter.id)
    assert len(rows) == 500
    assert all(row.display == SignatureDisplay.PUBLIC and row.name for row in rows)
    assert not any(row.title or row.city or row.comment for row in rows)
    assert any(row.organization for row in rows)
    assert all(row.version == letter.version for row in rows)


def test_seeding_a_published_letter_needs_force(session: Session) -> None:
    letter: Letter = make_letter(session)
    with pytest.raises(InvalidInput) as refused:
        seed.seed_signatures(session, letter=letter, count=3, secret_key=SECRET)
    assert refused.value.fields == {"letter": "published"}
    assert signature_count(session, letter_id=letter.id) == 0
    done = seed.seed_signatures(session, letter=letter, count=3, secret_key=SECRET, force=True)
    assert done.verified_count == 3


def test_the_fast_hasher_is_the_real_hash() -> None:
    hashed = email_hasher(SECRET, 42)
    for address in ("Ada.L+news@GoogleMail.com", "ada-lovelace-7@northwind.example", "x@y.z"):
        assert hashed(address) == email_hash(SECRET, 42, address)
    assert hashed("a@b.example") != email_hasher(SECRET, 43)("a@b.example")


def test_seed_text_needs_no_escaping_in_copy() -> None:
    texts = [*seed.FIRST_NAMES, *seed.LAST_NAMES, *seed.TITLES, *seed.WORK_DOMAINS,
             *seed.WORK_DOMAINS.values(), *seed.FREE_MAIL, *seed.OTHER_ORGANIZATIONS,
             *seed.CITIES, *seed.COMMENTS]  # fmt: skip
    assert all(not set(text) & {"\t", "\n", "\r", "\\"} for text in texts)
    assert all(len(text) <= 120 for text in texts)
