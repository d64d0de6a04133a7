"""The catalogs (translations/): complete, current with the code, consistent; and the
language helpers of app/i18n.py (negotiation, plurals, numbers and dates)."""

from __future__ import annotations

import os
import re
import sys
from datetime import date, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.support import Translations

from app import i18n
from app.templating import environment
from tests.support.config import REPO_ROOT

CATALOGS = REPO_ROOT / "translations"
SPANISH = CATALOGS / "es" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\w+\}")


def _read(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def _ids(catalog: Catalog) -> set[str | tuple[str, ...]]:
    return {_id(message) for message in catalog if message.id}


def _id(message: Message) -> str | tuple[str, ...]:
    return message.id if isinstance(message.id, str) else tuple(message.id)


def _strings(message: Message) -> tuple[str, ...]:
    string = message.string
    if isinstance(string, (tuple, list)):
        return tuple(str(part or "") for part in string)
    return (string or "",)


def test_every_locale_has_a_catalog_and_no_other_does() -> None:
    shipped = {path.parent.parent.name for path in CATALOGS.glob("*/LC_MESSAGES/messages.po")}
    assert shipped == set(i18n.LOCALES) - {i18n.DEFAULT_LOCALE}


def test_the_spanish_catalog_translates_every_string_and_none_is_fuzzy() -> None:
    catalog = _read(SPANISH)
    assert len(_ids(catalog)) > 500  # the whole interface, not a stub
    untranslated = [m.id for m in catalog if m.id and not all(_strings(m))]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not untranslated, f"{len(untranslated)} untranslated, e.g. {untranslated[:5]}"
    assert not fuzzy, f"{len(fuzzy)} fuzzy, e.g. {fuzzy[:5]}"


def test_each_translation_keeps_the_placeholders_of_its_msgid() -> None:
    for message in _read(SPANISH):
        if not message.id:
            continue
        msgid = _id(message)
        ids = msgid if isinstance(msgid, tuple) else (msgid,)
        wanted = set(PLACEHOLDER.findall(ids[-1]))
        for string in _strings(message):
            found = set(PLACEHOLDER.findall(string))
            # A singular may leave out the number ("hour" / "%(num)s hours").
            assert found <= wanted and (found == wanted or len(ids) == 2), (message.id, string)


def test_spanish_plural_forms_are_declared() -> None:
    catalog = _read(SPANISH)
    assert catalog.num_plurals >= 2
    plurals = [m for m in catalog if m.id and isinstance(m.id, tuple)]
    assert plurals
    for message in plurals:
        assert len(_strings(message)) == catalog.num_plurals


def test_the_template_is_current_with_the_code() -> None:
    """`make messages` was run after the last string changed: extracting now (babel.cfg,
    as `make messages` does) gives the msgids of translations/messages.pot, and the
    Spanish catalog has them all."""
    with (REPO_ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)  # type: ignore[no-untyped-call]
    extracted: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        REPO_ROOT, method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        extracted.add(message if isinstance(message, str) else tuple(message))
    extracted.discard("")
    kept = _ids(_read(CATALOGS / "messages.pot"))
    assert extracted - kept == set(), "new strings: run `make messages` and translate them"
    assert kept - extracted == set(), "strings gone from the code: run `make messages`"
    assert extracted - _ids(_read(SPANISH)) == set()


def test_gettext_follows_the_current_locale() -> None:
    assert i18n.gettext("Sign the letter") == "Sign the letter"
    with i18n.use_locale("es"):
        assert i18n.gettext("Sign the letter") == "Firmar la carta"
        assert i18n.gettext("A string nobody wrote") == "A string nobody wrote"
        assert i18n.gettext("") == ""  # not the catalog's header
    with i18n.use_locale("xx"):
        assert i18n.current_locale() == "en"


@pytest.mark.parametrize(
    ("n", "english", "spanish"),
    [(1, "1 day", "1 día"), (2, "2 days", "2 días"), (0, "0 days", "0 días"),
     (1_000_000, "1000000 days", "1000000 días")],
)  # fmt: skip
def test_plural_forms(n: int, english: str, spanish: str) -> None:
    def days() -> str:
        return i18n.ngettext("%(num)s day", "%(num)s days", n) % {"num": n}

    assert days() == english
    with i18n.use_locale("es"):
        assert days() == spanish


def test_templates_translate_with_named_placeholders_and_plurals() -> None:
    template = environment().from_string(
        '{{ _("Published %(date)s", date=day | date) }} / '
        '{{ ngettext("%(num)s minute", "%(num)s minutes", 3) }} / {{ n | thousands }}'
    )
    day = date(2026, 11, 27)
    assert template.render(day=day, n=12345) == "Published 27 November 2026 / 3 minutes / 12,345"
    with i18n.use_locale("es"):
        assert template.render(day=day, n=12345) == (
            "Publicada el 27 de noviembre de 2026 / 3 minutos / 12.345"
        )


def test_numbers_and_dates_follow_the_locale() -> None:
    moment = datetime(2027, 1, 31, 23, 59)
    assert i18n.format_number(1234567) == "1,234,567"
    assert i18n.format_fixed(12.34, 1) == "12.3"
    assert i18n.format_day(moment) == "31 January 2027"
    assert i18n.format_day(moment, "medium") == "31 Jan 2027"
    assert i18n.format_moment(moment) == "31 January 2027, 23:59"
    with i18n.use_locale("es"):
        assert i18n.format_number(1234567) == "1.234.567"
        assert i18n.format_fixed(12.34, 1) == "12,3"
        assert i18n.format_day(moment) == "31 de enero de 2027"
        assert i18n.format_moment(moment) == "31 de enero de 2027, 23:59"
    assert i18n.format_number(None) == ""


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "chosen"),
    [
        (None, None, None, "en"),
        (None, None, "es-MX,es;q=0.9,en;q=0.8", "es"),
        (None, None, "fr-FR, fr;q=0.9, es;q=0.5, en;q=0.4", "es"),
        (None, None, "fr, de", "en"),
        (None, None, "en;q=0.2, es;q=0.8", "es"),
        (None, None, "es;q=0, en", "en"),
        (None, "es", "en", "es"),
        ("en", "es", "es", "en"),
        ("ES", None, None, "es"),
        ("klingon", "es", "en", "es"),
        (None, "klingon", "es", "es"),
    ],
)
def test_negotiation_order(
    query: str | None, cookie: str | None, accept: str | None, chosen: str
) -> None:
    assert i18n.negotiate(query=query, cookie=cookie, accept_language=accept) == chosen


