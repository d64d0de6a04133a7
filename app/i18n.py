"""The interface's languages: which one a request or an email is in, and its catalog.

The language is a context variable, set once per request by the web layer (from
`?lang=`, then the `lang` cookie, then `Accept-Language`) and by the worker for each
email (the signer's `locale`). Templates and Python code translate through `gettext`
and `ngettext` here, which read it; nothing passes a language around by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.dates import format_date as _format_date
from babel.dates import format_datetime as _format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

from app.config import shipped_dir

LOCALES: tuple[str, ...] = ("en", "es")
"""Every language the interface and the emails are written in; the first is the default."""

DEFAULT_LOCALE = LOCALES[0]

LANGUAGE_NAMES = {"en": "English", "es": "Español"}
"""Each language by its own name, for the switcher."""

_current: ContextVar[str] = ContextVar("locale", default=DEFAULT_LOCALE)


def current_locale() -> str:
    return _current.get()


@contextmanager
def use_locale(locale: str) -> Iterator[str]:
    """Run a block in `locale` (one of `LOCALES`; anything else is the default)."""
    chosen = locale if locale in LOCALES else DEFAULT_LOCALE
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def supported(value: str | None) -> str | None:
    """`value` if it names one of `LOCALES` ("es", "ES", "es-MX" → "es"), else None."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LOCALES else None


def negotiate(
    *, query: str | None = None, cookie: str | None = None, accept_language: str | None = None
) -> str:
    """The request's language: `?lang=`, then the `lang` cookie, then the best of
    `Accept-Language` that this site speaks, then the default."""
    for chosen in (supported(query), supported(cookie)):
        if chosen:
            return chosen
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "")[:500].split(",")[:20]):
        tag, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        locale = supported(tag)
        if locale and quality > 0:
            ranked.append((-quality, index, locale))
    return min(ranked)[2] if ranked else DEFAULT_LOCALE


DOMAIN = "messages"


def catalog_dir() -> Path:
    """`translations/` at the top of the checkout, `app/translations/` in the wheel: the
    `.po` files, and the `.mo` files compiled from them at install (hatch_build.py for the
    wheel, `make compile` in a checkout)."""
    return shipped_dir("translations")


@lru_cache(maxsize=len(LOCALES))
def translations(locale: str) -> NullTranslations:
    """The catalog of `locale`, loaded once per process. The `.mo` compiled at install is
    used while it is at least as new as its `.po`; otherwise (a checkout where someone
    edited the `.po`, or never ran `make compile`) the `.po` itself is compiled in memory,
    so a page never shows a stale or missing translation. English is the msgids."""
    if locale == DEFAULT_LOCALE or locale not in LOCALES:
        return NullTranslations()
    folder = catalog_dir() / locale / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as compiled:
            return Translations(compiled, domain=DOMAIN)
    if not po.is_file():
        raise RuntimeError(f"the {locale} catalog is missing: {po}")
    return Translations(BytesIO(compile_po(po)), domain=DOMAIN)


def compile_po(po: Path) -> bytes:
    """`po` compiled to `.mo` bytes (fuzzy entries left out, as msgfmt does)."""
    with po.open("rb") as source:
        catalog = read_po(source)
    out = BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def N_(message: str) -> str:
    """Marks `message` for the catalog without translating it: for a text written down at
    import time (a module constant, a class attribute), translated where it is shown
    (`gettext(text)` in Python, `text | translated` in a template)."""
    return message


def gettext(message: str) -> str:
    """`message` in the current language. An empty message stays empty (gettext would
    answer the catalog's header)."""
    if not message:
        return message
    return translations(_current.get()).ugettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """`singular` or `plural` for `n`, in the current language (its own plural rules)."""
    return translations(_current.get()).ungettext(singular, plural, n)


def format_fixed(number: float, digits: int = 0) -> str:
    """`number` with exactly `digits` decimals, in the current language: 12.5 → "12.5",
    "12,5"."""
    pattern = "#,##0." + "0" * digits if digits > 0 else "#,##0"
    return format_decimal(number, format=pattern, locale=_current.get())


def babel_locale() -> Locale:
    return Locale.parse(_current.get())


def format_number(number: int | float | None) -> str:
    """12345 → "12,345" in English, "12.345" in Spanish."""
    if number is None:
        return ""
    return format_decimal(number, locale=_current.get())


_DAY_PATTERNS = {
    ("en", "long"): "d MMMM y",
    ("en", "medium"): "d MMM y",
    ("es", "long"): "d 'de' MMMM 'de' y",
    ("es", "medium"): "d MMM y",
}


def format_day(value: date | datetime | None, form: str = "long") -> str:
    """A day as people write it: "27 November 2026", "27 de noviembre de 2026";
    `form="medium"`: "27 Nov 2026", "27 nov 2026"."""
    if value is None:
        return ""
    day = value.date() if isinstance(value, datetime) else value
    locale = _current.get()
    pattern = _DAY_PATTERNS.get((locale, form)) or _DAY_PATTERNS.get((DEFAULT_LOCALE, form), form)
    return _format_date(day, pattern, locale=locale)


def format_moment(value: datetime | None, form: str = "long") -> str:
    """A day and a time (24-hour clock, as the value is): "27 November 2026, 14:05"."""
    if value is None:
        return ""
    return f"{format_day(value, form)}, {_format_datetime(value, 'HH:mm', locale=_current.get())}"
