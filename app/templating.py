"""One Jinja2 environment for pages and emails, with gettext ready for translations."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from app import i18n
from app.config import TEMPLATES_DIR


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    # The callables read the current language (app.i18n) at each call: one environment
    # (and one template cache) serves every language.
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    # Numbers and dates in the current language: 12,345 / 12.345; 27 November 2026 /
    # 27 de noviembre de 2026. `{{ n | thousands }}`, `{{ d | date }}`, `{{ d | date("medium") }}`,
    # `{{ t | datetime }}` (the day and HH:MM).
    # A text made in Python (an error's detail, a field's message): translated if the
    # catalog has it, as it is otherwise; never %-formatted, unlike `_()`.
    env.filters["translated"] = i18n.gettext
    env.filters["thousands"] = i18n.format_number
    env.filters["number"] = i18n.format_number
    env.filters["fixed"] = i18n.format_fixed  # {{ 12.345 | fixed(1) }}: "12.3", "12,3"
    env.filters["date"] = i18n.format_day
    env.filters["datetime"] = i18n.format_moment
    env.globals["current_locale"] = i18n.current_locale
    env.globals["LOCALES"] = i18n.LOCALES
    env.globals["LANGUAGE_NAMES"] = i18n.LANGUAGE_NAMES
    env.globals["static_url"] = static_url
    return env


_static_urls: list[Callable[[str], str]] = []


def static_url(name: str) -> str:
    """`static_url("style.css")` in a template: the file's content-hashed URL from the
    manifest the web app installs at startup (app/web/static.py), or the plain
    `/static/style.css` (still served) where no app is running."""
    if _static_urls:
        return _static_urls[-1](name)
    return f"/static/{name}"


def use_static_urls(url: Callable[[str], str]) -> None:
    """Called by `create_app` with its manifest's `url`."""
    _static_urls[:] = [url]


def render_blocks(name: str, context: dict[str, Any]) -> dict[str, str]:
    """Every top-level block of a template, rendered: how an email keeps its
    subject, text and HTML parts in one file."""
    template = environment().get_template(name)
    rendered = {}
    for block, render in template.blocks.items():
        rendered[block] = "".join(render(template.new_context(context))).strip()
    return rendered
