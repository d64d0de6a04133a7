"""Test and benchmark data: a letter filled with realistic confirmed signatures in bulk
(`undersigned dev seed`). Never part of a real letter's life: nobody signed these.

Rules kept here:
- Every row is what a confirmation would have stored (app.signatures.service
  `verify_signature`): status verified, the letter's current version, a random
  `public_id`, a keyed `email_hash` computed exactly like a real one (the addresses are
  made up, unique per letter and position, at `.example` domains or free-mail ones);
  an anonymous row keeps no name, title, organization, city, address or domain (but the
  badge domain, when it shows one); a badge (`show_domain`) only with a work domain, a
  name threshold only with a badge and on a letter signed by people; a kept address
  only with `contact_ok`. The letter's own rules shape the rows: no anonymous signer
  unless it allows them, no title, organization, city or comment where its form has
  that field off; a letter signed by organizations gets names, titles and
  organizations on every row.
- Positions continue after the counter's `last_position`, and the counter row moves by
  the rows inserted in the same transaction (its lock taken first: a concurrent
  confirmation waits, then takes the next position), so the tally stays exact.
- `verified_at` rises with the position, spread over the past `days`.
- Only a draft, unless the operator forces it: fake signatures on a published letter
  would be a lie to its readers (D83).
- PostgreSQL: COPY, the rows made while psycopg's thread streams them (a round of up to
  `_ROUND` rows: its signatures, then its log entries, then their stored hashes);
  SQLite: executemany in chunks (its FTS5 triggers index every row for search).
- The signature log: every row gets a random receipt commitment (of a secret nobody
  holds; rising with the position, see `_Rows.chunks`) and an `add confirmed` entry in
  list order, with the hour of its confirmation, so the log counts what the tally
  counts. Given the settings (the command does), the seed owns the letter's log in its
  transaction: it takes the log's head (waiting for a sequencer that holds it),
  sequences what was queued before (`drain`), and then writes its own entries already
  in their places (the head's size on), their stored hashes, a signed checkpoint per
  chunk and the new head, through the sequencer's own `Appending`: the same log as if
  they had been queued and sequenced, without numbering a million rows again. The
  seeded letter's latest checkpoint counts the tally. Without the settings the entries
  are queued (`seq` NULL) for the worker.
"""

from __future__ import annotations

import base64
import random
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import insert, text, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.errors import InvalidInput
from app.letters.models import (
    NAME_THRESHOLDS,
    FieldRule,
    Letter,
    LetterStatus,
    LetterTally,
    SignerKind,
)
from app.letters.service import add_to_tally, signature_count
from app.signatures.addresses import email_hasher
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus
from app.signlog.entries import hour_of
from app.signlog.models import LogEntry, LogEvent, LogReason
from app.signlog.sequencer import Appending, Entry, drain, lock_head
from app.signlog.service import unsequenced

MAX_SEED = 10_000_000
"""The most signatures one `dev seed` adds (positions are 32-bit; this is data for
tests and benchmarks, not a load test of the disk)."""
DEFAULT_DAYS = 30

_CHUNK = 50_000
"""Rows generated (and, on SQLite, inserted) at a time; entries per checkpoint."""
_ROUND = 250_000
"""PostgreSQL: rows whose signatures, entries and stored hashes are written before the
next ones are made (what the seed holds in memory at a time)."""


def _words(text: str) -> tuple[str, ...]:
    """Space-separated words ("_" is a space inside one)."""
    return tuple(word.replace("_", " ") for word in text.split())


