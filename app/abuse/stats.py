"""Seeing an attack: a letter's signing activity, for its organizers.

For a window (the last hour, by minute; or the last 24 hours, by hour) and one letter:
confirmed signatures and submissions per step, the email domains and the (hashed)
networks whose share rose against the letter's usual mix, and the attempts that were
trapped or refused, by kind. Each figure is one GROUP BY bounded by time; shares and
ranks are worked out here, in Python.

What exists to count (and what the page says about it):
- a confirmed signature keeps its email domain only when its signer is public;
- a submission keeps its domain until it is confirmed (or answered with an "already
  signed" note), and is deleted when its link expires;
- a submission's network is `source_hash`, a keyed hash (never an address), "" when it
  was not recorded; it is shown as a short opaque label.
Nothing here reads a name or an address.

The signatures domain sits above this one (it imports abuse), so its tables are named
here with the few columns these queries read, as `app.letters.versions` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    extract,
    func,
    select,
    table,
)
from sqlalchemy.orm import Session

from app.abuse.models import AbuseEvent
from app.db import UTCDateTime, utcnow
from app.errors import InvalidInput
from app.i18n import N_

_signatures = table(
    "signatures",
    column("letter_id", Integer),
    column("status", String),
    column("email_domain", String),
    column("verified_at", UTCDateTime()),
)
_pending = table(
    "pending_signatures",
    column("letter_id", Integer),
    column("email_domain", String),
    column("source_hash", String),
    column("created_at", UTCDateTime()),
)
VERIFIED, REMOVED = "verified", "removed"
"""`SignatureStatus.VERIFIED` and `.REMOVED`, as stored. Both arrived: a signature a
moderator removed (a bot's, say) still counts as activity; a withdrawn one does not."""

BASELINE = timedelta(days=7)
"""The letter's usual mix: the 7 days before the window."""
TOP = 10
"""At most this many trending domains, and networks."""
LABEL_LENGTH = 8
"""A network's label: the first hex characters of its keyed hash."""


class Window(StrEnum):
    HOUR = "hour"  # the last 60 minutes, by minute (the current minute so far included)
    DAY = "day"  # the last 24 hours, by hour (the current hour so far included)

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=1) if self is Window.HOUR else timedelta(hours=1)

    @property
    def steps(self) -> int:
        return 60 if self is Window.HOUR else 24


def parse_window(value: str) -> Window:
    try:
        return Window(value or Window.HOUR.value)
    except ValueError:
        message = N_("Choose the last hour or the last 24 hours.")
        raise InvalidInput(message, fields={"window": message}) from None


@dataclass(frozen=True, slots=True)
class Step:
    """One minute (or hour) of the window: [start, start + step)."""

    start: datetime
    confirmed: int
    submitted: int


@dataclass(frozen=True, slots=True)
class Trend:
    """A domain or a network: how often it was seen in the window, against before.

    Shares are fractions (0…1) of what has a known domain (or network) in each period;
    `rise` is the window's share minus the usual share (percentage points / 100)."""

    key: str
    """The domain, or the network's full keyed hash (never shown: see `label`)."""
    recent: int
    usual: int
    recent_share: float
    usual_share: float
    confirmed: int = 0
    """Domains: of `recent`, confirmed signatures (the rest are waiting submissions)."""
    removed: int = 0
    """Domains: of `confirmed`, removed by a moderator since."""

    @property
    def rise(self) -> float:
        return self.recent_share - self.usual_share

    @property
    def label(self) -> str:
        return self.key[:LABEL_LENGTH]


