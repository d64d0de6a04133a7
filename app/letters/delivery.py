"""Delivering a letter: the day it was delivered, the addressee's response, and the
milestones the public page and the dashboard show.

Rules kept here:
- Dates are calendar days. A day is accepted from the letter's publication to today,
  where "today" and "the day it was published" are read as generously as the world's
  time zones allow (UTC-12 to UTC+14): an organizer ahead of UTC can enter their own
  today, one behind it the day they published. A draft has no such days.
- The response is plain text (never HTML or Markdown), at most `MAX_RESPONSE_CHARS`
  characters, kept with its paragraphs; its link is optional and only http or https.
- Each change is written to the audit log in the caller's transaction.

Field errors are codes (`InvalidInput.fields`), worded by the dashboard's template:
`date`: `required`, `invalid`, `future`, `before_published`, `not_published`;
`text`: `required`, `too_long`, `control_chars`; `link`: `too_long`, `scheme`, `invalid`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import InvalidInput
from app.i18n import N_, format_number, gettext
from app.letters.models import Letter
from app.organizers.service import Actor, record

MAX_RESPONSE_CHARS = 20_000
MAX_LINK_CHARS = 500  # the column's size
_EARLIEST_OFFSET = timedelta(hours=12)  # UTC-12: the last place where a day begins
_LATEST_OFFSET = timedelta(hours=14)  # UTC+14: the first place where a day begins
_BLANK_LINES = re.compile(r"\n{3,}")
_ALLOWED_WHITESPACE = {"\n", "\t"}
# Bidirectional overrides and isolates let text render as something else.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class MilestoneKind(StrEnum):
    PUBLISHED = "published"
    GOAL_REACHED = "goal_reached"
    DELIVERED = "delivered"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class Milestone:
    kind: MilestoneKind
    on: date


# --- Reading what an organizer typed ---------------------------------------------------


def latest_day(now: datetime) -> date:
    """The latest date it is anywhere on Earth at `now` (UTC+14)."""
    return (now + _LATEST_OFFSET).date()


def earliest_day(letter: Letter) -> date | None:
    """The earliest day the letter can be said to be delivered or answered: the date it
    was published somewhere on Earth (UTC-12); None for a draft."""
    if letter.published_at is None:
        return None
    return (letter.published_at - _EARLIEST_OFFSET).date()


def _parse_day(value: date | str, *, letter: Letter, now: datetime) -> date:
    """A day (YYYY-MM-DD) from the letter's publication to today; InvalidInput on the
    field `date` otherwise."""
    if isinstance(value, date):
        day = value
    else:
        value = value.strip()
        if not value:
            raise InvalidInput(N_("Enter a date."), fields={"date": "required"})
        try:
            if len(value) != 10:
                raise ValueError(value)
            day = date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                N_("Enter a date as YYYY-MM-DD."), fields={"date": "invalid"}
            ) from None
    earliest = earliest_day(letter)
    if earliest is None:
        raise InvalidInput(N_("Publish the letter first."), fields={"date": "not_published"})
    if day > latest_day(now):
        raise InvalidInput(N_("The date is in the future."), fields={"date": "future"})
    if day < earliest:
        raise InvalidInput(
            N_("The date is before the letter was published."), fields={"date": "before_published"}
        )
    return day


def clean_text(value: str) -> str:
    """Plain text as kept: line breaks as "\n", no spaces at the ends of lines, at most
    one blank line between paragraphs (so a paragraph is what "\n\n" separates), NFC,
    and no control or bidi-override characters (InvalidInput on the field `text`)."""
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    value = "\n".join(line.rstrip() for line in value.split("\n"))
    value = _BLANK_LINES.sub("\n\n", value).strip()
    if not value:
        raise InvalidInput(N_("Enter the text of the response."), fields={"text": "required"})
    if len(value) > MAX_RESPONSE_CHARS:
        raise InvalidInput(
            gettext("Use at most %(n)s characters.") % {"n": format_number(MAX_RESPONSE_CHARS)},
            fields={"text": "too_long"},
        )
    for char in value:
        if char in _ALLOWED_WHITESPACE:
            continue
        if unicodedata.category(char) in {"Cc", "Cs", "Co", "Cn"} or char in _BIDI_CONTROLS:
            raise InvalidInput(
                N_("Remove invisible or control characters."), fields={"text": "control_chars"}
            )
    return value


def clean_link(value: str) -> str:
    """An absolute http(s) link to a host, without credentials or spaces; "" for none.
    InvalidInput on the field `link` otherwise (`javascript:`, no scheme, …)."""
    value = value.strip()
    if not value:
        return ""
    if len(value) > MAX_LINK_CHARS:
        raise InvalidInput(
            gettext("Use at most %(n)s characters.") % {"n": MAX_LINK_CHARS},
            fields={"link": "too_long"},
        )
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        raise InvalidInput(N_("This link is not valid."), fields={"link": "invalid"}) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput(
            N_("Use a link that starts with https:// or http://."), fields={"link": "scheme"}
        )
    if (
        not parts.hostname
        or "@" in parts.netloc
        or any(char.isspace() or unicodedata.category(char) == "Cc" for char in value)
    ):
        raise InvalidInput(N_("This link is not valid."), fields={"link": "invalid"})
    return value


# --- Changes ---------------------------------------------------------------------------


def mark_delivered(
    session: Session,
    *,
    letter: Letter,
    actor: Actor,
    on: date | str,
    now: datetime | None = None,
) -> date:
    """Records the day the letter was delivered (a later call changes it)."""
    day = _parse_day(on, letter=letter, now=now or utcnow())
    letter.delivered_on = day
    record(session, actor=actor, letter_id=letter.id, action="letter.deliver", on=day.isoformat())
    session.flush()
    return day


def record_response(
    session: Session,
    *,
    letter: Letter,
    actor: Actor,
    on: date | str,
    text: str,
    link: str = "",
    now: datetime | None = None,
) -> None:
    """Records (or replaces) the addressee's response. Every field is checked before
    anything changes; the first problem of each field is reported together."""
    fields: dict[str, str] = {}
    day: date | None = None
    cleaned_text = cleaned_link = ""
    try:
        day = _parse_day(on, letter=letter, now=now or utcnow())
    except InvalidInput as exc:
        fields.update(exc.fields)
    try:
        cleaned_text = clean_text(text)
    except InvalidInput as exc:
        fields.update(exc.fields)
    try:
        cleaned_link = clean_link(link)
    except InvalidInput as exc:
        fields.update(exc.fields)
    if fields or day is None:
        raise InvalidInput(N_("Some fields of the response are not valid."), fields=fields)
    replaced = letter.response_on is not None
    letter.response_on = day
    letter.response_text = cleaned_text
    letter.response_url = cleaned_link
    record(
        session,
        actor=actor,
        letter_id=letter.id,
        action="letter.record_response",
        on=day.isoformat(),
        characters=len(cleaned_text),
        link=bool(cleaned_link),
        replaced=replaced,
    )
    session.flush()


def has_response(letter: Letter) -> bool:
    return letter.response_on is not None


def clear_response(session: Session, *, letter: Letter, actor: Actor) -> bool:
    """Takes the response off the letter; False (and nothing recorded) if it had none."""
    if not has_response(letter):
        return False
    letter.response_on = None
    letter.response_text = ""
    letter.response_url = ""
    record(session, actor=actor, letter_id=letter.id, action="letter.clear_response")
    session.flush()
    return True


# --- Reading ---------------------------------------------------------------------------


def milestones(letter: Letter) -> list[Milestone]:
    """What has happened to the letter so far, oldest first: published, goal reached
    (kept by `letters.service.count_new_signature`), delivered, response."""
    found: list[Milestone] = []
    if letter.published_at is not None:
        found.append(Milestone(MilestoneKind.PUBLISHED, letter.published_at.date()))
    if letter.goal_reached_at is not None:
        found.append(Milestone(MilestoneKind.GOAL_REACHED, letter.goal_reached_at.date()))
    if letter.delivered_on is not None:
        found.append(Milestone(MilestoneKind.DELIVERED, letter.delivered_on))
    if letter.response_on is not None:
        found.append(Milestone(MilestoneKind.RESPONSE, letter.response_on))
    order = list(MilestoneKind)
    return sorted(found, key=lambda milestone: (milestone.on, order.index(milestone.kind)))