FIRST_NAMES = _words(
    "Ada Adaeze Adriana Agnieszka Ahmed Aiko Alejandro Alex Amara Amina Ana Andrea Anil "
    "Anja Arjun Astrid Aylin Beatriz Bilal Camille Carlos Chen Chiara Chloé Chukwuemeka "
    "Daniel Dara Dmitri Elena Elif Emeka Emma Esther Fatima Felipe Freya Gabriel Giulia "
    "Grace Hana Hannah Hiroshi Ibrahim Ines Ingrid Isabel Jakub James Javier Jin Joanna "
    "João Jonas Jorge Julia Kai Karim Katarzyna Kenji Kwame Lars Layla Leila Lena Liam "
    "Lucía Luis Maja Malik Mariam Marie Mateo Maya Mehmet Mei Miguel Mohammed Nadia "
    "Naledi Nia Niamh Noah Nora Olga Omar Oskar Paolo Pedro Priya Rafael Rania Ravi Rosa "
    "Sakura Samuel Sara Sebastián Siddharth Sofia Søren Tariq Thandiwe Tomás Wei Yara "
    "Yusuf Zainab Zoë"
)
LAST_NAMES = _words(
    "Abara Adeyemi Alvarez Andersen Bakker Banerjee Bauer Becker Bianchi Brown Campbell "
    "Chen Costa Cruz da_Silva Dang Dubois Eriksson Fernández Fischer Fitzgerald García "
    "González Gupta Haddad Hansen Hernández Hoffmann Horvat Huang Ibrahim Ivanova Jansen "
    "Jensen Johansson Jones Kaya Khan Kim Kowalski Kumar Larsen Laurent Lee Li Lindqvist "
    "López Martin Martínez Mensah Moreau Müller Murphy Nakamura Naidoo Nguyen Novak "
    "Nowak O'Brien Okafor Okonkwo Olsen Owusu Park Patel Pereira Petrov Popescu Quispe "
    "Rahman Ramírez Reyes Rossi Russo Sato Schmidt Schneider Sharma Silva Singh Smith "
    "Sokolov Suzuki Takahashi Tanaka Taylor Thompson van_Dijk Vargas Wagner Walsh Wang "
    "Weber Williams Wilson Wójcik Wright Yamamoto Yilmaz Zhang Zhou"
)


def _slug(name: str) -> str:
    """ "Søren" -> "sren", "O'Brien" -> "obrien", "da Silva" -> "dasilva": an address's
    local part (ASCII letters only)."""
    ascii_only = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(char for char in ascii_only.lower() if char.isalnum())


_SLUGS = {name: _slug(name) for name in FIRST_NAMES + LAST_NAMES}
TITLES = (
    "Software Engineer", "Senior Engineer", "Staff Engineer", "Engineering Manager",
    "Product Manager", "Designer", "Data Scientist", "Researcher", "Nurse", "Physician",
    "Teacher", "Professor", "Lecturer", "PhD Student", "Postdoctoral Fellow", "Librarian",
    "Journalist", "Editor", "Lawyer", "Paralegal", "Accountant", "Analyst", "Architect",
    "Civil Engineer", "Electrician", "Social Worker", "Pharmacist", "Translator",
    "Musician", "Farmer", "Chef", "Firefighter", "Retired", "Student", "Volunteer",
)  # fmt: skip
WORK_DOMAINS = {
    "northwind.example": "Northwind Traders",
    "contoso.example": "Contoso",
    "fabrikam.example": "Fabrikam",
    "initech.example": "Initech",
    "globex.example": "Globex",
    "umbrella-health.example": "Umbrella Health",
    "hooli.example": "Hooli",
    "tyrell.example": "Tyrell Corporation",
    "wayne-enterprises.example": "Wayne Enterprises",
    "stark-industries.example": "Stark Industries",
    "acme.example": "Acme Corporation",
    "soylent.example": "Soylent",
    "cyberdyne.example": "Cyberdyne Systems",
    "massive-dynamic.example": "Massive Dynamic",
    "aperture.example": "Aperture Science",
    "black-mesa.example": "Black Mesa",
    "oscorp.example": "Oscorp",
    "wonka.example": "Wonka Industries",
    "gringotts.example": "Gringotts",
    "monsters-inc.example": "Monsters, Inc.",
    "uni-north.example": "University of the North",
    "city-hospital.example": "City Hospital",
    "eastside-school.example": "Eastside School",
    "riverside-council.example": "Riverside Council",
}
"""Work domains (reserved `.example` names) and the organization their signers name."""
FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "gmx.de")
OTHER_ORGANIZATIONS = (
    "Teachers' Union Local 12", "Friends of the River", "Open Rights Group",
    "Nurses United", "Citizens' Advice", "Parents for Clean Air", "Tenants' Association",
    "Cycling Campaign", "Food Bank Network", "Climate Action Now", "Free University",
    "Independent", "Self-employed", "Freelance",
)  # fmt: skip
CITIES = (
    "Amsterdam", "Athens", "Bangalore", "Barcelona", "Berlin", "Bogotá", "Boston",
    "Brussels", "Buenos Aires", "Cape Town", "Chicago", "Copenhagen", "Dublin", "Glasgow",
    "Helsinki", "Istanbul", "Kraków", "Lagos", "Lisbon", "London", "Lyon", "Madrid",
    "Manchester", "Melbourne", "Mexico City", "Milan", "Montréal", "Mumbai", "Nairobi",
    "Oslo", "Paris", "Porto", "Prague", "São Paulo", "Seoul", "Stockholm", "Sydney",
    "Tokyo", "Toronto", "Vienna", "Warsaw", "Zürich",
)  # fmt: skip
COMMENTS = (
    "This matters to my family.", "Long overdue.", "I see this every day at work.",
    "For my students.", "Because silence is a choice too.", "We can do better.",
)  # fmt: skip

