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


def gettext(message: str) -> str:
    """`message` in the current language (filled in from the catalogs)."""
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural
