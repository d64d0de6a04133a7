"""Letter Markdown: raw HTML, heading levels, images and tables (render_markdown).

The hostile inputs (scripts, event handlers, javascript: links) are in test_service.py;
these are the shapes an honest organizer writes, pasting from elsewhere."""

from __future__ import annotations

import re

import pytest

from app.letters.service import render_markdown
from tests.letters.test_service import elements


def headings(html: str) -> list[tuple[str, str]]:
    return [(tag, text) for tag, text in re.findall(r"<(h[1-6])>(.*?)</\1>", html)]


# --- raw HTML: tags that are not allowed go, their text stays ---


def test_raw_html_tags_are_dropped_and_their_text_kept() -> None:
    html = render_markdown(
        'We <b>demand</b> a <span class="x">fair</span> <font color=red>hearing</font>.\n\n'
        "<div>\nA block of HTML.\n</div>\n\n"
        "<center>Centered</center>\n"
    )
    assert "&lt;" not in html, "raw tags shown as text"
    assert "<p>We demand a fair hearing.</p>" in html
    assert "A block of HTML." in html
    assert "Centered" in html
    assert {tag for tag, _ in elements(html)} <= {"p"}


def test_allowed_raw_html_is_kept_and_cleaned() -> None:
    html = render_markdown(
        'Read <a href="https://example.org/report" onclick="steal()">the report</a> '
        "<strong>today</strong>.\n"
    )
    assert "<strong>today</strong>" in html
    [attributes] = [a for t, a in elements(html) if t == "a"]
    assert attributes == {
        "href": "https://example.org/report",
        "rel": "noopener noreferrer nofollow",
    }


@pytest.mark.parametrize(
    "source",
    [
        "Before <script>alert('inline')</script> after.",
        "Before\n\n<script>\nalert('block')\n</script>\n\nafter.",
        "Before <style>body { display: none }</style> after.",
        "Before\n\n<style>\nbody { display: none }\n</style>\n\nafter.",
        "Before <!-- a note for the editors --> after.",
    ],
    ids=["script-inline", "script-block", "style-inline", "style-block", "comment"],
)
def test_scripts_styles_and_comments_go_with_their_content(source: str) -> None:
    html = render_markdown(source)
    assert "Before" in html and "after." in html
    for leftover in ("alert", "display", "editors", "&lt;", "<script", "<style", "<!--"):
        assert leftover not in html, html


# --- headings: the title is the page's h1; the body starts at h2 and skips no level ---

HEADINGS = {
    "two-then-three": ("## Demands\n\n### First\n\n### Second", ["h2", "h3", "h3"]),
    "one-two-six": ("# Demands\n\n## First\n\n###### Deep", ["h2", "h3", "h4"]),
    "skips-a-level": ("# Demands\n\n### First\n\n## Second", ["h2", "h3", "h3"]),
    "deep-first": ("### Intro\n\n# Demands\n\n## First", ["h2", "h2", "h3"]),
    "only-fours": ("#### One\n\n#### Two", ["h2", "h2"]),
    "setext": ("Demands\n=======\n\nFirst\n-----\n", ["h2", "h3"]),
    "raw-html": ("<h1>Demands</h1>\n\n<h4>First</h4>\n\n## Second", ["h2", "h3", "h3"]),
    "all-six": ("# 1\n\n## 2\n\n### 3\n\n#### 4\n\n##### 5\n\n###### 6", [
        "h2", "h3", "h4", "h5", "h6", "h6"]),
}  # fmt: skip


@pytest.mark.parametrize("source, expected", HEADINGS.values(), ids=HEADINGS.keys())
def test_headings_start_at_h2_and_never_skip_a_level(source: str, expected: list[str]) -> None:
    found = headings(render_markdown(source))
    assert [tag for tag, _ in found] == expected
    level = 1  # the letter's title
    for tag, _ in found:
        assert int(tag[1]) <= level + 1, f"{tag} after h{level}"
        level = int(tag[1])


def test_headings_keep_their_text() -> None:
    html = render_markdown("## Our *three* demands\n\ntext")
    assert headings(html) == [("h2", "Our <em>three</em> demands")]


# --- images: nothing fetched, nothing empty left behind ---


def test_an_image_becomes_its_alt_text_without_an_empty_paragraph() -> None:
    html = render_markdown(
        "Intro.\n\n"
        "![A crowd outside city hall](https://example.org/crowd.jpg)\n\n"
        "![](https://example.org/tracker.gif)\n\n"
        "Read ![the *chart*](chart.png) below.\n\n"
        '<img src="https://example.org/raw.png" alt="raw">\n\n'
        "End."
    )
    assert "<img" not in html and "example.org" not in html
    assert not re.search(r"<p>\s*</p>", html), html
    assert re.sub(r">\s+<", "><", html) == (
        "<p>Intro.</p><p>A crowd outside city hall</p><p>Read the chart below.</p><p>End.</p>\n"
    )


def test_a_link_around_an_image_without_alt_text_disappears() -> None:
    html = render_markdown("[![](https://example.org/badge.svg)](https://example.org)\n\nText.")
    assert html == "<p>Text.</p>\n"
    badge_with_words = render_markdown("[![Our site](badge.svg)](https://example.org)")
    assert ">Our site</a>" in badge_with_words


# --- tables: kept, and wrapped in a box that scrolls on a narrow screen ---


def test_a_table_is_wrapped_in_a_scrolling_box() -> None:
    html = render_markdown("| Company | Contract |\n|---|---|\n| Acme | $10M |\n")
    assert html.startswith('<div class="table-scroll" tabindex="0"><table>')
    assert html.rstrip().endswith("</table></div>")
    tags = [tag for tag, _ in elements(html)]
    assert tags == ["div", "table", "thead", "tr", "th", "th", "tbody", "tr", "td", "td"]


def test_attribute_values_cannot_smuggle_tags_past_the_sanitizer() -> None:
    """The table wrapper, heading levels and empty-element clean-up work on nh3's output,
    which escapes < and > inside attribute values: nothing written in a link's title
    becomes a tag or an attribute."""
    html = render_markdown(
        '[x](https://example.org "<table></a><h2>t</h2><p></p>")\n\n'
        '<a href="https://example.org" title="<table> onmouseover=alert(1)">y</a>'
    )
    assert [tag for tag, _ in elements(html)] == ["p", "a", "p", "a"]
    for _, attributes in elements(html):
        assert set(attributes) <= {"href", "title", "rel"}
