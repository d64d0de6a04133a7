"""Erased means gone from the files: a withdrawn signer, a kept contact address that
expired and a closed letter's anonymized signers leave nothing in the database.

Like tests/test_forgetting.py, the whole database is dumped (SQLite: `iterdump` plus the
raw database and WAL files after the worker's checkpoint; PostgreSQL: `pg_dump`) and
searched. The same dump taken before the erasure is searched too, so the test shows it
can find what it looks for. On SQLite the signer search index (FTS5) is searched as well:
its terms are trigrams, so the trigrams of the erased names are looked for."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from app.db import Database, utcnow
from app.jobs import forget_in_files, purge, work_once
from app.letters.models import FieldRule
from app.letters.service import Transition, change_status
from app.mail.backends import DevMailbox
from app.organizers.service import SHELL
from app.signatures import manage
from app.signatures.models import Signature
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign_and_confirm
from tests.test_forgetting import _dump

WITHDRAWN = {
    "name": "Wilhelmina Xqjžvk",
    "email": "wil.xqjzvk.77@corp-example.org",
    "organization": "Plqørg Worldwide",
    "city": "Vvkcity",
    "comment": "Reason Mwqxl",
    "contact_ok": True,
}
EXPIRED = {"name": "Kept Person", "email": "kept.contact.h8h8@corp-example.org", "contact_ok": True}
ANONYMIZED = {
    "name": "Orlando Jjqpžw",
    "email": "orlando.jjq@corp-example.org",
    "organization": "Ffwzørg",
    "contact_ok": True,
}
GONE = [
    "Wilhelmina Xqjžvk", "wil.xqjzvk.77", "Plqørg", "Vvkcity", "Reason Mwqxl",
    "kept.contact.h8h8", "Orlando Jjqpžw", "orlando.jjq", "Ffwzørg",
]  # fmt: skip
TRIGRAMS = ["qjž", "jžv", "žvk", "lqø", "qør", "qpž", "pžw", "zør", "wzø"]
"""Trigrams of the erased names and organizations (FTS5 trigram index terms). Each has a
letter outside ASCII, so that no random token, key or signature in base64 or hex (the
signature log's notes, links' ids) can hold one by chance."""


def test_erased_signers_are_gone_from_the_database_files(
    clean_database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, clean_database.url)
    with clean_database.write() as session:
        open_letter = make_letter(session, field_comment=FieldRule.OPTIONAL)
        for number in range(5):  # company for the index
            sign_and_confirm(session, open_letter, settings, name=f"Staying Signer {number}")
        withdrawn = sign_and_confirm(session, open_letter, settings, **WITHDRAWN)
        assert withdrawn.public_id
        token = manage.manage_token(settings, withdrawn.public_id)

        closed = make_letter(session)
        closed.anonymize_after_months = 6
        kept = sign_and_confirm(session, closed, settings, **EXPIRED)
        anonymized = sign_and_confirm(session, closed, settings, **ANONYMIZED)
        change_status(session, letter=closed, transition=Transition.CLOSE, actor=SHELL)
    # The emails go (the outbox forgets their addresses once sent).
    mailbox = DevMailbox(tmp_path / "dev-mail")
    while work_once(clean_database, mailbox, settings=settings):
        pass
    forget_in_files(clean_database)
    before = _dump(clean_database)
    for secret in GONE:
        assert secret.encode() in before, secret  # the search finds what it looks for
    if clean_database.dialect == "sqlite":
        for trigram in TRIGRAMS:
            assert trigram.encode() in before.lower(), trigram

    with clean_database.write() as session:
        assert manage.withdraw(session, token=token, settings=settings)
    with clean_database.write() as session:
        # Six months and a few days after the close (contacts expired at 90 days).
        closed_at = session.get_one(Signature, kept.id).verified_at
        later = closed_at + timedelta(days=190)
        from app.signatures.retention import forget_closed_letters

        counts = forget_closed_letters(session, now=later)
        assert counts["expired_contact_addresses"] >= 2
        assert counts["anonymized_signatures"] >= 2
        purge(session, settings=settings)  # the hourly rules run too, unharmed
    forget_in_files(clean_database)  # what the worker does every minute on SQLite

    after = _dump(clean_database)
    assert b"Staying Signer 3" in after  # what was not erased is still there
    for secret in GONE:
        assert secret.encode() not in after, secret
        assert secret.lower().encode() not in after.lower(), secret
    if clean_database.dialect == "sqlite":
        for trigram in TRIGRAMS:
            assert trigram.encode() not in after.lower(), trigram
    with clean_database.read() as session:
        row = session.get_one(Signature, anonymized.id)
        assert row.name == "" and row.email is None
    assert utcnow() < later  # erased by the rules of a moment yet to come, not by time
