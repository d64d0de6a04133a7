"""What an organizer may write into a letter (the dashboard's form, the command line,
the demo, tests), and what the public API shows of one."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.errors import InvalidInput
from app.i18n import N_
from app.i18n import gettext as _
from app.letters.badges import is_free_mail
from app.letters.models import (
    DEFAULT_CONTACT_RETENTION_DAYS,
    FieldRule,
    LetterStatus,
    SignerKind,
)

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
"""Every letter's slug: words of lowercase letters and digits, joined by hyphens."""
SLUG_MAX_LENGTH = 80
RESERVED_SLUGS = frozenset(
    {"new", "edit", "create", "admin", "api", "dashboard", "login", "logout", "static",
     "search", "feed"}
)  # fmt: skip
"""Slugs no letter may take: /dashboard/letters/new is the new-letter form, and the
others are words the site may want for its own pages one day."""

TITLE_MAX = 200
SUMMARY_MAX = 500
BODY_MAX = 100_000
"""Characters of Markdown (a long letter is ~20,000)."""
ADDRESSED_TO_MAX = 300
FROM_NAME_MAX = 200
URL_MAX = 500

DOMAINS_MAX = 200
"""Email domains in each of a letter's lists (forbidden, required)."""
DOMAINS_TEXT_MAX = DOMAINS_MAX * 256
"""Characters in a list as typed (a domain name has at most 253)."""

_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _no_control_chars(value: str, *, newlines: bool) -> str:
    for char in value:
        if newlines and char in "\n\t":
            continue
        if unicodedata.category(char) in {"Cc", "Cs", "Co", "Cn"} or char in _BIDI_CONTROLS:
            raise PydanticCustomError(
                "control_chars", N_("Remove invisible or control characters.")
            )
    return value


def _single_line(value: object) -> object:
    """NFC, trimmed, one line, no control or bidi-override characters."""
    if not isinstance(value, str):
        return value
    return _no_control_chars(unicodedata.normalize("NFC", value).strip(), newlines=False)


def _text(value: object) -> object:
    """Markdown: NFC, line endings as \\n, blank lines around it trimmed (a first line's
    indentation is Markdown: it stays); tabs and newlines kept."""
    if not isinstance(value, str):
        return value
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    return _no_control_chars(value.lstrip("\n").rstrip(), newlines=True)


def _required(value: str) -> str:
    if not value:
        raise PydanticCustomError("required", N_("This field is required."))
    return value


def _web_address(value: str) -> str:
    """An http or https address, or nothing."""
    if not value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or any(char.isspace() for char in value)
    ):
        raise PydanticCustomError(
            "web_address", N_("Enter a web address starting with https:// (or http://).")
        )
    return value


def _empty_as_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value.strip() if isinstance(value, str) else value


def _utc(value: datetime | None) -> datetime | None:
    """A time without a zone is UTC (the form and the command line say so)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _slug(value: str) -> str:
    if value in RESERVED_SLUGS:
        raise PydanticCustomError(
            "reserved_slug", N_("This slug is reserved for the site's own pages: choose another.")
        )
    return value


_DOMAIN_SEPARATORS = re.compile(r"[\s,;]+")


def email_domain_name(value: str) -> str | None:
    """A domain as the part after an email address's @ (lower-case, Unicode: IDNA
    normalized as the sign form normalizes signers' addresses), or None if it is not
    one. `@example.org` and `example.org.` are taken as example.org."""
    value = value.strip().removeprefix("@").removesuffix(".")
    if not value:
        return None
    try:
        return str(validate_email(f"x@{value}", check_deliverability=False).domain)
    except EmailNotValidError:
        return None


def _shortened(value: str) -> str:
    return value if len(value) <= 60 else value[:59] + "…"


def _domain_list(value: object) -> object:
    """Email domains: a text (one per line, or separated by commas), or a list of them
    (each item may hold several). Lower-cased, IDNA-normalized, duplicates dropped, in
    the order given."""
    if value is None:
        return []
    if isinstance(value, str):
        if len(value) > DOMAINS_TEXT_MAX:
            raise PydanticCustomError(
                "too_many_domains", N_("Give at most {max} domains."), {"max": DOMAINS_MAX}
            )
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        return value  # the list[str] type says what is wrong
    domains: list[str] = []
    bad: list[str] = []
    for item in value:
        for word in _DOMAIN_SEPARATORS.split(item):
            if not word:
                continue
            domain = email_domain_name(word)
            if domain is None:
                if _shortened(word) not in bad:
                    bad.append(_shortened(word))
            elif domain not in domains:
                domains.append(domain)
    if bad:
        raise PydanticCustomError(
            "not_a_domain",
            N_("Not a domain name: {bad}. Write domains like example.org, one per line."),
            {"bad": ", ".join(bad[:3]) + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")},
        )
    if len(domains) > DOMAINS_MAX:
        raise PydanticCustomError(
            "too_many_domains", N_("Give at most {max} domains."), {"max": DOMAINS_MAX}
        )
    return domains


COMPANY_NAME_MAX = 100
"""Characters in the company name a verified domain is shown as."""
CONTACT_RETENTION_MAX_DAYS = 730
"""Kept contact addresses go at most two years after a letter closes."""
ANONYMIZE_MAX_MONTHS = 60
"""A closed letter's signers can be anonymized at most five years after it closes."""