COLUMNS = (
    "letter_id", "position", "status", "verified_at", "public_id", "hidden",
    "comment_approved", "organizer_confirmed", "display", "name", "title", "organization",
    "city", "contact_ok", "comment", "comment_public_ok", "version", "show_domain",
    "name_threshold", "email", "email_hash", "email_domain", "receipt_commitment",
)  # fmt: skip
"""What each seeded row sets (the rest: its defaults; `id` from the database)."""
_PUBLIC_ID = COLUMNS.index("public_id")
_VERIFIED_AT = COLUMNS.index("verified_at")
_HASH_OF = itemgetter(COLUMNS.index("email_hash"))
ENTRY_COLUMNS = ("letter_id", "seq", "event", "reason", "hour", "commitment")
"""What each log entry sets (`seq` NULL when queued for the sequencer)."""
LOG_BATCH = _CHUNK
"""Entries per checkpoint (a million: twenty checkpoints)."""
ADD, CONFIRMED = LogEvent.ADD.value, LogReason.CONFIRMED.value


PUBLIC, ANONYMOUS = SignatureDisplay.PUBLIC.value, SignatureDisplay.ANONYMOUS.value
VERIFIED = SignatureStatus.VERIFIED.value


@dataclass(frozen=True, slots=True)
class Seeded:
    letter_id: int
    added: int
    first_position: int
    last_position: int
    verified_count: int


def check_seed_request(letter: Letter, *, count: int, force: bool) -> None:
    """InvalidInput (`fields["signatures"]`) for a count out of range; InvalidInput
    (`fields["letter"]`) for a published letter without `force`."""
    if not 1 <= count <= MAX_SEED:
        raise InvalidInput(
            f"The number of signatures must be between 1 and {MAX_SEED:,}.",
            fields={"signatures": f"between 1 and {MAX_SEED:,}"},
        )
    if letter.status != LetterStatus.DRAFT and not force:
        raise InvalidInput(
            f"Letter {letter.slug!r} is published: seeding it would show made-up "
            "signatures to its readers. Seed a draft (then publish it), or give --force "
            "on a test or benchmark database.",
            fields={"letter": "published"},
        )


_DIGITS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
"""The URL-safe base64 alphabet in ASCII order."""
_PAIRS = tuple(high + low for high in _DIGITS for low in _DIGITS)
"""`_sortable(n, 2)` for every n below 4096."""


def _sortable(number: int, width: int = 5) -> str:
    """`number` in `width` URL-safe characters that sort as the numbers do."""
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 64)
        digits.append(_DIGITS[digit])
    return "".join(reversed(digits))


