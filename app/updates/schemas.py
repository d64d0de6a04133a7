"""What an owner writes when sending an update to the signers."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from app.i18n import N_
from app.signatures.schemas import Line, MultiLine

SUBJECT_MAX_LENGTH = 200
BODY_MAX_LENGTH = 20_000


def _required(value: str) -> str:
    if not value:
        raise PydanticCustomError("required", N_("This field is required."))
    return value


class UpdateIn(BaseModel):
    """`subject`: one line (it becomes the email's Subject header). `body`: Markdown,
    rendered and sanitized like a letter's text."""

    model_config = ConfigDict(extra="forbid")

    subject: Annotated[Line, AfterValidator(_required)] = Field(max_length=SUBJECT_MAX_LENGTH)
    body: Annotated[MultiLine, AfterValidator(_required)] = Field(max_length=BODY_MAX_LENGTH)