@dataclass(frozen=True, slots=True)
class Activity:
    window: Window
    now: datetime
    start: datetime
    """The window is [start, end): whole minutes (hours), the current one so far."""
    end: datetime
    baseline_start: datetime
    """The usual mix is [baseline_start, start)."""
    steps: list[Step]
    domains: list[Trend]
    """Up to TOP domains whose share rose, the highest rise first."""
    domains_seen: int
    """Signatures and submissions of the window with a known domain."""
    confirmed_without_domain: int
    """Confirmed signatures of the window whose domain is not kept (anonymous signers)."""
    networks: list[Trend]
    """Up to TOP networks whose share of submissions rose, the highest rise first."""
    submissions_without_network: int
    refused: list[tuple[str, int]]
    """Trapped or refused attempts of the window by kind, the most frequent first."""

    @property
    def confirmed(self) -> int:
        return sum(step.confirmed for step in self.steps)

    @property
    def submitted(self) -> int:
        return sum(step.submitted for step in self.steps)

    @property
    def refused_total(self) -> int:
        return sum(count for _, count in self.refused)

    @property
    def peak(self) -> int:
        """The highest count of one step (either series), at least 1 (a chart's scale)."""
        return max([1, *(max(step.confirmed, step.submitted) for step in self.steps)])


def _floor(moment: datetime, step: timedelta) -> datetime:
    seconds = int(step.total_seconds())
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def _step_index(
    session: Session, moment: ColumnElement[datetime], start: datetime, step: timedelta
) -> ColumnElement[int]:
    """Which step of the window a moment falls in: floor((moment - start) / step), in
    whole seconds (start is a whole minute; the window bounds the moments)."""
    width = int(step.total_seconds())
    origin = int(start.timestamp())
    if session.get_bind().dialect.name == "sqlite":
        # Stored as UTC text, "YYYY-MM-DD HH:MM:SS.ffffff". SQLite's date functions
        # round to the millisecond (12:34:59.9999996 would become 12:35:00), so the
        # fraction is cut off first; strftime('%s') then gives whole seconds since 1970.
        seconds = cast(func.strftime("%s", func.substr(moment, 1, 19)), Integer) - origin
        return seconds // width
    # extract(epoch …) of a timestamptz is absolute (no time zone of the session).
    return cast(func.floor((extract("epoch", moment) - origin) / width), Integer)


def _per_step(
    session: Session,
    where: Sequence[ColumnElement[bool]],
    moment: ColumnElement[datetime],
    start: datetime,
    step: timedelta,
    steps: int,
) -> dict[int, int]:
    index = _step_index(session, moment, start, step).label("step")
    rows = session.execute(select(index, func.count()).where(*where).group_by("step"))
    counts: dict[int, int] = {}
    for n, count in rows:
        # The WHERE keeps every row inside the window: an index outside it could only
        # come from rounding at an edge, and belongs to the edge's step.
        n = min(max(int(n), 0), steps - 1)
        counts[n] = counts.get(n, 0) + int(count)
    return counts


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {key: count / total for key, count in counts.items()} if total else {}


def _rising(trends: Iterable[Trend]) -> list[Trend]:
    """Those whose share rose, the highest rise first (then the most seen, then by
    key, so that the order is stable), at most TOP."""
    rising = [trend for trend in trends if trend.recent and trend.rise > 0]
    rising.sort(key=lambda trend: (-trend.rise, -trend.recent, trend.key))
    return rising[:TOP]