class _Rows:
    """Made-up signers for one letter (deterministic for a given random seed)."""

    def __init__(self, letter: Letter, *, secret_key: str, start: int, count: int,
                 days: int, now: datetime, rng: random.Random) -> None:  # fmt: skip
        self.letter, self.start, self.count, self.rng = letter, start, count, rng
        self.hashed = email_hasher(secret_key, letter.id)
        self.organizations = letter.signers == SignerKind.ORGANIZATIONS
        self.fields = {
            field: letter.field_rule(field) != FieldRule.OFF
            for field in ("title", "organization", "city", "comment")
        }
        self.anonymous_share = 0.08 if letter.allow_anonymous and not self.organizations else 0
        self.earliest = now - timedelta(days=days)
        self.step = timedelta(days=days) / max(count, 1)
        self.domains = list(WORK_DOMAINS)
        self.prefix = secrets.token_urlsafe(6)[:7]

    def public_ids(self, first: int, count: int) -> list[str]:
        """The public ids of indexes `first` to `first + count - 1`: 24 URL-safe
        characters each, like a real one, but rising with the index within this seed (a
        random prefix, the index in 5 sortable digits, 12 random characters): the unique
        index on public ids then takes a seed as appends in one place instead of a
        random page per row. (A public id is only ever read inside a signed token.)"""
        random_parts = base64.urlsafe_b64encode(secrets.token_bytes(9 * count)).decode()
        ids, high, prefix = [], -1, ""
        for offset in range(count):
            index = first + offset
            if index >> 12 != high:
                high = index >> 12
                prefix = self.prefix + _sortable(high, 3)
            ids.append(prefix + _PAIRS[index & 4095] + random_parts[12 * offset : 12 * offset + 12])
        return ids

    def commitments(self, first: int, count: int) -> list[str]:
        """Random receipt commitments (64 hex digits) of indexes `first` to `first +
        count - 1`, rising with the index: each drawn from the index's own slice of the
        256-bit range (320 random bits reduced into it: a bias below 2^-60)."""
        raw, whole, total = secrets.token_bytes(40 * count), 1 << 256, self.count
        found = []
        for offset in range(count):
            index = first + offset
            low, high = (index * whole) // total, ((index + 1) * whole) // total
            draw = int.from_bytes(raw[40 * offset : 40 * offset + 40])
            found.append(f"{low + draw % (high - low):064x}")
        return found

    def row(self, index: int) -> tuple[Any, ...]:
        """One signature's values, in `COLUMNS` order (its receipt commitment empty:
        `chunks` hands them out)."""
        rng, position = self.rng, self.start + index
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        work = self.organizations or rng.random() < 0.4
        domain = rng.choice(self.domains) if work else rng.choice(FREE_MAIL)
        address = f"{_SLUGS[first]}-{_SLUGS[last]}-{position}@{domain}"
        show_domain = work and rng.random() < 0.5
        anonymous = rng.random() < self.anonymous_share
        comment, comment_public_ok, comment_approved = "", False, False
        if self.fields["comment"] and rng.random() < 0.02:
            comment = rng.choice(COMMENTS)
            comment_public_ok = rng.random() < 0.5
            comment_approved = comment_public_ok and rng.random() < 0.2
        name = title = organization = city = ""
        email, threshold, confirmed = None, None, False
        if anonymous:
            display = ANONYMOUS
        else:
            display, name = PUBLIC, f"{first} {last}"
            if self.fields["title"] and (self.organizations or rng.random() < 0.6):
                title = rng.choice(TITLES)
            if self.fields["organization"]:
                if work:
                    organization = WORK_DOMAINS[domain]
                elif self.organizations or rng.random() < 0.3:
                    organization = rng.choice(OTHER_ORGANIZATIONS)
            if self.fields["city"] and rng.random() < 0.7:
                city = rng.choice(CITIES)
            if rng.random() < 0.25:
                email = address
            if show_domain and not self.organizations and rng.random() < 0.1:
                threshold = rng.choice(NAME_THRESHOLDS)
            confirmed = rng.random() < 0.0002
        return (
            self.letter.id, position, VERIFIED, self.earliest + self.step * index,
            None, False, comment_approved, confirmed, display, name,
            title, organization, city, email is not None, comment, comment_public_ok,
            self.letter.version, show_domain, threshold, email, self.hashed(address),
            domain if show_domain or not anonymous else "", "",
        )  # fmt: skip

    def chunks(
        self, begin: int = 0, end: int | None = None
    ) -> Iterator[tuple[list[tuple[Any, ...]], list[Entry]]]:
        """Rows `begin` to `end` (default: all) a chunk at a time, with their log entries
        (`Entry`) in list order. Each chunk's rows come in the order of their address
        hashes and with its random public ids handed out in sorted order: the two unique
        indexes on random keys then take each chunk in one sweep instead of a page miss
        per row (the difference between minutes and seconds once they outgrow the
        cache). The random receipt commitments rise with the position (`commitment`):
        the log's index on commitments takes the entries as appends (a seeded letter's
        receipt buckets are runs of positions; its commitments are made up anyway)."""
        end = self.count if end is None else end
        for first in range(begin, end, _CHUNK):
            last = min(first + _CHUNK, end)
            chunk = [
                (*self.row(index)[:-1], commitment)
                for index, commitment in zip(
                    range(first, last), self.commitments(first, last - first), strict=True
                )
            ]
            entries: list[Entry] = [
                (ADD, CONFIRMED, hour_of(row[_VERIFIED_AT]), row[-1]) for row in chunk
            ]
            chunk.sort(key=_HASH_OF)
            public_ids = self.public_ids(first, len(chunk))
            yield (
                [
                    (*row[:_PUBLIC_ID], public_id, *row[_PUBLIC_ID + 1 :])
                    for row, public_id in zip(chunk, public_ids, strict=True)
                ],
                entries,
            )


