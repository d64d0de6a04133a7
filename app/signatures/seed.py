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
- PostgreSQL: one COPY; SQLite: executemany in chunks (its FTS5 triggers index every
  row for search).
- The signature log: every row gets a random receipt commitment (of a secret nobody
  holds; rising with the position, see `_Rows.chunks`) and a queued `add confirmed`
  entry in list order, with the hour of its confirmation,
  so the log counts what the tally counts. Given the settings (the command does), the
  seed then sequences the letter's log to the end, in batches, in the same transaction:
  the seeded letter's latest checkpoint counts the tally.
"""

from __future__ import annotations

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
from app.signlog.sequencer import drain

MAX_SEED = 10_000_000
"""The most signatures one `dev seed` adds (positions are 32-bit; this is data for
tests and benchmarks, not a load test of the disk)."""
DEFAULT_DAYS = 30

_CHUNK = 50_000
"""Rows generated (and, on SQLite, inserted) at a time."""


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
_HASH_OF = itemgetter(COLUMNS.index("email_hash"))
_LOGGED = itemgetter(COLUMNS.index("position"), COLUMNS.index("verified_at"),
                     COLUMNS.index("receipt_commitment"))  # fmt: skip
ENTRY_COLUMNS = ("letter_id", "event", "reason", "hour", "commitment")
"""What each queued log entry sets (`seq` stays NULL until the sequencer runs)."""
LOG_BATCH = _CHUNK
"""Entries per checkpoint when the seed sequences (a million: twenty checkpoints)."""


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

    def public_id(self, index: int) -> str:
        """24 URL-safe characters, like a real one, but rising with `index` within
        this seed (a random prefix, the index, random bits): the unique index on
        public ids then takes a seed as appends in one place instead of a random
        page per row. (A public id is only ever read inside a signed token.)"""
        return self.prefix + _sortable(index) + secrets.token_urlsafe(9)

    def commitment(self, index: int) -> str:
        """A random receipt commitment (64 hex digits) that rises with `index`: drawn
        from the index's own slice of the 256-bit range."""
        low, high = (index << 256) // self.count, ((index + 1) << 256) // self.count
        return f"{low + secrets.randbelow(high - low):064x}"

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

    def entries(self, chunk: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The chunk's queued log entries (`ENTRY_COLUMNS`), in list order."""
        letter_id, add, confirmed = self.letter.id, LogEvent.ADD.value, LogReason.CONFIRMED.value
        return [
            (letter_id, add, confirmed, hour_of(verified_at), commitment)
            for _, verified_at, commitment in sorted(map(_LOGGED, chunk))
        ]

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """The rows a chunk at a time, each chunk in the order of its address hashes and
        with its random public ids handed out in sorted order: the two unique indexes
        on random keys then take each chunk in one sweep instead of a page miss per
        row (the difference between minutes and seconds once they outgrow the cache).
        The random receipt commitments rise with the position (`commitment`): the log's
        index on commitments takes the entries as appends, when they are queued and
        again when they are sequenced (a seeded letter's receipt buckets are runs of
        positions; its commitments are made up anyway)."""
        for begin in range(0, self.count, _CHUNK):
            end = min(begin + _CHUNK, self.count)
            chunk = [(*self.row(index)[:-1], self.commitment(index)) for index in range(begin, end)]
            chunk.sort(key=_HASH_OF)
            public_ids = [self.public_id(begin + offset) for offset in range(len(chunk))]
            yield [
                (*row[:_PUBLIC_ID], public_id, *row[_PUBLIC_ID + 1 :])
                for row, public_id in zip(chunk, public_ids, strict=True)
            ]


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


def _copy(session: Session, rows: _Rows) -> None:
    """PostgreSQL: COPY on the session's own connection (its transaction), a chunk of
    signatures then its log entries at a time."""
    connection = session.connection().connection.driver_connection
    signatures = f"COPY signatures ({', '.join(COLUMNS)}) FROM STDIN"
    entries = f"COPY log_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor:  # type: ignore[union-attr]
        for chunk in rows.chunks():
            with cursor.copy(signatures) as copy:
                copy.write("".join([_copy_line(row) for row in chunk]))
            with cursor.copy(entries) as copy:
                copy.write("".join([_copy_line(entry) for entry in rows.entries(chunk)]))


def _executemany(session: Session, rows: _Rows) -> None:
    """SQLite (and any other database): executemany, a chunk at a time."""
    for chunk in rows.chunks():
        session.execute(insert(Signature), [dict(zip(COLUMNS, row, strict=True)) for row in chunk])
        session.execute(
            insert(LogEntry),
            [dict(zip(ENTRY_COLUMNS, entry, strict=True)) for entry in rows.entries(chunk)],
        )


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
    its counter by as many, in the caller's transaction (see the module's rules). Their
    log entries are queued; with `settings`, sequenced too (else the worker will)."""
    check_seed_request(letter, count=count, force=force)
    # The counter row first: its lock orders us with any confirmation of this letter.
    last = session.execute(
        update(LetterTally)
        .where(LetterTally.letter_id == letter.id)
        .values(last_position=LetterTally.last_position + count)
        .returning(LetterTally.last_position)
    ).scalar_one()
    start = int(last) - count + 1
    # Made-up names, not secrets: a seedable generator (repeatable with --random-seed).
    rng = random.Random(random_seed if random_seed is not None else secrets.randbits(64))  # noqa: S311
    rows = _Rows(letter, secret_key=secret_key, start=start, count=count,
                 days=max(days, 0), now=utcnow(), rng=rng)  # fmt: skip
    if session.get_bind().dialect.name == "postgresql":
        _copy(session, rows)
        # Fresh statistics (our own rows count): until autovacuum runs, the planner
        # would take a million-row letter for a small one and pick scans to match.
        session.execute(text("ANALYZE signatures"))
        session.execute(text("ANALYZE log_entries"))
    else:
        _executemany(session, rows)
    if settings is not None:
        # The counter row, locked above, keeps any other entry of this letter from
        # committing meanwhile: what `drain` needs.
        drain(session, settings, letter_id=letter.id, limit=LOG_BATCH)
    add_to_tally(session, letter_id=letter.id, delta=count)
    verified = signature_count(session, letter_id=letter.id)
    return Seeded(letter.id, count, start, int(last), verified)
