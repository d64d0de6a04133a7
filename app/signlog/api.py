"""/api/v1/letters/{slug}/log: a letter's signature log, for anyone to check.

Checkpoints, entries, RFC 6962 proofs and receipt buckets. Everything about a tree size
up to the latest checkpoint's is fixed forever (entries are only ever appended), so
those answers are cached as immutable; the latest checkpoint and a lookup (which read
the latest size) are public for a few seconds, like the tally (app/web/cache.py)."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.config import Settings
from app.letters import service as letters
from app.letters.api import LetterSlug
from app.signlog import keys
from app.signlog import service as log
from app.signlog.schemas import (
    CheckpointOut,
    ConsistencyProofOut,
    EntriesOut,
    EntryOut,
    InclusionProofOut,
    LookupOut,
)
from app.transparency.note import MAX_TREE_SIZE
from app.web import ratelimit
from app.web.cache import NOT_MODIFIED, public
from app.web.deps import AppSettings, PublicReadSession
from app.web.errors import error_responses

IMMUTABLE = "public, max-age=31536000, immutable"

router = APIRouter(
    prefix="/api/v1/letters/{slug}/log",
    tags=["signature log"],
    dependencies=[Depends(ratelimit.limit_api)],
)

NOT_FOUND = "There is no published letter at this address (`letter_not_found`)."
OUT_OF_RANGE = (
    "A value is out of range (`invalid_input`; `fields` says which): beyond the latest "
    "checkpoint, or not in the order asked for."
)
Position = Annotated[int, Query(ge=0, le=MAX_TREE_SIZE)]
Size = Annotated[int, Query(ge=1, le=MAX_TREE_SIZE)]


def immutable(response: Response) -> None:
    """The answer is about a tree size the log has already signed: it never changes."""
    response.headers["cache-control"] = IMMUTABLE
    response.headers["vary"] = "Accept-Encoding"


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(value).decode() for value in hashes]


def _checkpoint_out(
    view: log.CheckpointView, settings: Settings, *, unsequenced: int
) -> CheckpointOut:
    return CheckpointOut(
        origin=view.origin,
        size=view.size,
        root_hash=view.root_base64,
        adds=view.adds,
        removes=view.removes,
        count=view.count,
        # To the second: the moment of signing, not the database's microseconds.
        created_at=view.created_at.replace(microsecond=0) if view.created_at else None,
        note=view.note,
        key=keys.verifier(settings).vkey(),
        receipt_prefix=view.receipt_prefix,
        unsequenced=unsequenced,
    )


def _entry_out(entry: log.EntryView) -> EntryOut:
    return EntryOut(
        index=entry.index,
        leaf=entry.leaf,
        event=entry.event,
        reason=entry.reason,
        hour=entry.hour,
        commitment=entry.commitment,
    )


@router.get(
    "/checkpoint",
    responses=error_responses(
        404,
        422,
        descriptions={
            404: NOT_FOUND + " Or, with `size`, the log never signed a checkpoint of that "
            "size (`not_found`).",
            422: "`size` is not a whole number from 0 (`invalid_input`).",
        },
    )
    | NOT_MODIFIED,
)
def checkpoint(
    slug: LetterSlug,
    session: PublicReadSession,
    settings: AppSettings,
    response: Response,
    size: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_TREE_SIZE,
            description="A past checkpoint of exactly this many entries (every one the log "
            "signed is kept). Without it: the latest.",
        ),
    ] = None,
) -> CheckpointOut:
    """The letter's latest signed checkpoint, or a past one. The public tally is the
    latest `count`, once the `unsequenced` changes on their way are in it. Verify `note` with
    `key` (also at `/.well-known/undersigned-log-key`). The latest is cached for a few
    seconds (`Cache-Control`, `ETag`); a past one forever."""
    letter = letters.get_public_letter(session, slug=slug).letter
    if size is None:
        view = log.latest(session, settings, letter_id=letter.id, slug=slug)
        public(response, settings)
        return _checkpoint_out(
            view, settings, unsequenced=log.unsequenced(session, letter_id=letter.id)
        )
    view = log.checkpoint_at(session, settings, letter_id=letter.id, slug=slug, size=size)
    if size > 0:
        immutable(response)
    else:  # the empty log's, signed when asked: it follows the key
        public(response, settings)
    return _checkpoint_out(view, settings, unsequenced=0)


def _latest_size(session: PublicReadSession, settings: Settings, slug: str) -> tuple[int, int]:
    """(letter id, the latest checkpoint's size)."""
    letter = letters.get_public_letter(session, slug=slug).letter
    return letter.id, log.latest(session, settings, letter_id=letter.id, slug=slug).size


@router.get(
    "/entries",
    responses=error_responses(
        404,
        422,
        descriptions={
            404: NOT_FOUND,
            422: "Not 0 <= `start` < `end` <= the latest checkpoint's size, or more than "
            f"{log.MAX_ENTRIES} entries asked for (`invalid_input`).",
        },
    )
    | NOT_MODIFIED,
)
def entries(
    slug: LetterSlug,
    session: PublicReadSession,
    settings: AppSettings,
    response: Response,
    start: Annotated[int, Query(ge=0, le=MAX_TREE_SIZE, description="The first index.")],
    end: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_TREE_SIZE,
            description="One past the last index: at most the latest checkpoint's size and "
            f"`start` + {log.MAX_ENTRIES}.",
        ),
    ],
) -> EntriesOut:
    """Entries `start` to `end - 1` of the log, each with its leaf text (hash it as an
    RFC 6962 leaf to rebuild the tree). Cached forever: a sequenced entry never changes."""
    letter_id, size = _latest_size(session, settings, slug)
    found = log.entries(session, letter_id=letter_id, start=start, end=end, size=size)
    immutable(response)
    return EntriesOut(start=start, end=end, entries=[_entry_out(entry) for entry in found])


