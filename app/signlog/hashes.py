"""A letter's stored tree hashes in the `log_hashes` table, as a `HashReader`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.signlog.models import LogHash
from app.transparency.merkle import HashStoreError

_CHUNK = 500
"""Indexes per SELECT (well under SQLite's bound-parameter limit)."""


class TableHashes:
    """`get_hashes` for one letter's tree, in the caller's session."""

    def __init__(self, session: Session, letter_id: int) -> None:
        self.session = session
        self.letter_id = letter_id

    def get_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        wanted = sorted(set(indexes))
        found: dict[int, bytes] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            found.update(
                self.session.execute(
                    select(LogHash.idx, LogHash.hash).where(
                        LogHash.letter_id == self.letter_id, LogHash.idx.in_(chunk)
                    )
                ).all()
            )
        try:
            return [found[i] for i in indexes]
        except KeyError as missing:
            raise HashStoreError(
                f"stored hash {missing} of letter {self.letter_id} is missing"
            ) from None

    def store(self, start: int, hashes: Sequence[bytes]) -> None:
        """Writes `hashes` at stored indexes start, start+1, … (the sequencer's append)."""
        if hashes:
            self.session.execute(
                insert(LogHash),
                [
                    {"letter_id": self.letter_id, "idx": start + offset, "hash": value}
                    for offset, value in enumerate(hashes)
                ],
            )