def _domain_names(value: object) -> object:
    """Verified work domains and the company each is shown as: a text with one
    `domain = Company` per line (blank lines skipped), a list of such lines, or a
    mapping. Domains are normalized as `email_domain_name` does; a domain given twice, a
    free-mail domain (its addresses never earn a badge) or a line without a domain and a
    name is refused, naming the line."""
    if value is None:
        return {}
    if isinstance(value, str):
        if len(value) > DOMAINS_TEXT_MAX:
            raise PydanticCustomError(
                "too_many_domains", N_("Give at most {max} domains."), {"max": DOMAINS_MAX}
            )
        pairs: list[tuple[str, str, str]] = []
        for line in value.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if line.strip():
                written, sign, company = line.partition("=")
                if not sign:
                    raise PydanticCustomError(
                        "domain_name_line",
                        "Write each line as domain = Company, like google.com = Google "
                        "(not {line}).",
                        {"line": _shortened(line.strip())},
                    )
                pairs.append((line.strip(), written, company))
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return _domain_names("\n".join(value))
    elif isinstance(value, Mapping) and all(
        isinstance(key, str) and isinstance(name, str) for key, name in value.items()
    ):
        pairs = [(f"{key} = {name}", key, name) for key, name in value.items()]
    else:
        return value  # the dict[str, str] type says what is wrong
    names: dict[str, str] = {}
    for line, raw_domain, raw_name in pairs:
        domain = email_domain_name(raw_domain)
        name = unicodedata.normalize("NFC", raw_name).strip()
        if domain is None or not name:
            raise PydanticCustomError(
                "domain_name_line",
                N_("Write each line as domain = Company, like google.com = Google (not {line})."),
                {"line": _shortened(line)},
            )
        _no_control_chars(name, newlines=False)
        if len(name) > COMPANY_NAME_MAX:
            raise PydanticCustomError(
                "company_name_too_long",
                "A company name has at most {max} characters ({domain}).",
                {"max": COMPANY_NAME_MAX, "domain": domain},
            )
        if is_free_mail(domain):
            raise PydanticCustomError(
                "free_mail_domain",
                "{domain} is a free email service: its addresses never earn a badge, so "
                "it cannot name a company.",
                {"domain": domain},
            )
        if domain in names:
            raise PydanticCustomError(
                "domain_twice", "{domain} is listed twice.", {"domain": domain}
            )
        names[domain] = name
    if len(names) > DOMAINS_MAX:
        raise PydanticCustomError(
            "too_many_domains", N_("Give at most {max} domains."), {"max": DOMAINS_MAX}
        )
    return names


def domain_names_text(names: Mapping[str, str]) -> str:
    """A letter's `domain_names` as the form's text: `domain = Company` lines."""
    return "\n".join(f"{domain} = {name}" for domain, name in names.items())


def domain_matches(domain: str, listed: str) -> bool:
    """Whether `domain` is `listed` or one of its subdomains."""
    return domain == listed or domain.endswith("." + listed)


Line = Annotated[str, BeforeValidator(_single_line)]
RequiredLine = Annotated[str, BeforeValidator(_single_line), AfterValidator(_required)]
Markdown = Annotated[str, BeforeValidator(_text), AfterValidator(_required)]
WebAddress = Annotated[str, BeforeValidator(_single_line), AfterValidator(_web_address)]
Slug = Annotated[
    str,
    BeforeValidator(_single_line),
    Field(pattern=SLUG_PATTERN, min_length=1, max_length=SLUG_MAX_LENGTH),
    AfterValidator(_slug),
]
ClosesAt = Annotated[datetime | None, BeforeValidator(_empty_as_none), AfterValidator(_utc)]
Goal = Annotated[Annotated[int, Field(ge=1)] | None, BeforeValidator(_empty_as_none)]
Domains = Annotated[list[str], BeforeValidator(_domain_list)]
DomainNames = Annotated[dict[str, str], BeforeValidator(_domain_names)]


