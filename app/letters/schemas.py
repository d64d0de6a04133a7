from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.letters.models import LetterStatus

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
"""Every letter's slug: words of lowercase letters and digits, joined by hyphens."""
SLUG_MAX_LENGTH = 80


class LetterCreate(BaseModel):
    slug: str = Field(pattern=SLUG_PATTERN, min_length=1, max_length=SLUG_MAX_LENGTH)
    title: str = Field(min_length=1, max_length=200)
    summary: str = Field(default="", max_length=500)
    body_markdown: str = Field(min_length=1, max_length=100_000)
    addressed_to: str = Field(default="", max_length=300)
    goal: int | None = Field(default=None, ge=1)
    closes_at: datetime | None = None
    status: LetterStatus = LetterStatus.DRAFT


class LetterOut(BaseModel):
    slug: str
    title: str
    summary: str
    status: LetterStatus = Field(
        description="`open` or `closed`. A letter is closed once its `closes_at` has passed."
    )
    signature_count: int
    goal: int | None
    closes_at: datetime | None
    url: str


class LetterDetailOut(LetterOut):
    body_html: str
    addressed_to: str
    published_at: datetime | None


class LetterList(BaseModel):
    items: list[LetterOut]
