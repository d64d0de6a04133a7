"""The share card (Pillow) and the rule that keeps it the same while the count moves a
little (D102)."""

from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image

from app.i18n import use_locale
from app.letters import cards


@pytest.mark.parametrize(
    ("count", "shown", "text"),
    [
        (0, 0, "0"),
        (1, 1, "1"),
        (99, 99, "99"),
        (100, 100, "100"),
        (999, 999, "999"),
        (1_000, 1_000, "1,000+"),
        (1_009, 1_000, "1,000+"),
        (1_010, 1_010, "1,010+"),
        (12_345, 12_300, "12,300+"),
        (99_999, 99_900, "99,900+"),
        (1_234_567, 1_230_000, "1,230,000+"),
    ],
)
def test_the_count_on_a_card_moves_in_steps_of_about_one_percent(
    count: int, shown: int, text: str
) -> None:
    assert cards.shown_count(count) == shown
    assert cards.shown_count(count) <= count  # never more than the truth
    assert count - cards.shown_count(count) <= max(count // 100, 0)
    assert cards.count_text(count) == text


def _card(
    count: int, *, title: str = "Cancel the contracts", goal: int | None = 5000
) -> cards.Card:
    return cards.card_for(title=title, count=count, goal=goal, accent_color="#aa3300")


def test_the_card_is_a_1200_by_630_png() -> None:
    png = cards.card_png(_card(1234))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (1200, 630)
    assert not image.info.get("exif")
    # The accent colour is drawn (the band at the top and the goal bar).
    assert image.convert("RGB").getpixel((600, 4)) == (0xAA, 0x33, 0x00)


def test_a_small_move_of_the_count_keeps_the_same_card() -> None:
    assert _card(12_345) == _card(12_399)
    assert cards.card_png(_card(12_345)) == cards.card_png(_card(12_399))
    assert _card(12_345) != _card(12_400)
    assert _card(41) != _card(42)  # exact below 100


def test_what_the_card_says() -> None:
    card = _card(2_600, goal=5_000)
    assert (card.count_text, card.count_label, card.goal_text) == (
        "2,600+", "confirmed signatures", "Goal: 5,000"
    )  # fmt: skip
    assert card.filled == pytest.approx(0.52)
    assert _card(7_000, goal=5_000).filled == 1.0
    assert _card(1).count_label == "confirmed signature"
    no_goal = _card(3, goal=None)
    assert (no_goal.goal_text, no_goal.filled) == ("", -1.0)
    assert cards.card_for(title="t", count=1, goal=None, accent_color="red").accent == (
        cards.DEFAULT_ACCENT  # only #rrggbb is drawn
    )


def test_the_card_speaks_the_readers_language() -> None:
    with use_locale("es"):
        card = _card(2_600, goal=5_000)
    assert card.count_text == "2.600+"
    assert "5.000" in card.goal_text


def test_a_long_title_is_wrapped_and_cut_to_fit() -> None:
    font = cards._font(64)
    title = "An open letter " * 30
    lines = cards._wrap(title, font, 1056, max_lines=3)
    assert len(lines) == 3
    assert lines[-1].endswith("…")
    assert all(font.getlength(line) <= 1056 for line in lines)
    one_word = cards._wrap("W" * 200, font, 1056, max_lines=3)
    assert len(one_word) == 1 and font.getlength(one_word[0]) <= 1056
    png = cards.card_png(_card(5, title=title))
    assert Image.open(BytesIO(png)).size == (1200, 630)
