"""The letter page's charts: the SVG (well-formed, escaped, accessible, no inline
style), the timeline API, the page's figures with their numbers, and axe-core."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database, utcnow
from app.letters.service import add_to_tally
from app.main import create_app
from app.signatures import charts
from app.signatures.breakdown import BreakdownDimension, BreakdownGroup
from app.signatures.models import SignatureStatus
from app.signatures.schemas import Timeline
from app.signatures.timeline import build_timeline
from tests.signatures.test_badges import add
from tests.support.browser import axe_violations, chromium
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import make_letter
from tests.support.live import serve
from tests.support.ports import free_socket

SVG = "{http://www.w3.org/2000/svg}"


def _parsed(markup: str) -> ElementTree.Element:
    assert "style=" not in markup and "<script" not in markup
    return ElementTree.fromstring(markup)  # noqa: S314 (our own markup)


def _timeline(counts: list[int]) -> Timeline:
    first = date(2026, 11, 1)
    days = {first + timedelta(days=n): count for n, count in enumerate(counts) if count}
    return build_timeline(days, last_day=first + timedelta(days=len(counts) - 1))


# --- The SVG -------------------------------------------------------------------------------


def test_the_timeline_is_an_accessible_area_chart_of_the_running_total() -> None:
    markup = charts.timeline_svg(_timeline([3, 0, 5, 2]), labelled_by="cap", described_by="sum")
    svg = _parsed(str(markup))
    assert svg.get("role") == "img"
    assert (svg.get("aria-labelledby"), svg.get("aria-describedby")) == ("cap", "sum")
    line = svg.find(f"{SVG}polyline")
    assert line is not None
    points = [tuple(map(float, pair.split(","))) for pair in (line.get("points") or "").split()]
    assert len(points) == 4
    xs, ys = [x for x, _ in points], [y for _, y in points]
    assert xs == sorted(xs) and xs[0] == charts.LEFT and xs[-1] == charts.WIDTH - charts.RIGHT
    # Screen y grows downwards: the running total never falls; a day with 0 stays level.
    assert ys[0] == ys[1] > ys[2] > ys[3]  # totals 3, 3, 8, 10
    labels = [text.text for text in svg.iter(f"{SVG}text")]
    assert "10" in labels and "0" in labels  # the scale: 0 to 10 (total 10)
    assert "1 Nov 2026" in labels and "4 Nov 2026" in labels


def test_one_day_draws_a_level_line_and_nobody_draws_nothing() -> None:
    svg = _parsed(str(charts.timeline_svg(_timeline([7]), labelled_by="c", described_by="d")))
    line = svg.find(f"{SVG}polyline")
    assert line is not None and len((line.get("points") or "").split()) == 2
    assert charts.timeline_svg(_timeline([]), labelled_by="c", described_by="d") == ""


def test_bars_escape_names_cut_long_ones_and_fold_the_rest_into_other() -> None:
    groups = [BreakdownGroup(name=f"Company {n}", kind="company", count=40 - n) for n in range(12)]
    groups[0] = BreakdownGroup(name="<script>alert(1)</script> & Sons", kind="organization",
                               count=40)  # fmt: skip
    groups[1] = BreakdownGroup(name="a-very-long-domain-name.example", kind="domain", count=39)
    dimension = BreakdownDimension(groups=groups, other=5, total=sum(g.count for g in groups) + 5)

    rows = charts.bar_rows(dimension)
    assert len(rows) == charts.MAX_BARS + 1
    assert rows[-1] == ("Other", 5 + 30 + 29)  # "other", then Company 10 and 11
    assert rows[1][0] == "@a-very-long-domain…" and len(rows[1][0]) == charts.LABEL_CHARS

    markup = str(charts.bars_svg(dimension, labelled_by="cap", described_by="table"))
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    svg = _parsed(markup)
    assert (svg.get("role"), svg.get("aria-describedby")) == ("img", "table")
    widths = [float(rect.get("width") or 0) for rect in svg.iter(f"{SVG}rect")]
    assert len(widths) == charts.MAX_BARS + 1
    assert max(widths) == widths[-1]  # "other" (64) is the longest bar here
    assert widths[0] == pytest.approx(widths[-1] * 40 / 64, abs=0.1)
    empty = BreakdownDimension(groups=[], other=0, total=0)
    assert charts.bars_svg(empty, labelled_by="c", described_by="d") == ""


# --- Over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def site_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    shutil.copy(sqlite_template, tmp_path / "charts.db")
    return make_settings(tmp_path, f"sqlite:///{tmp_path / 'charts.db'}")


def _seed(database: Database, slug: str, **fields: Any) -> None:
    """Five counted signers over three UTC days (one hidden: counted, not listed), one
    withdrawn, the tally kept as the services keep it."""
    with database.write() as session:
        letter = make_letter(session, slug=slug, **fields)
        today = utcnow().replace(hour=1, minute=0, second=0, microsecond=0)
        moments = [today - timedelta(days=2)] * 2 + [today - timedelta(days=1)] + [today] * 2
        counted = [add(session, letter, "acme.example", organization="Acme") for _ in range(3)]
        counted.append(add(session, letter, "", organization="Solo", hidden=True))
        counted.append(add(session, letter, "", name="Last One"))
        for signature, moment in zip(counted, moments, strict=True):
            signature.verified_at = moment
        gone = add(session, letter, "", status=SignatureStatus.WITHDRAWN)
        gone.verified_at = today - timedelta(days=9)
        add_to_tally(session, letter_id=letter.id, delta=len(counted))


def test_the_timeline_api_on_every_database(clean_database: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, clean_database.url)
    try:
        _seed(clean_database, "counted")
        _seed(clean_database, "quiet", show_signers=False)
        with TestClient(create_app(settings)) as client:
            response = client.get("/api/v1/letters/counted/timeline")
            assert response.status_code == 200
            assert response.headers["cache-control"].startswith("public")
            today = datetime.now(UTC).date()
            assert response.json() == {
                "interval": "day",
                "points": [
                    {"start": str(today - timedelta(days=2)), "count": 2, "total": 2},
                    {"start": str(today - timedelta(days=1)), "count": 1, "total": 3},
                    {"start": str(today), "count": 2, "total": 5},
                ],
                "total": 5,
            }
            tally = client.get("/api/v1/letters/counted").json()["signature_count"]
            assert tally == response.json()["points"][-1]["total"] == 5
            again = client.get(
                "/api/v1/letters/counted/timeline",
                headers={"if-none-match": response.headers["etag"]},
            )
            assert again.status_code == 304
            # Public like the tally, even where the list of signers is not.
            assert client.get("/api/v1/letters/quiet/timeline").json()["total"] == 5
            missing = client.get("/api/v1/letters/no-such-letter/timeline")
            assert (missing.status_code, missing.json()["error"]) == (404, "letter_not_found")
    finally:
        truncate(clean_database)


def test_the_letter_page_shows_both_charts_with_their_numbers(site_settings: Settings) -> None:
    app = create_app(site_settings)
    _seed(app.state.database, "charted")
    _seed(app.state.database, "unlisted", show_signers=False)
    with TestClient(app) as client:
        page = client.get("/letters/charted")
        assert page.status_code == 200
        text = page.text
        # The timeline: named by its caption, described by its summary, numbers in a table.
        section = text[text.index('id="timeline-title"') :]
        assert 'aria-labelledby="timeline-caption"' in section
        assert 'aria-describedby="timeline-summary"' in section
        assert 'id="timeline-caption"' in section and 'id="timeline-summary"' in section
        summary = html.unescape(re.search(r'id="timeline-summary"[^>]*>([^<]*)<', section)[1])  # type: ignore[index]
        assert summary.startswith("5 verified signatures, from ")
        rows = re.findall(r"<tr><th scope=\"row\">([^<]+)</th><td>(\d+)</td><td>(\d+)</td></tr>",
                          section)  # fmt: skip
        assert [(count, total) for _, count, total in rows] == [("2", "2"), ("1", "3"), ("2", "5")]
        # The breakdown's bars, described by the breakdown's own tables.
        assert 'aria-describedby="breakdown-verified"' in text
        assert 'id="breakdown-verified"' in text
        assert 'aria-describedby="breakdown-organizations"' in text
        assert 'id="chart-verified-caption"' in text

        unlisted = client.get("/letters/unlisted").text
        assert 'id="timeline-title"' in unlisted  # the count over time is public
        assert "breakdown-verified" not in unlisted and "chart-verified-caption" not in unlisted

        with app.state.database.write() as session:
            make_letter(session, slug="empty")
        assert 'id="timeline-title"' not in client.get("/letters/empty").text


@pytest.fixture
def live_site(site_settings: Settings) -> Iterator[str]:
    database = Database(site_settings.database_url)
    _seed(database, "charted")
    database.dispose()
    sock, base_url = free_socket()
    with serve(sock, site_settings):
        yield base_url


@pytest.mark.browser
@pytest.mark.parametrize("width", [1024, 320])
def test_the_charts_pass_axe(live_site: str, width: int) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 800})
        response = page.goto(live_site + "/letters/charted")
        assert response is not None and response.status == 200
        page.locator(".chart-numbers summary").click()
        assert page.locator("#timeline-table").is_visible()
        assert page.locator("svg.chart-timeline").is_visible()
        box = page.locator("svg.chart-timeline").bounding_box()
        assert box is not None and box["width"] <= width
        # No horizontal scrolling at any width.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert axe_violations(page) == []