@router.get(
    "/proof/inclusion",
    responses=error_responses(
        404,
        422,
        descriptions={
            404: NOT_FOUND,
            422: "Not 0 <= `index` < `size` <= the latest checkpoint's size (`invalid_input`).",
        },
    )
    | NOT_MODIFIED,
)
def inclusion_proof(
    slug: LetterSlug,
    session: PublicReadSession,
    settings: AppSettings,
    response: Response,
    index: Annotated[int, Query(ge=0, le=MAX_TREE_SIZE, description="The entry's index.")],
    size: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_TREE_SIZE,
            description="The tree size to prove it in (a checkpoint's, at most the latest).",
        ),
    ],
) -> InclusionProofOut:
    """The proof that entry `index` is in the tree of `size` entries. Cached forever."""
    letter_id, latest_size = _latest_size(session, settings, slug)
    hashes = log.inclusion_proof(
        session, letter_id=letter_id, index=index, size=size, latest_size=latest_size
    )
    immutable(response)
    return InclusionProofOut(index=index, size=size, hashes=_b64(hashes))


@router.get(
    "/proof/consistency",
    responses=error_responses(
        404,
        422,
        descriptions={
            404: NOT_FOUND,
            422: "Not 1 <= `first` <= `second` <= the latest checkpoint's size (`invalid_input`).",
        },
    )
    | NOT_MODIFIED,
)
def consistency_proof(
    slug: LetterSlug,
    session: PublicReadSession,
    settings: AppSettings,
    response: Response,
    first: Annotated[
        int, Query(ge=1, le=MAX_TREE_SIZE, description="The older tree size (one you saved).")
    ],
    second: Annotated[
        int, Query(ge=1, le=MAX_TREE_SIZE, description="The newer tree size, at most the latest.")
    ],
) -> ConsistencyProofOut:
    """The proof that the log of `first` entries is the start of the log of `second`
    entries: nothing in it was changed or taken out since. Cached forever."""
    letter_id, latest_size = _latest_size(session, settings, slug)
    hashes = log.consistency_proof(
        session, letter_id=letter_id, first=first, second=second, latest_size=latest_size
    )
    immutable(response)
    return ConsistencyProofOut(first=first, second=second, hashes=_b64(hashes))


@router.get(
    "/lookup",
    responses=error_responses(
        404,
        422,
        descriptions={
            404: NOT_FOUND,
            422: "`prefix` is not hexadecimal, or shorter than the latest checkpoint's "
            "`receipt_prefix` (`invalid_input`).",
        },
    )
    | NOT_MODIFIED,
)
def lookup(
    slug: LetterSlug,
    session: PublicReadSession,
    settings: AppSettings,
    response: Response,
    prefix: Annotated[
        str,
        Query(
            max_length=64,
            pattern=r"^[0-9a-fA-F]*$",
            description="The first hexadecimal digits of a commitment: at least the "
            "checkpoint's `receipt_prefix` of them. Send no more than that, so that the "
            "server cannot tell which entry you hold.",
            examples=["5"],
        ),
    ],
) -> LookupOut:
    """Every entry of the latest checkpoint whose commitment starts with `prefix`: a
    receipt checks its own entries (its add, and a removal if there is one) among them
    without saying which they are. Cached for a few seconds (`Cache-Control`, `ETag`)."""
    letter_id, size = _latest_size(session, settings, slug)
    found, truncated = log.lookup(session, letter_id=letter_id, prefix=prefix, size=size)
    public(response, settings)
    return LookupOut(
        prefix=prefix.lower(),
        size=size,
        entries=[_entry_out(entry) for entry in found],
        truncated=truncated,
    )
