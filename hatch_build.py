"""Hatchling build hook: compiles translations/*/LC_MESSAGES/*.po into .mo at install.

Each `.mo` is written beside its `.po` (gitignored: a build product), before hatchling
collects the files, so the wheel's force-include of translations/ carries both; an
editable install (`make run` and `make test` run `pip install -e .`) gets them the same
way. app/i18n.py reads a `.mo` while it is at least as new as its `.po`, and otherwise
compiles the `.po` in memory (a checkout where someone just edited it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def compile_catalogs(source: Path, target: Path) -> list[Path]:
    """Every `source/<locale>/LC_MESSAGES/<domain>.po` as a `.mo` under `target`, at
    the same relative path; returns the `.mo` files written. Fuzzy entries are left out."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for po in sorted(source.glob("*/LC_MESSAGES/*.po")):
        with po.open("rb") as handle:
            catalog = read_po(handle)
        mo = target / po.relative_to(source).with_suffix(".mo")
        mo.parent.mkdir(parents=True, exist_ok=True)
        with mo.open("wb") as handle:
            write_mo(handle, catalog, use_fuzzy=False)
        written.append(mo)
    return written


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        source = Path(self.root) / "translations"
        if self.target_name == "wheel" and source.is_dir():
            compile_catalogs(source, source)
