"""A letter's accent colour: its buttons, links and goal bar.

A colour is kept only if it is dark enough for WCAG AA (4.5:1, D117): white text on a
button of that colour, and links of that colour on the page (white) and on its shaded
boxes (`SOFT_BACKGROUND`). A lighter one is refused with the nearest colour that would
do, so the organizer can take it.

The page applies it without an inline style (the CSP forbids them): a stylesheet whose
address names the colour, `/theme/accent-rrggbb.css`, sets the `--accent` custom
property; being the same for ever for the same address, it is cached for a year.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.i18n import gettext as _
from app.letters.models import Letter
from app.organizers.service import Actor, record

MIN_CONTRAST = 4.5
SOFT_BACKGROUND = "#f4f4f1"
"""The lightest background links are shown on besides white (`--soft` in style.css)."""
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(color: str) -> float:
    """WCAG 2 relative luminance of `#rrggbb`."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(first: str, second: str) -> float:
    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def worst_contrast(color: str) -> float:
    """The lowest of: white text on it, it on white, it on the shaded boxes."""
    return min(contrast(color, "#ffffff"), contrast(color, SOFT_BACKGROUND))


def darkened(color: str) -> str:
    """The lightest colour of the same hue, darker than `color`, that passes."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    for step in range(100, -1, -1):
        factor = step / 100
        candidate = "#{:02x}{:02x}{:02x}".format(*(int(c * factor) for c in (r, g, b)))
        if worst_contrast(candidate) >= MIN_CONTRAST:
            return candidate
    return "#000000"


def parse_color(value: str) -> str | None:
    """`#rrggbb` (lower-case) from what an organizer typed; "" is none. InvalidInput
    for anything else, and for a colour too light (with a darker one to take)."""
    value = value.strip()
    if not value:
        return None
    match = _HEX.fullmatch(value)
    if match is None:
        message = _("Enter a colour as #rrggbb, for example #1d4ed8.")
        raise InvalidInput(message, fields={"accent_color": message})
    color = "#" + match.group(1).lower()
    if worst_contrast(color) < MIN_CONTRAST:
        message = _(
            "%(color)s is too light for white text and for links (contrast below 4.5:1). "
            "A darker shade that works: %(darker)s."
        ) % {"color": color, "darker": darkened(color)}
        raise InvalidInput(message, fields={"accent_color": message})
    return color


def set_accent_color(session: Session, *, letter: Letter, value: str, actor: Actor) -> bool:
    """Sets (or with "" removes) the letter's accent colour; False when unchanged."""
    color = parse_color(value)
    if color == letter.accent_color:
        return False
    previous, letter.accent_color = letter.accent_color, color
    record(session, actor=actor, letter_id=letter.id, action="letter.accent",
           color=color, previous=previous)  # fmt: skip
    session.flush()
    return True


def theme_path(color: str) -> str:
    """The stylesheet that gives a page this accent colour."""
    return f"/theme/accent-{color.removeprefix('#')}.css"


def theme_css(color: str) -> str:
    """The stylesheet's text, for a colour `parse_color` accepted (rrggbb, no #)."""
    return (
        f":root {{ --accent: #{color}; --accent-ink: #ffffff; }}\n"
        "button:hover, .sign-jump:hover { background: var(--accent); filter: brightness(0.85); }\n"
    )
