"""What an organizer sends: an address to sign in with, an address to invite."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from app.i18n import N_


def _trimmed(value: object) -> object:
    if not isinstance(value, str):
        return value
    value = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn"} for char in value):
        raise PydanticCustomError("control_chars", N_("Remove invisible or control characters."))
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
    return result.normalized.lower()


OrganizerEmail = Annotated[str, BeforeValidator(_trimmed), AfterValidator(_valid_email)]
"""A valid address, lower-cased: how `organizers.email` stores it."""


class LoginIn(BaseModel):
    """The sign-in form: where to send the link."""

    model_config = ConfigDict(extra="ignore")

    email: OrganizerEmail = Field(max_length=254)


class InviteIn(BaseModel):
    """An admin's invitation: the new organizer's address."""

    model_config = ConfigDict(extra="ignore")

    email: OrganizerEmail = Field(max_length=254)