def _empty_as_default_retention(value: object) -> object:
    value = _empty_as_none(value)
    return DEFAULT_CONTACT_RETENTION_DAYS if value is None else value


RetentionDays = Annotated[
    int,
    BeforeValidator(_empty_as_default_retention),
    Field(ge=0, le=CONTACT_RETENTION_MAX_DAYS),
]
"""Days; left empty: the default (90)."""
AnonymizeMonths = Annotated[
    Annotated[int, Field(ge=0, le=ANONYMIZE_MAX_MONTHS)] | None,
    BeforeValidator(_empty_as_none),
]


class LetterFields(BaseModel):
    """What can be edited once a letter exists (everything but its slug: links to a
    letter must keep working)."""

    model_config = ConfigDict(extra="ignore")

    title: RequiredLine = Field(max_length=TITLE_MAX)
    summary: Line = Field(default="", max_length=SUMMARY_MAX)
    body_markdown: Markdown = Field(max_length=BODY_MAX)
    addressed_to: Line = Field(default="", max_length=ADDRESSED_TO_MAX)
    goal: Goal = None
    closes_at: ClosesAt = None
    from_name: Line = Field(default="", max_length=FROM_NAME_MAX)
    from_url: WebAddress = Field(default="", max_length=URL_MAX)
    field_title: FieldRule = FieldRule.OPTIONAL
    field_organization: FieldRule = FieldRule.OPTIONAL
    field_city: FieldRule = FieldRule.OPTIONAL
    field_comment: FieldRule = FieldRule.OFF
    allow_anonymous: bool = True
    show_signers: bool = True
    # Who may sign, by the domain of their address (app/abuse/domains.py applies it):
    # never one of these domains (nor their subdomains)…
    forbidden_domains: Domains = Field(default_factory=list)
    # …and, when not empty, only these (and their subdomains): an employees-only letter.
    required_domains: Domains = Field(default_factory=list)
    # Who signs: people, or organizations (a sign-on letter: the form asks for the
    # organization and the signer's name and title, all required).
    signers: SignerKind = SignerKind.PEOPLE
    # Verified work domains shown as a company's name (google.com -> Google).
    domain_names: DomainNames = Field(default_factory=dict)
    # Forgetting: kept contact addresses go this many days after the letter closes…
    contact_retention_days: RetentionDays = DEFAULT_CONTACT_RETENTION_DAYS
    # …and the signers' names and details this many months after it closes (None: never).
    anonymize_after_months: AnonymizeMonths = None

    @field_validator("required_domains")
    @classmethod
    def _not_also_forbidden(cls, required: list[str], info: ValidationInfo) -> list[str]:
        """A required domain that is forbidden too (itself, or a domain above it) could
        never sign: that is a mistake, said before anything is saved."""
        forbidden: list[str] = info.data.get("forbidden_domains") or []
        clashes = [
            domain
            for domain in required
            if any(domain_matches(domain, listed) for listed in forbidden)
        ]
        if clashes:
            raise PydanticCustomError(
                "forbidden_and_required",
                "{domains}: forbidden (or under a forbidden domain) and required at once, "
                "so nobody there could sign. Remove it from one of the lists.",
                {"domains": ", ".join(clashes[:3]) + (" …" if len(clashes) > 3 else "")},
            )
        return required


EDITABLE_FIELDS = tuple(LetterFields.model_fields)
DOMAIN_FIELDS = ("forbidden_domains", "required_domains")
SIGNER_SAFETY_FIELDS = (
    "signers",
    "domain_names",
    "contact_retention_days",
    "anonymize_after_months",
)
KEPT_UNLESS_GIVEN = (*DOMAIN_FIELDS, *SIGNER_SAFETY_FIELDS)
"""Settings an edit that does not give them keeps (never reset to a default by a form
or a caller that does not know them: that could open an employees-only letter to
everyone, or shorten how long addresses are kept)."""


class LetterCreate(LetterFields):
    slug: Slug
    status: LetterStatus = LetterStatus.DRAFT


# --- turning input into models, with errors people can read ---------------------------

FORM_NAMES = {"body_markdown": "body"}
"""The form's (and the command line's) name for a model field, where they differ."""