_COPY_VALUE = {None: "\\N", True: "t", False: "f"}


def _copy_line(row: tuple[Any, ...]) -> str:
    """One row in PostgreSQL's COPY text format. No value needs escaping: the text
    comes from this module's lists (a test checks they hold no tab, newline or
    backslash), the rest are numbers, booleans, NULLs and dates."""
    return "\t".join(
        [
            value.isoformat() if isinstance(value, datetime)
            else _COPY_VALUE[value] if value is None or value is True or value is False
            else str(value)
            for value in row
        ]
    ) + "\n"  # fmt: skip


_FLAG = {True: "t", False: "f"}
_NULL = "\\N"


def _signature_line(row: tuple[Any, ...]) -> str:
    """`_copy_line` of a signature row (`COLUMNS`), written out column by column: three
    times faster, and the same text (a test compares them)."""
    (letter_id, position, status, verified_at, public_id, hidden, comment_approved,
     confirmed, display, name, title, organization, city, contact_ok, comment,
     comment_public_ok, version, show_domain, threshold, email, email_hash, email_domain,
     commitment) = row  # fmt: skip
    flag = _FLAG
    return (
        f"{letter_id}\t{position}\t{status}\t{verified_at.isoformat()}\t{public_id}\t"
        f"{flag[hidden]}\t{flag[comment_approved]}\t{flag[confirmed]}\t{display}\t{name}\t"
        f"{title}\t{organization}\t{city}\t{flag[contact_ok]}\t{comment}\t"
        f"{flag[comment_public_ok]}\t{version}\t{flag[show_domain]}\t"
        f"{_NULL if threshold is None else threshold}\t{_NULL if email is None else email}\t"
        f"{email_hash}\t{email_domain}\t{commitment}\n"
    )


def _entry_rows(letter_id: int, seq: int | None, entries: list[Entry]) -> list[tuple[Any, ...]]:
    """The entries as `ENTRY_COLUMNS` rows: numbered from `seq` on, or queued (None)."""
    return [
        (letter_id, None if seq is None else seq + offset, *entry)
        for offset, entry in enumerate(entries)
    ]


def _entry_lines(letter_id: int, seq: int | None, entries: list[Entry]) -> str:
    """`_copy_line` of `_entry_rows`, each hour written out once."""
    hours: dict[datetime, str] = {}
    lines = []
    for offset, (event, reason, hour, commitment) in enumerate(entries):
        when = hours.get(hour)
        if when is None:
            when = hours[hour] = hour.isoformat()
        number = _NULL if seq is None else seq + offset
        lines.append(f"{letter_id}\t{number}\t{event}\t{reason}\t{when}\t{commitment}\n")
    return "".join(lines)


def _copy(session: Session, rows: _Rows, tree: _Log | None) -> None:
    """PostgreSQL: COPY on the session's own connection (its transaction), a round at a
    time: the round's signatures, made chunk by chunk while psycopg's writer thread
    streams the previous chunks to the server (the server's work and ours overlap), then
    its log entries (made meanwhile), then, when the seed writes its log, the round's
    stored hashes and checkpoints."""
    from psycopg.copy import QueuedLibpqWriter  # PostgreSQL only (D187)

    connection = session.connection().connection.driver_connection
    signatures = f"COPY signatures ({', '.join(COLUMNS)}) FROM STDIN"
    entries = f"COPY log_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN"
    letter_id = rows.letter.id
    for begin in range(0, rows.count, _ROUND):
        appending = tree.begin(session) if tree is not None else None
        logged: list[str] = []
        with connection.cursor() as cursor:  # type: ignore[union-attr]
            with cursor.copy(signatures, writer=QueuedLibpqWriter(cursor)) as copy:
                for chunk, chunk_entries in rows.chunks(begin, min(begin + _ROUND, rows.count)):
                    copy.write("".join([_signature_line(row) for row in chunk]))
                    seq = appending.size if appending is not None else None
                    logged.append(_entry_lines(letter_id, seq, chunk_entries))
                    if appending is not None:
                        appending.append(chunk_entries)
            with cursor.copy(entries, writer=QueuedLibpqWriter(cursor)) as copy:
                for text_ in logged:
                    copy.write(text_)
        del logged
        if tree is not None and appending is not None:
            tree.publish(session, appending)


