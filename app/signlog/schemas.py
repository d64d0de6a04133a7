"""What the public API shows of a letter's signature log (`/api/v1/letters/{slug}/log`).

Hashes are standard base64 with padding (as in the signed checkpoint), times ISO 8601
in UTC with `Z`. Nothing here is personal: an entry is an event, a public reason code,
an hour and a commitment (SHA-256 of a receipt secret only the signer holds)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

ROOT_EXAMPLE = "2Bs5VMgNaDKq9pDEmsB7UOYBSTwnQb3ypDpmsVWtwTk="
COMMITMENT_EXAMPLE = "5f3a9c0e1d2b4a6f8e7d9c1b3a5f7e9d0c2b4a6f8e1d3c5b7a9f0e2d4c6b8a1f"
HOUR_EXAMPLE = "2026-11-28T03:00:00Z"
ORIGIN_EXAMPLE = "undersigned.example/letters/ice-out"
KEY_EXAMPLE = "undersigned.example+8a5c9e5f+AUsDqcFtr9wq7OnKTPb+0B6HW9TkhQPcHXhd09VNBp0k"


class CheckpointOut(BaseModel):
    """A signed checkpoint of a letter's log: how many entries it has, the tree head
    that commits to all of them, and the count they add up to."""

    origin: str = Field(
        description="The log's name, the first line of the checkpoint: the site's host "
        "and the letter's path.",
        examples=[ORIGIN_EXAMPLE],
    )
    size: int = Field(ge=0, description="Entries in the log at this checkpoint.", examples=[8311])
    root_hash: str = Field(
        description="The RFC 6962 Merkle tree head of those entries (base64).",
        examples=[ROOT_EXAMPLE],
    )
    adds: int = Field(ge=0, description="Entries that add a signature.", examples=[8400])
    removes: int = Field(
        ge=0,
        description="Entries that take one away (withdrawn, or removed by the organizers "
        "as a duplicate, a bot or invalid).",
        examples=[89],
    )
    count: int = Field(
        description="`adds` minus `removes`: the tally this checkpoint vouches for.",
        examples=[8311],
    )
    created_at: datetime | None = Field(
        description="When the checkpoint was signed; null for the empty log's.",
        examples=["2026-11-28T03:14:05Z"],
    )
    note: str = Field(
        description="The checkpoint as signed: a c2sp.org/tlog-checkpoint (origin, size, "
        "root hash) in a c2sp.org/signed-note with the site's Ed25519 key.",
        examples=[
            f"{ORIGIN_EXAMPLE}\n8311\n{ROOT_EXAMPLE}\n\n"
            "\u2014 undersigned.example ilyc8KAgl5/A9FAoUNu7hgaJMV5Vp9wMsDBZwzIgUQ5xj5MU...\n"
        ],
    )
    key: str = Field(
        description="The verifier key that signs the checkpoints (Go's note format, "
        "`name+keyid+base64`), as served at `/.well-known/undersigned-log-key`.",
        examples=[KEY_EXAMPLE],
    )
    receipt_prefix: int = Field(
        ge=0,
        description="How many hexadecimal digits of a commitment a receipt check sends "
        "to `lookup`: enough to find one's entry among a few dozen to a thousand "
        "others, never enough to point at it.",
        examples=[1],
    )
    unsequenced: int = Field(
        ge=0,
        description="Changes to the count made since, not yet in a checkpoint (the "
        "sequencer adds them within seconds). Always 0 for a past checkpoint.",
        examples=[0],
    )


class EntryOut(BaseModel):
    """One change to the letter's count."""

    index: int = Field(ge=0, description="The entry's place in the log, from 0.", examples=[0])
    leaf: str = Field(
        description="The exact text whose RFC 6962 leaf hash is in the tree: "
        "`undersigned-log/v1 <event> <reason> <hour> <commitment>`.",
        examples=[f"undersigned-log/v1 add confirmed {HOUR_EXAMPLE} {COMMITMENT_EXAMPLE}"],
    )
    event: Literal["add", "remove"] = Field(description="Whether it adds or takes away one.")
    reason: Literal["confirmed", "restored", "withdrawn", "duplicate", "bot", "invalid"] = Field(
        description="`confirmed` and `restored` add; `withdrawn` (by the signer), "
        "`duplicate`, `bot` and `invalid` (by the organizers) take away.",
        examples=["confirmed"],
    )
    hour: datetime = Field(
        description="When the change happened, to the hour (UTC).", examples=[HOUR_EXAMPLE]
    )
    commitment: str = Field(
        description="SHA-256 of the signer's receipt secret (hex). A removal carries the "
        "commitment of the signature it removes.",
        examples=[COMMITMENT_EXAMPLE],
    )


class EntriesOut(BaseModel):
    start: int = Field(ge=0, description="The first index asked for.", examples=[0])
    end: int = Field(ge=1, description="One past the last index asked for.", examples=[256])
    entries: list[EntryOut] = Field(description="Entries `start` to `end - 1`, in order.")


class InclusionProofOut(BaseModel):
    """RFC 6962 audit path: with the entry's leaf hash it rebuilds the tree head of
    `size` entries (RFC 9162 section 2.1.3.2)."""

    index: int = Field(ge=0, examples=[8310])
    size: int = Field(ge=1, examples=[8311])
    hashes: list[str] = Field(description="The path, leaf side first (base64).")


class ConsistencyProofOut(BaseModel):
    """RFC 6962 consistency proof: the tree of `first` entries is the start of the tree
    of `second` entries, unchanged (RFC 9162 section 2.1.4.2). Empty when they are
    equal."""

    first: int = Field(ge=1, examples=[8000])
    second: int = Field(ge=1, examples=[8311])
    hashes: list[str] = Field(description="The proof (base64).")


class LookupOut(BaseModel):
    """Every sequenced entry whose commitment starts with `prefix`: a receipt's own
    entries are among them, and the server cannot tell which."""

    prefix: str = Field(description="The prefix asked for, in lowercase.", examples=["5f"])
    size: int = Field(
        ge=0, description="The latest checkpoint's size: entries below it were searched."
    )
    entries: list[EntryOut] = Field(description="In log order.")
    truncated: bool = Field(
        description="True when there were more than could be sent: ask with a longer prefix."
    )
