"""A letter's pictures for other sites: the share card (a 1200x630 PNG for link
previews, drawn with Pillow) and the count badge (a small SVG for READMEs and pages).

Both show the count rounded down to a step (`shown_count`), so a card stays the same
picture (the same bytes, the same ETag, one entry in this process's LRU) while the
count moves a little, and is drawn again once it has moved enough (D102).

Nothing here reaches a font on the system: the card uses the scalable font that ships
inside Pillow (`ImageFont.load_default(size=...)`), the badge names generic families
that the viewer's own machine supplies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, ImageDraw, ImageFont

from app.i18n import format_number
from app.i18n import gettext as _

CARD_WIDTH, CARD_HEIGHT = 1200, 630
MARGIN = 72
DEFAULT_ACCENT = "#1f5f8b"
INK = "#1a1a1a"
MUTED = "#555555"
TRACK = "#e3e3e3"
PAPER = "#ffffff"
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
CARDS_KEPT = 256
"""Share cards kept drawn in this process (least recently used dropped first)."""


def count_step(count: int) -> int:
    """How far the count must move before the card is drawn again: 1 below 1,000, then
    10^(digits-3), 1 % at most (10 from 1,000, 100 from 10,000, 1,000 from 100,000)."""
    if count < 1000:
        return 1
    return int(10 ** (len(str(count)) - 3))


def shown_count(count: int) -> int:
    """The count on a card or badge: rounded down to its step (never above the truth)."""
    count = max(count, 0)
    return count - count % count_step(count)


def count_text(count: int) -> str:
    """ "12,300+" when rounded (the count is at least that), "42" when exact."""
    shown = shown_count(count)
    number = format_number(shown)
    return number if count_step(count) == 1 else f"{number}+"


def accent(colour: str | None) -> str:
    return colour if colour and _COLOUR.match(colour) else DEFAULT_ACCENT


@dataclass(frozen=True, slots=True)
class Card:
    """Everything the picture shows: equal cards are the same PNG."""

    title: str
    count_text: str
    count_label: str
    goal_text: str
    filled: float
    """How much of the goal bar is filled, 0..1 (no bar without a goal: -1)."""
    site: str
    accent: str


def card_for(*, title: str, count: int, goal: int | None, accent_color: str | None) -> Card:
    """The card of a letter with `count` signatures, in the current language."""
    shown = shown_count(count)
    return Card(
        title=title,
        count_text=count_text(count),
        count_label=_("confirmed signatures") if shown != 1 else _("confirmed signature"),
        goal_text=_("Goal: %(goal)s") % {"goal": format_number(goal)} if goal else "",
        filled=min(shown / goal, 1.0) if goal else -1.0,
        site=_("Undersigned"),
        accent=accent(accent_color),
    )


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Greedy wrapping by measured width; the last line ends in "…" when cut."""
    lines: list[str] = []
    words = text.split()
    line = ""
    for index, word in enumerate(words):
        candidate = f"{line} {word}".strip()
        if font.getlength(candidate) <= width or not line:
            line = candidate
            continue
        lines.append(line)
        line = word
        if len(lines) == max_lines:
            rest = " ".join(words[index:])
            line = ""
            last = lines[-1]
            while last and font.getlength(f"{last}…") > width:
                last = last[:-1].rstrip()
            lines[-1] = f"{last}…" if rest else last
            break
    if line:
        lines.append(line)
    # A single word wider than the card: cut it.
    return [_fit(line, font, width) for line in lines[:max_lines]]


def _fit(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(f"{text}…") > width:
        text = text[:-1]
    return f"{text}…"


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    assert isinstance(font, ImageFont.FreeTypeFont)  # Pillow built with FreeType
    return font


@lru_cache(maxsize=CARDS_KEPT)
def card_png(card: Card) -> bytes:
    """The share card as a 1200x630 PNG (no metadata)."""
    image = Image.new("RGB", (CARD_WIDTH, CARD_HEIGHT), PAPER)
    draw = ImageDraw.Draw(image)
    inner = CARD_WIDTH - 2 * MARGIN
    draw.rectangle((0, 0, CARD_WIDTH, 16), fill=card.accent)

    title_font = _font(64)
    y = MARGIN
    for line in _wrap(card.title, title_font, inner, max_lines=3):
        draw.text((MARGIN, y), line, font=title_font, fill=INK)
        y += 80

    count_font, label_font = _font(96), _font(40)
    y = max(y + 24, 330)
    draw.text((MARGIN, y), card.count_text, font=count_font, fill=card.accent)
    count_width = int(count_font.getlength(card.count_text))
    draw.text((MARGIN + count_width + 24, y + 46), _fit(card.count_label, label_font,
              inner - count_width - 24), font=label_font, fill=INK)  # fmt: skip
    y += 120
    if card.filled >= 0:
        draw.rounded_rectangle((MARGIN, y, CARD_WIDTH - MARGIN, y + 24), radius=12, fill=TRACK)
        if card.filled > 0:
            right = MARGIN + max(int(inner * card.filled), 24)
            draw.rounded_rectangle((MARGIN, y, right, y + 24), radius=12, fill=card.accent)
        draw.text((MARGIN, y + 40), card.goal_text, font=_font(36), fill=MUTED)

    site_font = _font(32)
    draw.text(
        (CARD_WIDTH - MARGIN - site_font.getlength(card.site), CARD_HEIGHT - MARGIN + 8),
        card.site,
        font=site_font,
        fill=MUTED,
    )
    out = BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


# --- the badge ---

BADGE_HEIGHT = 20
BADGE_LABEL_FILL = "#555555"
_BADGE_FONT_SIZE = 11
_BADGE_PADDING = 6


def _text_width(text: str) -> int:
    """About how wide `text` is at 11px in a sans-serif (measured with Pillow's font,
    whose widths are close to Verdana's and DejaVu Sans's)."""
    return int(_font(_BADGE_FONT_SIZE).getlength(text) * 1.1) + 1


def badge_svg(*, label: str, value: str, colour: str | None = None) -> str:
    """A shields.io-style badge: `label` on grey, `value` on the letter's colour. The
    text is escaped; the SVG carries no script, no style element and no link."""
    fill = accent(colour)
    left = _text_width(label) + 2 * _BADGE_PADDING
    right = _text_width(value) + 2 * _BADGE_PADDING
    width = left + right
    middle = 14
    title = f"{label}: {value}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{BADGE_HEIGHT}" '
        f'viewBox="0 0 {width} {BADGE_HEIGHT}" role="img" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title>"
        f'<rect width="{left}" height="{BADGE_HEIGHT}" rx="3" fill="{BADGE_LABEL_FILL}"/>'
        f'<rect x="{left}" width="{right}" height="{BADGE_HEIGHT}" rx="3" fill="{fill}"/>'
        f'<rect x="{left - 3}" width="6" height="{BADGE_HEIGHT}" fill="{fill}"/>'
        f'<g fill="#ffffff" font-family="Verdana,DejaVu Sans,sans-serif" '
        f'font-size="{_BADGE_FONT_SIZE}" text-anchor="middle">'
        f'<text x="{left / 2:g}" y="{middle}">{escape(label)}</text>'
        f'<text x="{left + right / 2:g}" y="{middle}">{escape(value)}</text>'
        "</g></svg>"
    )
