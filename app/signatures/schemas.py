"""What a signer sends, and what the public may see."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue
from pydantic_core import PydanticCustomError

from app.abuse.proof import MAX_PAYLOAD_CHARS
from app.i18n import N_
from app.letters.models import NAME_THRESHOLDS
from app.signatures.models import SignatureDisplay

# Bidirectional overrides and isolates let a name render as something else.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _single_line(value: object) -> object:
    """NFC, trimmed, and no control, private-use, unassigned or bidi-override characters."""
    if not isinstance(value, str):
        return value
    value = unicodedata.normalize("NFC", value).strip()
    for char in value:
        if unicodedata.category(char) in {"Cc", "Cs", "Co", "Cn"} or char in _BIDI_CONTROLS:
            raise PydanticCustomError(
                "control_chars", N_("Remove invisible or control characters.")
            )
    return value


_TEXT_WHITESPACE = {"\n", "\t"}


def _multi_line(value: object) -> object:
    """Like `_single_line`, but line breaks (any convention, kept as "\n") and tabs are
    allowed; spaces at the ends of the whole text are removed."""
    if not isinstance(value, str):
        return value
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = unicodedata.normalize("NFC", value).strip()
    for char in value:
        if char in _TEXT_WHITESPACE:
            continue
        if unicodedata.category(char) in {"Cc", "Cs", "Co", "Cn"} or char in _BIDI_CONTROLS:
            raise PydanticCustomError(
                "control_chars", N_("Remove invisible or control characters.")
            )
    return value


def _required(value: str) -> str:
    if not value:
        raise PydanticCustomError("required", N_("This field is required."))
    return value


def _valid_email(value: str) -> str:
    if not value:
        raise PydanticCustomError("required", N_("This field is required."))
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise PydanticCustomError(
            "invalid_email", N_("Enter an email address like name@example.org.")
        ) from exc
    return result.normalized


def _threshold(value: object) -> object:
    """The sign form's choice ("", "10", "50") or the API's (null, 10, 50)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or value not in NAME_THRESHOLDS:
        raise PydanticCustomError(
            "name_threshold",
            "Choose {choices}, or nothing to show your name at once.",
            {"choices": " or ".join(str(n) for n in NAME_THRESHOLDS)},
        )
    return value


Line = Annotated[str, BeforeValidator(_single_line)]
MultiLine = Annotated[str, BeforeValidator(_multi_line)]
Name = Annotated[str, BeforeValidator(_single_line), AfterValidator(_required)]
Email = Annotated[str, BeforeValidator(_single_line), AfterValidator(_valid_email)]


SEARCH_PATTERN = r"^[^\x00-\x1f\x7f]*$"
"""A search term: no control characters (PostgreSQL refuses NUL in text)."""

# What the JSON schema says of the text fields. Documentation only: the validators above
# decide (Unicode categories that no JSON Schema pattern can name), with clearer messages.
_BIDI = r"\u202a-\u202e\u2066-\u2069"
_LINE_DOC: dict[str, JsonValue] = {
    "pattern": rf"^[^\x00-\x1f\x7f-\x9f{_BIDI}]*$",
    "description": "One line, without control, private-use, unassigned or bidirectional "
    "formatting characters; spaces around it are removed.",
}
_NAME_DOC: dict[str, JsonValue] = {**_LINE_DOC, "minLength": 1}
_ASKED = (
    " Asked for or not, and optional or required, as the letter's settings say: a required "
    "one left empty is `422` (`fields` names it with `required`); one the letter does not "
    "ask for is ignored and stored nowhere. Not kept for an anonymous signer."
)


def _signer_field_doc(what: str) -> dict[str, JsonValue]:
    return {**_LINE_DOC, "description": f"{what} {_LINE_DOC['description']}{_ASKED}"}


_COMMENT_DOC: dict[str, JsonValue] = {
    "pattern": rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]*$",
    "description": "Why I signed: read by the organizers, and shown in public only if "
    "`comment_public_ok` is true and an organizer approves it. Several lines allowed "
    "(line breaks and tabs, no other control, private-use, unassigned or bidirectional "
    "formatting characters); spaces around it are removed. Asked for or not, and optional "
    "or required, as the letter's settings say: ignored and stored nowhere when the letter "
    "does not ask for comments. Kept for an anonymous signer too (without their name).",
}
_EMAIL_DOC: dict[str, JsonValue] = {
    "format": "email",
    "description": "Where the link to confirm is sent.",
}


COMMENT_MAX_LENGTH = 1000


