"""One SECRET_KEY per database, checked where processes start.

The secret key signs every link and keys the email hash. A process that shares a
database but has another key (a second server whose `DATA_DIR/secret_key` was generated
afresh, a typo in UNDERSIGNED_SECRET_KEY) would issue links the others cannot read and
hash addresses differently, so one person could sign a letter twice. The first process
to start records a fingerprint of its key (an HMAC under the key, never the key itself);
every process that starts later (`create_app`'s start-up, `undersigned serve`,
`undersigned worker`) compares its own and refuses to start on a difference.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import String, inspect, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.config import Settings
from app.db import Base, Database, UTCDateTime, upsert, utcnow

FINGERPRINT_CONTEXT = b"undersigned/fingerprint/v1"
KEY_NAME = "secret_key"
"""The row's name: one fingerprint per key the database depends on."""


class SecretFingerprint(Base):
    __tablename__ = "secret_fingerprints"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), doc="HMAC-SHA256 hex, never the key.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KeyCheckFailed(RuntimeError):
    """The process must not start; the message says why, in words for an operator."""


class SecretKeyMismatch(KeyCheckFailed):
    pass


def fingerprint(secret: str) -> str:
    """HMAC-SHA256(secret, "undersigned/fingerprint/v1") in hex: tells keys apart
    without revealing one (and without being usable as a key for anything else)."""
    return hmac.new(secret.encode(), FINGERPRINT_CONTEXT, hashlib.sha256).hexdigest()


def _key_source(settings: Settings) -> str:
    if "secret_key" in settings.model_fields_set:
        return "UNDERSIGNED_SECRET_KEY"
    return str(settings.data_dir / "secret_key")


def _recorded(session: Session) -> str | None:
    return session.scalar(
        select(SecretFingerprint.fingerprint).where(SecretFingerprint.name == KEY_NAME)
    )


def _record(session: Session, value: str) -> str:
    """Inserts the fingerprint unless a racing process did first; returns what is stored."""
    session.execute(
        upsert(session, SecretFingerprint)
        .values(name=KEY_NAME, fingerprint=value, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    stored = _recorded(session)
    assert stored is not None
    return stored


def check_secret_key(database: Database, settings: Settings, *, migrated: bool = True) -> None:
    """Records this key's fingerprint if the database has none yet; raises
    `SecretKeyMismatch` if it holds another key's.

    `migrated=False` is for the check before migrating (a migration may re-key stored
    hashes with this key): a database too old to have the table passes."""
    mine = fingerprint(settings.secret)
    with database.read() as session:
        if not inspect(session.connection()).has_table(SecretFingerprint.__tablename__):
            if not migrated:
                return
            raise KeyCheckFailed(
                "The database has not been migrated (no secret_fingerprints table): run "
                "`undersigned db upgrade` first."
            )
        stored = _recorded(session)
    if stored is None:
        with database.write() as session:
            stored = _record(session, mine)
    if not hmac.compare_digest(stored, mine):
        raise SecretKeyMismatch(
            f"Refusing to start: the secret key from {_key_source(settings)} is a different "
            "SECRET_KEY than the one this database was used with. With it, the links "
            "already sent would stop working and email addresses would hash differently "
            "(one person could sign a letter twice). Start every process that uses this "
            "database with the key it was first used with."
        )
