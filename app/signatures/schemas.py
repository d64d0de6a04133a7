"""What a signer sends, and what the public may see."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue
from pydantic_core import PydanticCustomError

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
            raise PydanticCustomError("control_chars", "Remove invisible or control characters.")
    return value


def _required(value: str) -> str:
    if not value:
        raise PydanticCustomError("required", "This field is required.")
    return value


def _valid_email(value: str) -> str:
    if not value:
        raise PydanticCustomError("required", "This field is required.")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise PydanticCustomError(
            "invalid_email", "Enter an email address like name@example.org."
        ) from exc
    return result.normalized


Line = Annotated[str, BeforeValidator(_single_line)]
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
_EMAIL_DOC: dict[str, JsonValue] = {
    "format": "email",
    "description": "Where the link to confirm is sent.",
}


class SignatureIn(BaseModel):
    """The sign form's fields (HTML form and JSON API alike). Anything else is ignored
    and stored nowhere (a `comment` too: no feature shows one yet)."""

    model_config = ConfigDict(extra="ignore", str_max_length=1000)

    name: Name = Field(max_length=120, json_schema_extra=_NAME_DOC)
    email: Email = Field(max_length=254, json_schema_extra=_EMAIL_DOC)
    title: Line = Field(default="", max_length=120, json_schema_extra=_LINE_DOC)
    organization: Line = Field(default="", max_length=200, json_schema_extra=_LINE_DOC)
    city: Line = Field(default="", max_length=120, json_schema_extra=_LINE_DOC)
    display: SignatureDisplay = SignatureDisplay.PUBLIC
    contact_ok: bool = False


class PublicSignature(BaseModel):
    """A signer as the public sees them: anonymous signers have every field null."""

    name: str | None
    title: str | None
    organization: str | None
    city: str | None
    verified_domain: str | None
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