class SignatureIn(BaseModel):
    """The sign form's fields (HTML form and JSON API alike). Anything else is ignored
    and stored nowhere.

    This checks each value on its own. What depends on the letter is checked by
    `sign_letter`, the same for both: its field rules (title, organization, city and
    comment each off, optional or required: a required one left empty is refused, one
    that is off is ignored) and whether it accepts anonymous signatures."""

    model_config = ConfigDict(extra="ignore", str_max_length=COMMENT_MAX_LENGTH)

    name: Name = Field(max_length=120, json_schema_extra=_NAME_DOC)
    email: Email = Field(max_length=254, json_schema_extra=_EMAIL_DOC)
    title: Line = Field(
        default="", max_length=120, json_schema_extra=_signer_field_doc("Job title.")
    )
    organization: Line = Field(
        default="", max_length=200, json_schema_extra=_signer_field_doc("Organization.")
    )
    city: Line = Field(default="", max_length=120, json_schema_extra=_signer_field_doc("City."))
    display: SignatureDisplay = Field(
        default=SignatureDisplay.PUBLIC,
        description="`public`: listed with the details given; `anonymous`: counted, listed "
        "as anonymous, and no name, title, organization, city or address is kept. A letter "
        "may refuse anonymous signatures: then `anonymous` is `422` (`fields.display`).",
    )
    show_domain: bool = Field(
        default=False,
        description="Show that I verified with an address at my email's domain: listed "
        'with the badge "verified @example.com" (or the company name the organizers give '
        "that domain), named or anonymous. The domain is proven by the confirmation link "
        "reaching the address. Free-mail domains (gmail.com and the like) never earn a "
        "badge: `true` with such an address is `422` (`fields.show_domain`).",
    )
    name_threshold: Annotated[Literal[10, 50] | None, BeforeValidator(_threshold)] = Field(
        default=None,
        description="Show my name only once at least this many others with the same "
        "verified domain (or company) have signed: until then the signature counts and "
        "is listed as anonymous with its badge. Needs `show_domain` (else `422`, "
        "`fields.name_threshold`); ignored for an anonymous signature (never named) and "
        "on a letter signed by organizations.",
    )
    contact_ok: bool = Field(
        default=False,
        description="Keep the address so the organizers can send updates about this letter "
        "(public signers only: an anonymous signature keeps no address).",
    )
    comment: MultiLine = Field(
        default="", max_length=COMMENT_MAX_LENGTH, json_schema_extra=_COMMENT_DOC
    )
    comment_public_ok: bool = Field(
        default=False,
        description="The comment may be shown in public once an organizer approves it "
        "(without it, only the organizers read it).",
    )
    altcha: str = Field(
        default="",
        max_length=MAX_PAYLOAD_CHARS,
        description="A solved proof-of-work challenge (base64, from "
        "`GET /api/v1/letters/{slug}/challenge`). While a letter asks for proof of work, "
        "requests without one are held to tighter rate limits; one that is wrong, expired, "
        "for another letter or used before is `422` (`fields.altcha`).",
    )


class PublicSignature(BaseModel):
    """A signer as the public sees them: anonymous signers have every identity field
    null (and so does a signer whose name waits for enough colleagues to sign), but may
    show their verified work domain."""

    name: str | None
    title: str | None
    organization: str | None
    city: str | None
    verified_domain: str | None = Field(
        default=None,
        description="The signer's work domain, proven by the confirmation link reaching "
        "an address there, if they chose to show it (never a free-mail domain). Named "
        "and anonymous signers alike.",
    )
    verified_company: str | None = Field(
        default=None,
        description="The company the letter's organizers named for `verified_domain`, if any.",
    )
    organizer_confirmed: bool = Field(
        default=False,
        description="The organizers checked this signature by hand (a notable signer).",
    )
    signed_on: date


class SignaturePage(BaseModel):
    items: list[PublicSignature]
    next_cursor: str | None


class SignatureAccepted(BaseModel):
    status: Literal["pending"] = "pending"


class VerifyIn(BaseModel):
    token: str = Field(
        min_length=1,
        max_length=500,
        description="The token at the end of the link to confirm (`/verify/{token}`).",
    )


class VerifyOut(BaseModel):
    status: Literal["verified"] = "verified"


class TimelinePoint(BaseModel):
    start: date = Field(description="The period's first day (UTC).")
    count: int = Field(description="Signatures confirmed in the period.")
    total: int = Field(description="Signatures counted from the first one to the period's end.")


class Timeline(BaseModel):
    """A letter's counted signatures over time, by the day (UTC) each was confirmed."""

    interval: Literal["day", "week", "month"] = Field(
        description="The length of each period: `day` while the letter's signatures span "
        "at most 180 days, then `week` (starting on Monday), then `month`."
    )
    points: list[TimelinePoint] = Field(
        description="Every period from the first signature's to today's (or the closing "
        "day's), oldest first; periods without a signature have `count` 0. Empty when "
        "nobody has signed yet."
    )
    total: int = Field(description="Every counted signature: the letter's tally.")