def _executemany(session: Session, rows: _Rows, tree: _Log | None) -> None:
    """SQLite (and any other database): executemany, a chunk at a time."""
    appending = tree.begin(session) if tree is not None else None
    for chunk, entries in rows.chunks():
        session.execute(insert(Signature), [dict(zip(COLUMNS, row, strict=True)) for row in chunk])
        seq = appending.size if appending is not None else None
        session.execute(
            insert(LogEntry),
            [
                dict(zip(ENTRY_COLUMNS, entry, strict=True))
                for entry in _entry_rows(rows.letter.id, seq, entries)
            ],
        )
        if appending is not None:
            appending.append(entries)
    if tree is not None and appending is not None:
        tree.publish(session, appending)


class _Log:
    """The seed's own writing of the letter's log (given the settings): the head is
    the seed's (`lock_head`) and nothing is queued, so its entries take their places
    as they are written."""

    def __init__(self, session: Session, settings: Settings, letter: Letter) -> None:
        self.settings, self.letter_id = settings, letter.id
        # The counter row, locked by the caller, keeps any other entry of this letter
        # from committing meanwhile: what `drain`, and an empty queue, need.
        lock_head(session, letter.id)
        drain(session, settings, letter_id=letter.id, limit=LOG_BATCH)
        if (queued := unsequenced(session, letter_id=letter.id)) != 0:
            raise InvalidInput(
                f"Letter {letter.slug!r} has {queued:,} log entries that could not be "
                "sequenced: the seed writes its entries in their places and needs an "
                "empty queue. Run `undersigned log sequence --letter "
                f"{letter.slug}` and try again.",
                fields={"letter": "log entries queued"},
            )

    def begin(self, session: Session) -> Appending:
        """The log from its head (locked, ours), for the next round's entries."""
        return Appending(session, self.letter_id, lock_head(session, self.letter_id))

    def publish(self, session: Session, appending: Appending) -> None:
        appending.publish(session, self.settings)


def seed_signatures(
    session: Session,
    *,
    letter: Letter,
    count: int,
    secret_key: str,
    force: bool = False,
    days: int = DEFAULT_DAYS,
    random_seed: int | None = None,
    settings: Settings | None = None,
) -> Seeded:
    """Adds `count` verified signatures to `letter` after its last position, and moves
    its counter by as many, in the caller's transaction (see the module's rules). With
    `settings`, their log entries are written in their places, their checkpoints
    signed; without, they are queued for the worker."""
    check_seed_request(letter, count=count, force=force)
    # The counter row first: its lock orders us with any confirmation of this letter.
    last = session.execute(
        update(LetterTally)
        .where(LetterTally.letter_id == letter.id)
        .values(last_position=LetterTally.last_position + count)
        .returning(LetterTally.last_position)
    ).scalar_one()
    start = int(last) - count + 1
    tree = _Log(session, settings, letter) if settings is not None else None
    # Made-up names, not secrets: a seedable generator (repeatable with --random-seed).
    rng = random.Random(random_seed if random_seed is not None else secrets.randbits(64))  # noqa: S311
    rows = _Rows(letter, secret_key=secret_key, start=start, count=count,
                 days=max(days, 0), now=utcnow(), rng=rng)  # fmt: skip
    if session.get_bind().dialect.name == "postgresql":
        _copy(session, rows, tree)
        # Fresh statistics (our own rows count): until autovacuum runs, the planner
        # would take a million-row letter for a small one and pick scans to match.
        session.execute(text("ANALYZE signatures"))
        session.execute(text("ANALYZE log_entries"))
    else:
        _executemany(session, rows, tree)
    add_to_tally(session, letter_id=letter.id, delta=count)
    verified = signature_count(session, letter_id=letter.id)
    return Seeded(letter.id, count, start, int(last), verified)
