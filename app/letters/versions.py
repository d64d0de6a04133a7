"""A letter's text versions: what changed after people signed, and how many signed an
earlier text.

The rule (`save_text`): version 1 is made with the letter. Changing the title or the
body of a letter that someone has already signed (a confirmed signature, withdrawn or
removed ones included, or a submission waiting for confirmation, of the current
version) makes the next version; before that, the current version is corrected in
place. Each signature records the version its signer saw (`version` on the
submission, copied to the signature), so the public page can say how many signed an
earlier text, and `/letters/{slug}/changes` shows what changed.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Integer, String, column, exists, func, or_, select, table
from sqlalchemy.orm import Session

from app.db import utcnow
from app.letters.models import Letter, LetterVersion

# The signatures domain sits above this one (it imports letters), so its tables are
# named here, with the few columns these queries read (as organizers name `letters`).
_signatures = table(
    "signatures",
    column("letter_id", Integer),
    column("version", Integer),
    column("status", String),
)
_pending = table("pending_signatures", column("letter_id", Integer), column("version", Integer))
VERIFIED = "verified"
"""`SignatureStatus.VERIFIED`, as stored."""


@dataclass(frozen=True, slots=True)
class EditNotice:
    """What the public page says about a letter edited after people signed it."""

    edited_at: datetime
    signed_earlier: int
    """Confirmed signatures (counted now) of earlier versions of the text."""


def edit_notice(session: Session, *, letter: Letter) -> EditNotice | None:
    """None unless the letter has more than one version (then one COUNT)."""
    if letter.version <= 1 or letter.edited_at is None:
        return None
    signed_earlier = session.scalar(
        select(func.count())
        .select_from(_signatures)
        .where(
            _signatures.c.letter_id == letter.id,
            _signatures.c.status == VERIFIED,
            _signatures.c.version < letter.version,
        )
    )
    return EditNotice(edited_at=letter.edited_at, signed_earlier=int(signed_earlier or 0))


def has_signatures_of_current_version(session: Session, *, letter: Letter) -> bool:
    """Whether anyone has signed (or is confirming) the text as it is now."""
    signed = exists().where(
        _signatures.c.letter_id == letter.id, _signatures.c.version == letter.version
    )
    pending = exists().where(
        _pending.c.letter_id == letter.id, _pending.c.version == letter.version
    )
    return bool(session.scalar(select(or_(signed, pending))))


def save_text(
    session: Session, *, letter: Letter, title: str, body_markdown: str, now: datetime
) -> bool:
    """Records the letter's new title and body (already set on `letter` by the caller,
    or about to be) as a version. Returns True when a new version was made."""
    current = session.scalar(
        select(LetterVersion).where(
            LetterVersion.letter_id == letter.id, LetterVersion.number == letter.version
        )
    )
    if current is not None and has_signatures_of_current_version(session, letter=letter):
        letter.version += 1
        letter.edited_at = now
        session.add(
            LetterVersion(
                letter_id=letter.id,
                number=letter.version,
                title=title,
                body_markdown=body_markdown,
                created_at=now,
            )
        )
        return True
    if current is None:  # a letter older than versions, or a lost row: start its record
        session.add(
            LetterVersion(
                letter_id=letter.id,
                number=letter.version,
                title=title,
                body_markdown=body_markdown,
                created_at=now,
            )
        )
    else:
        current.title = title
        current.body_markdown = body_markdown
    return False


def first_version(letter: Letter) -> LetterVersion:
    """Version 1 of a new letter (its id must be known)."""
    return LetterVersion(
        letter_id=letter.id,
        number=1,
        title=letter.title,
        body_markdown=letter.body_markdown,
        created_at=letter.created_at or utcnow(),
    )


# --- what changed ------------------------------------------------------------------------


class LineChange(StrEnum):
    SAME = "same"
    REMOVED = "removed"
    ADDED = "added"
    GAP = "gap"  # unchanged lines left out between two changes


@dataclass(frozen=True, slots=True)
class DiffLine:
    change: LineChange
    text: str


@dataclass(frozen=True, slots=True)
class VersionChanges:
    """One version, and what changed from the one before it (nothing for version 1)."""

    number: int
    created_at: datetime
    title: str
    previous_title: str | None
    """The earlier title when this version changed it, else None."""
    lines: list[DiffLine]
    """The Markdown source's changed lines with a little context; empty when only the
    title changed (and for version 1)."""


CONTEXT_LINES = 2


def diff_lines(before: str, after: str, *, context: int = CONTEXT_LINES) -> list[DiffLine]:
    """Line by line (difflib), the changed lines with `context` unchanged lines around
    them, and a GAP where unchanged lines are left out."""
    old, new = before.splitlines(), after.splitlines()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    last = list(matcher.get_opcodes())[-1]  # (grouping trims the cached opcodes)
    lines: list[DiffLine] = []
    for group in matcher.get_grouped_opcodes(context):
        if lines or group[0][1] > 0:
            lines.append(DiffLine(LineChange.GAP, ""))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [DiffLine(LineChange.SAME, text) for text in old[i1:i2]]
                continue
            lines += [DiffLine(LineChange.REMOVED, text) for text in old[i1:i2]]
            lines += [DiffLine(LineChange.ADDED, text) for text in new[j1:j2]]
    if lines and last[0] == "equal" and last[2] - last[1] > context:
        lines.append(DiffLine(LineChange.GAP, ""))
    return lines


def versions(session: Session, *, letter_id: int) -> Sequence[LetterVersion]:
    return session.scalars(
        select(LetterVersion)
        .where(LetterVersion.letter_id == letter_id)
        .order_by(LetterVersion.number)
    ).all()


def letter_changes(session: Session, *, letter_id: int) -> list[VersionChanges]:
    """Every version, newest first, each with what changed from the one before."""
    found = versions(session, letter_id=letter_id)
    changes: list[VersionChanges] = []
    previous: LetterVersion | None = None
    for version in found:
        changes.append(
            VersionChanges(
                number=version.number,
                created_at=version.created_at,
                title=version.title,
                previous_title=(
                    previous.title if previous and previous.title != version.title else None
                ),
                lines=(
                    diff_lines(previous.body_markdown, version.body_markdown) if previous else []
                ),
            )
        )
        previous = version
    return changes[::-1]
