"""A letter's signatures over time: how many were confirmed each day (UTC), and the
running total.

Rules kept here:
- A signature counts as the tally counts it: status `verified`, hidden ones included
  (a moderator hides a signer from the list, not from the count). Withdrawn and removed
  ones leave the day they were confirmed on. So the running total at the last point is
  the public count (exactly, for a letter below `CACHE_FROM` signatures).
- A signature belongs to the UTC day of `verified_at`, its confirmation.
- Periods run from the first signature's to today's (or, for a letter no longer open,
  its closing day's, or its last signature's); a period without a signature is there
  with 0.
- At most `MAX_POINTS` periods of a kind: days while the signatures span at most that
  many days, then weeks (Monday to Sunday), then months.
- One GROUP BY per computation, by day, whatever the letter's size; nothing per
  signature. A letter with at least `CACHE_FROM` counted signatures reuses, in each
  process, the days computed at most `CACHE_SECONDS` ago, as its breakdown does (D84):
  the GROUP BY reads every signature.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, String, func, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.letters.models import Letter
from app.letters.service import signature_count
from app.signatures.breakdown import CACHE_FROM, CACHE_LETTERS, CACHE_SECONDS
from app.signatures.models import Signature, SignatureStatus
from app.signatures.schemas import Timeline, TimelinePoint

MAX_POINTS = 180
"""Periods of one kind at most before the next longer kind is used."""

Interval = Literal["day", "week", "month"]


def _day_of(session: Session) -> ColumnElement[str]:
    """`verified_at`'s UTC day as text, `YYYY-MM-DD`, on either database."""
    if session.get_bind().dialect.name == "sqlite":
        # Stored as UTC text, "YYYY-MM-DD HH:MM:SS.ffffff".
        return func.substr(Signature.verified_at, 1, 10, type_=String)
    # timezone('UTC', timestamptz) is the UTC wall time, whatever the session's zone.
    return func.to_char(func.timezone("UTC", Signature.verified_at), "YYYY-MM-DD", type_=String)


def daily_counts(session: Session, *, letter_id: int) -> dict[date, int]:
    """Counted signatures by the UTC day they were confirmed (days with none left out).
    One GROUP BY."""
    day = _day_of(session).label("day")
    rows = session.execute(
        select(day, func.count())
        .where(Signature.letter_id == letter_id, Signature.status == SignatureStatus.VERIFIED)
        .group_by(day)
    )
    return {date.fromisoformat(str(text)[:10]): int(count) for text, count in rows}


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _month(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _interval(first: date, last: date) -> Interval:
    days = (last - first).days + 1
    if days <= MAX_POINTS:
        return "day"
    if days <= MAX_POINTS * 7:
        return "week"
    return "month"


_STARTS: dict[Interval, Callable[[date], date]] = {
    "day": lambda day: day,
    "week": _week,
    "month": _month,
}
_NEXT: dict[Interval, Callable[[date], date]] = {
    "day": lambda day: day + timedelta(days=1),
    "week": lambda day: day + timedelta(days=7),
    "month": _next_month,
}


def _last_day(letter: Letter, days: dict[date, int], now: datetime) -> date:
    """Today for an open letter; else its closing day (if it has passed), or its last
    signature's day. Never before the last signature's day."""
    last_signed = max(days)
    if letter.is_open(now):
        end = now.date()
    elif letter.closes_at is not None and letter.closes_at <= now:
        end = letter.closes_at.date()
    else:
        end = last_signed
    return max(end, last_signed)


def build_timeline(days: dict[date, int], *, last_day: date) -> Timeline:
    """The periods from the first signature's day to `last_day`, gaps filled with 0."""
    if not days:
        return Timeline(interval="day", points=[], total=0)
    first = min(days)
    interval = _interval(first, last_day)
    start_of, following = _STARTS[interval], _NEXT[interval]
    counts: dict[date, int] = {}
    for day, count in days.items():
        counts[start_of(day)] = counts.get(start_of(day), 0) + count
    points: list[TimelinePoint] = []
    total = 0
    period, end = start_of(first), start_of(last_day)
    while period <= end:
        count = counts.get(period, 0)
        total += count
        points.append(TimelinePoint(start=period, count=count, total=total))
        period = following(period)
    return Timeline(interval=interval, points=points, total=total)


_Key = tuple[str, int]
_cached: dict[_Key, tuple[float, dict[date, int]]] = {}
_cache_lock = threading.Lock()


def _days(session: Session, letter: Letter, count: int | None) -> dict[date, int]:
    if count is None:
        count = signature_count(session, letter_id=letter.id)
    if count < CACHE_FROM:
        return daily_counts(session, letter_id=letter.id)
    key = (session.get_bind().engine.url.render_as_string(), letter.id)
    now = time.monotonic()
    with _cache_lock:
        found = _cached.get(key)
    if found is not None and now - found[0] < CACHE_SECONDS:
        return found[1]
    days = daily_counts(session, letter_id=letter.id)
    with _cache_lock:
        _cached.pop(key, None)
        _cached[key] = (now, days)
        while len(_cached) > CACHE_LETTERS:
            del _cached[next(iter(_cached))]
    return days


def letter_timeline(
    session: Session, *, letter: Letter, count: int | None = None, now: datetime | None = None
) -> Timeline:
    """The letter's timeline (one GROUP BY; a big letter's may be up to `CACHE_SECONDS`
    old). `count`: the letter's tally, when the caller has it (saves a query)."""
    days = _days(session, letter, count)
    if not days:
        return build_timeline(days, last_day=(now or utcnow()).date())
    return build_timeline(days, last_day=_last_day(letter, days, now or utcnow()))


def forget_cached_timelines() -> None:
    """Drops every cached timeline (tests)."""
    with _cache_lock:
        _cached.clear()
