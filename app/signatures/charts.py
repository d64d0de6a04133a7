"""The letter page's charts, drawn on the server as SVG: signatures over time (the
running total) and who signed (the breakdown's groups as bars).

Pure functions: data in, markup out. Every text is escaped; nothing is styled inline
(the Content-Security-Policy forbids `style=`): shapes carry classes, styled in
static/style.css. Each SVG is `role="img"`, named by the caption the template gives it
(`labelled_by`) and described by the numbers (`described_by`): the charts show what a
table next to them says, never more.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from app.i18n import format_day, format_number
from app.i18n import gettext as _
from app.signatures.breakdown import Breakdown, BreakdownDimension
from app.signatures.schemas import Timeline

WIDTH = 400
"""Of the viewBox; the SVG scales to its container (static/style.css)."""
TIMELINE_HEIGHT = 180
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 12, 28
"""The timeline's margins: numbers on the left, days below."""
MAX_BARS = 10
"""Groups drawn as bars at most; the rest are drawn together with "other"."""
BAR_ROW = 26
BAR_HEIGHT = 16
LABEL_WIDTH = 160
LABEL_CHARS = 20
"""A bar's label is cut to this many characters (the table has it whole)."""


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".removesuffix(".0")


def _nice_top(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least `value` (at least 1)."""
    scale = 1
    while True:
        for step in (1, 2, 2.5, 5):
            top = int(step * scale)
            if top >= value and step * scale == top:
                return top
        scale *= 10


def _svg(height: int, labelled_by: str, described_by: str, css: str, body: str) -> Markup:
    """`body`: markup built here, every text in it escaped."""
    return Markup(  # noqa: S704 (every text in it is escaped)
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg {css}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{escape(labelled_by)}" aria-describedby="{escape(described_by)}">'
        f"{body}</svg>"
    )


def timeline_svg(timeline: Timeline, *, labelled_by: str, described_by: str) -> Markup:
    """The running total as an area under a line, with its scale on the left and the
    first and last periods below. Empty markup when nobody has signed."""
    points = timeline.points
    if not points:
        return Markup("")
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = TIMELINE_HEIGHT - TOP - BOTTOM
    base = TOP + plot_height
    top = _nice_top(timeline.total)

    def x(index: int) -> float:
        return LEFT + plot_width * index / max(len(points) - 1, 1)

    def y(total: int) -> float:
        return TOP + plot_height * (1 - total / top)

    parts: list[str] = []
    for value in (0, top // 2, top) if top > 1 else (0, top):
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
            f'y1="{_n(y(value))}" y2="{_n(y(value))}"/>'
            f'<text class="chart-text" x="{LEFT - 6}" y="{_n(y(value) + 4)}" '
            f'text-anchor="end">{escape(format_number(value))}</text>'
        )
    coords = [(x(i), y(point.total)) for i, point in enumerate(points)]
    if len(coords) == 1:  # one period: a level line across the plot
        coords = [(LEFT, coords[0][1]), (WIDTH - RIGHT, coords[0][1])]
    line = " ".join(f"{_n(cx)},{_n(cy)}" for cx, cy in coords)
    parts.append(
        f'<polygon class="chart-area" points="{_n(coords[0][0])},{base} {line} '
        f'{_n(coords[-1][0])},{base}"/>'
        f'<polyline class="chart-line" fill="none" points="{line}"/>'
    )
    first, last = points[0].start, points[-1].start
    if first == last:
        parts.append(
            f'<text class="chart-text" x="{_n(LEFT + plot_width / 2)}" y="{TIMELINE_HEIGHT - 8}" '
            f'text-anchor="middle">{escape(format_day(first, "medium"))}</text>'
        )
    else:
        parts.append(
            f'<text class="chart-text" x="{LEFT}" y="{TIMELINE_HEIGHT - 8}" '
            f'text-anchor="start">{escape(format_day(first, "medium"))}</text>'
            f'<text class="chart-text" x="{WIDTH - RIGHT}" y="{TIMELINE_HEIGHT - 8}" '
            f'text-anchor="end">{escape(format_day(last, "medium"))}</text>'
        )
    return _svg(TIMELINE_HEIGHT, labelled_by, described_by, "chart-timeline", "".join(parts))


def _label(name: str, kind: str) -> str:
    text = "@" + name if kind == "domain" else name
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1].rstrip() + "…"


def bar_rows(dimension: BreakdownDimension) -> list[tuple[str, int]]:
    """(label, signers) per bar: the `MAX_BARS` largest groups, then "other" holding the
    smaller groups and any group beyond those."""
    shown = dimension.groups[:MAX_BARS]
    rows = [(_label(group.name, group.kind), group.count) for group in shown]
    rest = dimension.other + sum(group.count for group in dimension.groups[MAX_BARS:])
    if rest:
        rows.append((_("Other"), rest))
    return rows


def bars_svg(dimension: BreakdownDimension, *, labelled_by: str, described_by: str) -> Markup:
    """One horizontal bar per group, largest first, its count at its end. Empty markup
    when the dimension counts nobody."""
    rows = bar_rows(dimension)
    if not rows:
        return Markup("")
    height = len(rows) * BAR_ROW + 8
    longest = max(count for _label_text, count in rows)
    room = WIDTH - LABEL_WIDTH - 72
    parts: list[str] = []
    for index, (label, count) in enumerate(rows):
        top = 4 + index * BAR_ROW
        width = max(room * count / longest, 1)
        middle = top + BAR_HEIGHT / 2 + 4
        parts.append(
            f'<text class="chart-text" x="{LABEL_WIDTH - 8}" y="{_n(middle)}" '
            f'text-anchor="end">{escape(label)}</text>'
            f'<rect class="chart-bar" x="{LABEL_WIDTH}" y="{top}" width="{_n(width)}" '
            f'height="{BAR_HEIGHT}"/>'
            f'<text class="chart-text" x="{_n(LABEL_WIDTH + width + 6)}" y="{_n(middle)}">'
            f"{escape(format_number(count))}</text>"
        )
    return _svg(height, labelled_by, described_by, "chart-bars", "".join(parts))


@dataclass(frozen=True)
class LetterCharts:
    """The letter page's charts (empty markup for one with nothing to draw)."""

    timeline: Markup
    verified_domains: Markup
    organizations: Markup


def letter_charts(timeline: Timeline, breakdown: Breakdown | None) -> LetterCharts:
    """The ids are those of templates/signatures/_charts.html (captions) and
    signers_breakdown.html (the breakdown's tables)."""
    empty = Markup("")
    return LetterCharts(
        timeline=timeline_svg(
            timeline, labelled_by="timeline-caption", described_by="timeline-summary"
        ),
        verified_domains=bars_svg(
            breakdown.verified_domains,
            labelled_by="chart-verified-caption",
            described_by="breakdown-verified",
        )
        if breakdown
        else empty,
        organizations=bars_svg(
            breakdown.organizations,
            labelled_by="chart-organizations-caption",
            described_by="breakdown-organizations",
        )
        if breakdown
        else empty,
    )
