"""The delivery packet's signers: the public list, grouped by organization, read in
keyset batches so that a letter of any size is streamed in constant memory.

Who is listed: verified signatures shown in public (display `public`) that a moderator
has not hidden, the same rule as the public signer list. Anonymous signers are only
counted, and so is a signer whose name waits for enough colleagues to sign
(`name_threshold`, app.signatures.badges): the packet may go to their employer.
Order: signers with an organization first, grouped case-insensitively
(`lower(organization)`, so "ACME" and "Acme" make one group) in that order, each group
in signing order (list position); then those without an organization, in signing
order. Each batch runs in its own short session (`iter_signers`): nothing is held open
while the page is being sent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from app.db import Database
from app.letters.models import Letter, LetterTally
from app.organizers.service import Actor, record
from app.signatures.badges import Crowds, crowd_sizes
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
    withheld: bool = False
    """The name waits for its threshold: read for the keyset only, never listed."""


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


Row = tuple[str, str, str, str, int | None, bool, str, int | None]


def _listed(letter_id: int) -> Select[str, str, str, str, int | None, bool, str, int | None]:
    group = func.lower(Signature.organization)
    return select(
        Signature.name,
        Signature.title,
        Signature.organization,
        group,
        Signature.position,
        Signature.show_domain,
        Signature.email_domain,
        Signature.name_threshold,
    ).where(*_counted(letter_id), Signature.display == SignatureDisplay.PUBLIC)


def _signers(session: Session, letter_id: int, rows: Sequence[Row]) -> list[PacketSigner]:
    """The batch's signers, each marked withheld when its name waits for its threshold
    (one GROUP BY for the batch, only when one of them waits)."""
    waiting = {domain for *_, show, domain, threshold in rows if threshold is not None and show}
    crowds = None
    if any(threshold is not None for *_, threshold in rows):
        letter = session.get(Letter, letter_id)
        assert letter is not None
        crowds = Crowds(letter, crowd_sizes(session, letter, waiting))
    return [
        PacketSigner(
            name,
            title,
            organization,
            group,
            int(position or 0),
            withheld=crowds is not None
            and not crowds.names_shown(
                display=SignatureDisplay.PUBLIC,
                show_domain=show,
                domain=domain,
                name_threshold=threshold,
            ),
        )
        for name, title, organization, group, position, show, domain, threshold in rows
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
            session,
            letter_id,
            session.execute(statement.order_by(group, Signature.position).limit(limit)).all(),
        )
        if len(batch) == limit:
            return batch
    else:
        after_position = after.position
    statement = _listed(letter_id).where(Signature.organization == "")
    if after_position is not None:
        statement = statement.where(Signature.position > after_position)
    batch += _signers(
        session,
        letter_id,
        session.execute(statement.order_by(Signature.position).limit(limit - len(batch))).all(),
    )
    return batch


def iter_signers(
    database: Database, *, letter_id: int, batch_size: int | None = None
) -> Iterator[PacketSigner]:
    """Every listed signer in packet order, one short read session per batch (none is
    open between batches, so a slow reader holds no connection). Withheld names are
    skipped (they are counted with the anonymous)."""
    size = batch_size or BATCH_SIZE
    after: PacketSigner | None = None
    while True:
        with database.read() as session:
            batch = signers_batch(session, letter_id=letter_id, after=after, limit=size)
        yield from (signer for signer in batch if not signer.withheld)
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
    """Verified signers (not hidden) counted in the packet but never named: anonymous
    ones, and public ones whose name waits for its threshold."""
    anonymous = int(
        session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(*_counted(letter_id), Signature.display == SignatureDisplay.ANONYMOUS)
        )
        or 0
    )
    waiting = session.execute(
        select(
            Signature.show_domain, Signature.email_domain, Signature.name_threshold, func.count()
        )
        .where(
            *_counted(letter_id),
            Signature.display == SignatureDisplay.PUBLIC,
            Signature.name_threshold.is_not(None),
        )
        .group_by(Signature.show_domain, Signature.email_domain, Signature.name_threshold)
    ).all()
    if not waiting:
        return anonymous
    letter = session.get(Letter, letter_id)
    assert letter is not None
    crowds = Crowds(
        letter, crowd_sizes(session, letter, {domain for show, domain, _, _ in waiting if show})
    )
    withheld = sum(
        int(count)
        for show, domain, threshold, count in waiting
        if not crowds.names_shown(
            display=SignatureDisplay.PUBLIC,
            show_domain=show,
            domain=domain,
            name_threshold=threshold,
        )
    )
    return anonymous + withheld


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
