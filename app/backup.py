"""`undersigned backup PATH` (D90): a consistent copy of a live SQLite database, taken with
SQLite's online backup API while the app keeps serving; on PostgreSQL, how to use
pg_dump instead (nothing is run).

The copy is one self-contained file (rollback journal, no -wal beside it), written to a
private temporary file beside PATH and renamed into place once complete and checked, so
PATH is never a half-written database. It holds signers' addresses: it is created
readable by this user only (the CLI's umask), like the database itself.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class BackupRefused(Exception):
    """The backup was not taken; the message says why (for the operator)."""


@dataclass(frozen=True, slots=True)
class BackupDone:
    path: Path
    pages: int
    size: int


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> BackupDone:
    """Copies `source` to `target` with the online backup API: one step, so the copy is
    the database as it stood at one moment (in WAL mode, writers go on meanwhile)."""
    if not source.is_file():
        raise BackupRefused(f"There is no database at {source}.")
    if target.exists() or target.is_symlink():
        if target.resolve() == source.resolve():
            raise BackupRefused(f"{target} is the database itself.")
        if not force:
            raise BackupRefused(f"{target} exists: give another path, or --force to replace it.")
        if target.is_dir():
            raise BackupRefused(f"{target} is a directory: give a file's path.")
    directory = target.parent
    if not directory.is_dir():
        raise BackupRefused(f"The directory {directory} does not exist.")
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    temporary = Path(name)
    try:
        # mode=rw: never create an empty database where the path was wrong.
        reader = sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True, timeout=30)
        try:
            writer = sqlite3.connect(temporary)
            try:
                reader.backup(writer)  # pages=-1: all at once, one consistent snapshot
                writer.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
                verdict = writer.execute("PRAGMA quick_check").fetchone()[0]
                pages = int(writer.execute("PRAGMA page_count").fetchone()[0])
            finally:
                writer.close()
        finally:
            reader.close()
        if verdict != "ok":
            raise BackupRefused(f"The copy failed SQLite's check ({verdict}); nothing written.")
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        _fsync_directory(directory)
    except sqlite3.Error as exc:
        raise BackupRefused(f"The backup failed: {exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    return BackupDone(path=target, pages=pages, size=target.stat().st_size)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pg_dump_advice(database_url: str, target: Path) -> str:
    """How to back up (and restore) a PostgreSQL database with its own tools; the URL is
    shown without its password."""
    given = make_url(database_url)
    url = URL.create(
        "postgresql", given.username, None, given.host, given.port, given.database, given.query
    )
    shown = url.render_as_string(hide_password=False)
    return (
        "The database is PostgreSQL: back it up with PostgreSQL's own pg_dump, which takes "
        "a consistent snapshot of the live database (nothing was run or written):\n"
        f"  pg_dump --format=custom --no-owner --file {target} '{shown}'\n"
        "(give the password with PGPASSWORD or ~/.pgpass, never on the command line).\n"
        "Restore it into an empty database, then start the app (same SECRET_KEY):\n"
        f"  pg_restore --no-owner --dbname 'postgresql://…/NEW_DATABASE' {target}\n"
        "For continuous backups (point-in-time recovery), use WAL archiving or a tool "
        "built on it (pgBackRest, Barman)."
    )
