"""One Jinja2 environment for pages and emails, with gettext ready for translations."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

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
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    env.filters["thousands"] = lambda number: f"{number:,}"
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