def activity(
    session: Session, *, letter_id: int, window: Window, now: datetime | None = None
) -> Activity:
    """The letter's activity in `window` up to `now` (six small queries)."""
    now = now or utcnow()
    step = window.step
    end = _floor(now, step) + step
    start = end - step * window.steps
    baseline_start = start - BASELINE

    # Confirmed signatures (verified or removed since) and submissions, per step.
    arrived = _signatures.c.status.in_((VERIFIED, REMOVED))
    sig_at = _signatures.c.verified_at
    confirmed = _per_step(
        session,
        [_signatures.c.letter_id == letter_id, arrived, sig_at >= start, sig_at < end],
        sig_at,
        start,
        step,
        window.steps,
    )
    sub_at = _pending.c.created_at
    in_window = and_(_pending.c.letter_id == letter_id, sub_at >= start, sub_at < end)
    submitted = _per_step(session, [in_window], sub_at, start, step, window.steps)
    steps = [
        Step(start=start + step * n, confirmed=confirmed.get(n, 0), submitted=submitted.get(n, 0))
        for n in range(window.steps)
    ]

    # Email domains: confirmed signatures of the window and of the 7 days before (the
    # usual mix counts those still counted), and the window's unconfirmed submissions.
    recent = sig_at >= start
    domain_rows = session.execute(
        select(
            _signatures.c.email_domain,
            func.sum(case((recent, 1), else_=0)),
            func.sum(case((and_(recent, _signatures.c.status == REMOVED), 1), else_=0)),
            func.sum(case((and_(~recent, _signatures.c.status == VERIFIED), 1), else_=0)),
        )
        .where(
            _signatures.c.letter_id == letter_id,
            arrived,
            sig_at >= baseline_start,
            sig_at < end,
        )
        .group_by(_signatures.c.email_domain)
    ).all()
    waiting_rows = session.execute(
        select(_pending.c.email_domain, func.count())
        .where(in_window, _pending.c.email_domain != "")
        .group_by(_pending.c.email_domain)
    ).all()
    confirmed_by: dict[str, int] = {}
    removed_by: dict[str, int] = {}
    usual_by: dict[str, int] = {}
    without_domain = 0
    for domain, in_recent, removed, usual in domain_rows:
        if not domain:
            without_domain = int(in_recent or 0)
            continue
        confirmed_by[domain] = int(in_recent or 0)
        removed_by[domain] = int(removed or 0)
        usual_by[domain] = int(usual or 0)
    seen_by = dict(confirmed_by)
    for domain, count in waiting_rows:
        seen_by[domain] = seen_by.get(domain, 0) + int(count)
    seen_by = {domain: count for domain, count in seen_by.items() if count}
    usual_by = {domain: count for domain, count in usual_by.items() if count}
    seen_share, usual_share = _shares(seen_by), _shares(usual_by)
    domains = _rising(
        Trend(
            key=domain,
            recent=count,
            usual=usual_by.get(domain, 0),
            recent_share=seen_share[domain],
            usual_share=usual_share.get(domain, 0.0),
            confirmed=confirmed_by.get(domain, 0),
            removed=removed_by.get(domain, 0),
        )
        for domain, count in seen_by.items()
    )

    # Networks: submissions of the window against those of the 7 days before (which
    # exist only while their links have not expired).
    network_rows = session.execute(
        select(
            _pending.c.source_hash,
            func.sum(case((sub_at >= start, 1), else_=0)),
            func.sum(case((sub_at < start, 1), else_=0)),
        )
        .where(_pending.c.letter_id == letter_id, sub_at >= baseline_start, sub_at < end)
        .group_by(_pending.c.source_hash)
    ).all()
    recent_by: dict[str, int] = {}
    before_by: dict[str, int] = {}
    without_network = 0
    for source, in_recent, before in network_rows:
        if not source:
            without_network = int(in_recent or 0)
            continue
        if in_recent:
            recent_by[source] = int(in_recent)
        if before:
            before_by[source] = int(before)
    recent_share, before_share = _shares(recent_by), _shares(before_by)
    networks = _rising(
        Trend(
            key=source,
            recent=count,
            usual=before_by.get(source, 0),
            recent_share=recent_share[source],
            usual_share=before_share.get(source, 0.0),
        )
        for source, count in recent_by.items()
    )

    # Trapped and refused attempts, by kind.
    refused_rows = session.execute(
        select(AbuseEvent.kind, func.count())
        .where(
            AbuseEvent.letter_id == letter_id,
            AbuseEvent.created_at >= start,
            AbuseEvent.created_at < end,
        )
        .group_by(AbuseEvent.kind)
    ).all()
    refused = sorted(((kind, int(count)) for kind, count in refused_rows),
                     key=lambda row: (-row[1], row[0]))  # fmt: skip

    return Activity(
        window=window,
        now=now,
        start=start,
        end=end,
        baseline_start=baseline_start,
        steps=steps,
        domains=domains,
        domains_seen=sum(seen_by.values()),
        confirmed_without_domain=without_domain,
        networks=networks,
        submissions_without_network=without_network,
        refused=refused,
    )