_CUSTOM_MESSAGES = {
    "not_a_domain": N_("Not a domain name: {bad}. Write domains like example.org, one per line."),
    "too_many_domains": N_("Give at most {max} domains."),
    "domain_name_line": N_(
        "Write each line as domain = Company, like google.com = Google (not {line})."
    ),
    "company_name_too_long": N_("A company name has at most {max} characters ({domain})."),
    "free_mail_domain": N_(
        "{domain} is a free email service: its addresses never earn a badge, so "
        "it cannot name a company."
    ),
    "domain_twice": N_("{domain} is listed twice."),
    "forbidden_and_required": N_(
        "{domains}: forbidden (or under a forbidden domain) and required at once, "
        "so nobody there could sign. Remove it from one of the lists."
    ),
}
"""The messages of this module's own errors that carry values, by their type: shown in
the request's language (Pydantic formats the English one into `msg`)."""


def _message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _CUSTOM_MESSAGES:
        try:
            return _(_CUSTOM_MESSAGES[kind]).format(**ctx)
        except (KeyError, IndexError, ValueError):
            return str(error.get("msg", ""))
    short = kind in ("string_too_short", "too_short") and ctx.get("min_length") == 1
    if kind in ("missing", "required") or short:
        return N_("This field is required.")
    if kind == "string_too_long":
        return _("Use at most %(n)s characters.") % {"n": ctx.get("max_length")}
    if kind == "string_pattern_mismatch":
        return N_("Use lower-case letters, digits and single dashes, like ice-out.")
    if kind in ("greater_than_equal", "greater_than"):
        return _("Enter a whole number of at least %(n)s.") % {"n": ctx.get("ge", ctx.get("gt"))}
    if kind in ("less_than_equal", "less_than"):
        return _("Enter a whole number of at most %(n)s.") % {"n": ctx.get("le", ctx.get("lt"))}
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return N_("Enter a whole number, like 1000.")
    if kind.startswith("datetime") or kind.startswith("date"):
        return N_("Enter a date and time like 2027-01-31T23:59 (UTC).")
    if kind == "enum":
        return N_("Choose one of the options.")
    return str(error.get("msg", N_("This value is not valid.")))


def field_errors(exc: ValidationError) -> dict[str, str]:
    """The first problem of each field, by its form name, in words."""
    fields: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "form"
        fields.setdefault(FORM_NAMES.get(name, name), _message(error))
    return fields


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse(model: type[ModelT], values: Mapping[str, Any]) -> ModelT:
    """`values` as `model`, or InvalidInput with a message for each field that is wrong."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise InvalidInput(N_("Some fields are not valid."), fields=field_errors(exc)) from exc


def parse_closes_at(value: str | None) -> datetime | None:
    """A closing time typed by a person (form or shell), as UTC; "" is none."""
    return parse(_ClosingTime, {"closes_at": value}).closes_at


class _ClosingTime(BaseModel):
    closes_at: ClosesAt = None


def organizer_email(value: str) -> str:
    """An organizer's address as typed, checked; InvalidInput(fields={"email"}) if not one."""
    value = value.strip()
    if not value:
        raise InvalidInput(
            N_("Enter an email address."), fields={"email": "This field is required."}
        )
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        message = N_("Enter an email address like name@example.org.")
        raise InvalidInput(message, fields={"email": message}) from exc


# --- the public API ------------------------------------------------------------------


class LetterOut(BaseModel):
    slug: str
    title: str
    summary: str
    status: LetterStatus = Field(
        description="`open` or `closed`. A letter is closed once its `closes_at` has passed."
    )
    signature_count: int
    goal: int | None
    closes_at: datetime | None
    url: str


class SignerFieldsOut(BaseModel):
    """What the sign form asks for besides `name` and `email` (always required)."""

    title: FieldRule
    organization: FieldRule
    city: FieldRule
    comment: FieldRule


class TranslationOut(BaseModel):
    """The letter's title, summary and text in another language (D115)."""

    language: str = Field(
        description="The translation's language, as in `?lang=`.", examples=["es"]
    )
    title: str
    summary: str
    body_html: str


class LetterDetailOut(LetterOut):
    body_html: str
    language: str = Field(
        description="The language of `title`, `summary` and `body_html`: the letter's own.",
        examples=["en"],
    )
    translations: list[TranslationOut] = Field(
        description="The same letter in other languages; its signers count in the one tally."
    )
    addressed_to: str
    published_at: datetime | None
    signer_fields: SignerFieldsOut
    allow_anonymous: bool = Field(description="Whether `display` may be `anonymous`.")
    show_signers: bool = Field(description="Whether the signer list is public.")
    signers: SignerKind = Field(
        description="`people`, or `organizations`: a sign-on letter signed by "
        "organizations, where `organization`, `name` (the person signing for it) and "
        "`title` are required of a signer shown in public."
    )


class LetterList(BaseModel):
    items: list[LetterOut]