def test_a_stale_or_missing_mo_falls_back_to_the_po(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "es" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    po = folder / "messages.po"
    po.write_bytes(SPANISH.read_bytes())
    monkeypatch.setattr(i18n, "catalog_dir", lambda: tmp_path)
    i18n.translations.cache_clear()
    try:
        assert i18n.translations("es").gettext("Sign the letter") == "Firmar la carta"
        # An older .mo that says something else is ignored while the .po is newer...
        stale = folder / "messages.mo"
        catalog = Catalog(locale="es")
        catalog.add("Sign the letter", "VIEJO")
        from babel.messages.mofile import write_mo

        with stale.open("wb") as handle:
            write_mo(handle, catalog)
        os.utime(stale, (1, 1))
        i18n.translations.cache_clear()
        assert i18n.translations("es").gettext("Sign the letter") == "Firmar la carta"
        # ...and read once it is the newer one (what an install compiled).
        os.utime(stale, None)
        os.utime(po, (1, 1))
        i18n.translations.cache_clear()
        assert i18n.translations("es").gettext("Sign the letter") == "VIEJO"
    finally:
        i18n.translations.cache_clear()


def test_the_build_hook_compiles_what_gettext_reads(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from hatch_build import compile_catalogs
    finally:
        sys.path.remove(str(REPO_ROOT))
    [mo] = compile_catalogs(CATALOGS, tmp_path)
    assert mo == tmp_path / "es" / "LC_MESSAGES" / "messages.mo"
    with mo.open("rb") as handle:
        compiled = Translations(handle, domain="messages")
    assert compiled.gettext("Sign the letter") == "Firmar la carta"
    assert compiled.ngettext("%(num)s day", "%(num)s days", 5) == "%(num)s días"
