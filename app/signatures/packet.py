"""The delivery packet's signers: the public list, grouped by organization, read in
keyset batches so that a letter of any size is streamed in constant memory.

Who is listed: verified signatures shown in public (display `public`) that a moderator
has not hidden, the same rule as the public signer list. Anonymous signers are only
counted. Order: signers with an organization first, grouped case-insensitively
(`lower(organization)`, so "ACME" and "Acme" make one group) in that order, each group
in signing order (list position); then those without an organization, in signing
order. Each batch runs in its own short session (`iter_signers`): nothing is held open
while the page is being sent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from app.db import Database
from app.letters.models import Letter, LetterTally
from app.organizers.service import Actor, record
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus

BATCH_SIZE = 1000
"""Signers read per query (and per short session) by `iter_signers`."""


@dataclass(frozen=True, slots=True)
class PacketSigner:
    name: str
    title: str
    organization: str
    group: str
    """The grouping key: the organization lower-cased by the database; "" for a signer
    without an organization (the last group)."""
    position: int


@dataclass(frozen=True, slots=True)
class SignerGroup:
    organization: str
    """As the group's first signer wrote it; "" for the signers without one."""
    signers: Iterator[PacketSigner]
    """Lazy: read it once, in order, before moving to the next group."""


def _counted(letter_id: int) -> list[ColumnElement[bool]]:
    return [
        Signature.letter_id == letter_id,
        Signature.status == SignatureStatus.VERIFIED,
        Signature.hidden.is_(False),
    ]


def _listed(letter_id: int) -> Select[str, str, str, str, int | None]:
    group = func.lower(Signature.organization)
    return select(
        Signature.name, Signature.title, Signature.organization, group, Signature.position
    ).where(*_counted(letter_id), Signature.display == SignatureDisplay.PUBLIC)


def _signers(rows: Iterable[tuple[str, str, str, str, int | None]]) -> list[PacketSigner]:
    return [
        PacketSigner(name, title, organization, group, int(position or 0))
        for name, title, organization, group, position in rows
    ]


def signers_batch(
    session: Session, *, letter_id: int, after: PacketSigner | None = None, limit: int = BATCH_SIZE
) -> list[PacketSigner]:
    """The next `limit` listed signers in packet order after `after` (the last signer
    of the previous batch; None to start)."""
    group = func.lower(Signature.organization)
    batch: list[PacketSigner] = []
    after_position: int | None = None
    if after is None or after.group != "":
        statement = _listed(letter_id).where(Signature.organization != "")
        if after is not None:
            statement = statement.where(
                or_(
                    group > after.group,
                    and_(group == after.group, Signature.position > after.position),
                )
            )
        batch = _signers(
            session.execute(statement.order_by(group, Signature.position).limit(limit)).all()
        )
        if len(batch) == limit:
            return batch
    else:
        after_position = after.position
    statement = _listed(letter_id).where(Signature.organization == "")
    if after_position is not None:
        statement = statement.where(Signature.position > after_position)
    batch += _signers(
        session.execute(statement.order_by(Signature.position).limit(limit - len(batch))).all()
    )
    return batch


def iter_signers(
    database: Database, *, letter_id: int, batch_size: int | None = None
) -> Iterator[PacketSigner]:
    """Every listed signer in packet order, one short read session per batch (none is
    open between batches, so a slow reader holds no connection)."""
    size = batch_size or BATCH_SIZE
    after: PacketSigner | None = None
    while True:
        with database.read() as session:
            batch = signers_batch(session, letter_id=letter_id, after=after, limit=size)
        yield from batch
        if len(batch) < size:
            return
        after = batch[-1]


def group_signers(signers: Iterable[PacketSigner]) -> Iterator[SignerGroup]:
    """Consecutive signers of one organization as one group (lazily: a group's signers
    are read from `signers` as the group is read)."""
    for _, members in itertools.groupby(signers, key=lambda signer: signer.group):
        first = next(members)
        # The group's own iterator, read once by whoever reads the group.
        yield SignerGroup(first.organization, itertools.chain([first], members))  # noqa: B031


def count_anonymous(session: Session, *, letter_id: int) -> int:
    """Verified anonymous signers (not hidden): counted in the packet, never named."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(*_counted(letter_id), Signature.display == SignatureDisplay.ANONYMOUS)
        )
        or 0
    )


def anonymous_count(database: Database, *, letter_id: int) -> int:
    """`count_anonymous` in a short session of its own (asked for at the end of the
    stream, after the listed signers)."""
    with database.read() as session:
        return count_anonymous(session, letter_id=letter_id)


def verified_count(session: Session, *, letter_id: int) -> int:
    """The letter's tally (the counter row)."""
    count = session.scalar(
        select(LetterTally.verified_count).where(LetterTally.letter_id == letter_id)
    )
    return int(count or 0)


def start_packet(session: Session, *, letter: Letter, actor: Actor) -> int:
    """Before the packet is sent: its tally, and the download in the audit log (in the
    caller's transaction)."""
    count = verified_count(session, letter_id=letter.id)
    record(session, actor=actor, letter_id=letter.id, action="letter.download_packet", count=count)
    return count
