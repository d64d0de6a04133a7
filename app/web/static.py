"""Static files under content-hashed names.

At startup `StaticManifest` hashes every file under static/ (the installed copy): each
`name.ext` is also served as `name.<hash>.ext`, where the hash is the first 12 hex
digits of the file's SHA-256. Templates name files through the Jinja global
`static_url("style.css")`, so a page always points at the bytes it was built with, and
a hashed URL can be cached for a year and never revalidated. The plain URL keeps
working with a short cache and revalidation (ETag, Last-Modified): pages a browser or
proxy still holds, and URLs built in JavaScript (static/altcha-setup.js names the
ALTCHA worker itself).

A hashed URL is immutable only when it names the bytes on disk: a hash from another
release (a page rendered by a process with other files, during a rolling restart) or
a file edited since startup (a developer changing CSS) gets the current file with
`no-cache`, never a year-long promise about bytes it does not hold.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PREFIX = "/static/"
HASH_DIGITS = 12
IMMUTABLE = "public, max-age=31536000, immutable"
"""A hashed URL that names the file's current bytes: one year, never revalidated."""
SHORT = "public, max-age=300, must-revalidate"
"""A plain URL: five minutes, then revalidated by ETag / Last-Modified."""
REVALIDATE = "no-cache"
"""A hashed URL whose hash is not the file's current one: revalidate every time."""
_KIND = "undersigned.static"
"""Scope key: what `get_response` resolved, for `file_response` to read."""
_HASHED = re.compile(rf"^(?P<stem>.+)\.(?P<hash>[0-9a-f]{{{HASH_DIGITS}}})(?P<suffix>\.[^./]+)$")


@dataclass(frozen=True)
class _Entry:
    hashed: str
    """The hashed path, relative to static/ (`vendor/altcha/altcha.min.<hash>.js`)."""
    size: int
    mtime_ns: int


def hashed_name(name: str, digest: str) -> str:
    """`style.css` -> `style.<digest>.css`; the hash goes before the last suffix."""
    path = PurePosixPath(name)
    if not path.suffix:
        return f"{name}.{digest}"
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


class StaticManifest:
    """The hashed name of every file under `directory`, computed once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.entries: dict[str, _Entry] = {}
        self.originals: dict[str, str] = {}
        """Hashed path -> plain path, both relative to static/."""
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            name = path.relative_to(directory).as_posix()
            data = path.read_bytes()
            stat = path.stat()
            digest = hashlib.sha256(data).hexdigest()[:HASH_DIGITS]
            entry = _Entry(hashed_name(name, digest), stat.st_size, stat.st_mtime_ns)
            self.entries[name] = entry
            self.originals[entry.hashed] = name

    def url(self, name: str) -> str:
        """`/static/style.<hash>.css` for `style.css`. A name that is not a file under
        static/ is a mistake in a template: it fails loudly, in every test that renders it."""
        try:
            return PREFIX + self.entries[name].hashed
        except KeyError:
            raise LookupError(f"static/{name} does not exist") from None

    def resolve(self, path: str) -> tuple[str, str]:
        """(the file to serve, which URL this is) for a path under /static/:
        `current` (this release's hashed name), `other` (hashed, but not with this
        release's hash: served from the plain name when that file exists) or `plain`."""
        if path in self.originals:
            return self.originals[path], "current"
        match = _HASHED.match(path)
        if match and path not in self.entries:
            plain = match["stem"] + match["suffix"]
            if plain in self.entries:
                return plain, "other"
        return path, "plain"

    def unchanged(self, name: str, stat: os.stat_result) -> bool:
        """Whether the file on disk is still the one hashed at startup."""
        entry = self.entries.get(name)
        return (
            entry is not None and entry.size == stat.st_size and entry.mtime_ns == stat.st_mtime_ns
        )


class HashedStaticFiles(StaticFiles):
    """Starlette's StaticFiles (its path checks, ETag, Last-Modified, 304s, HEAD), plus
    the hashed names and the Cache-Control each kind of URL gets."""

    def __init__(self, manifest: StaticManifest) -> None:
        super().__init__(directory=manifest.directory)
        self.manifest = manifest

    async def get_response(self, path: str, scope: Scope) -> Response:
        name, kind = self.manifest.resolve(PurePosixPath(*Path(path).parts).as_posix())
        scope[_KIND] = (name, kind)
        return await super().get_response(name, scope)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        name, kind = scope.get(_KIND, ("", "plain"))
        if kind == "plain":
            cache = SHORT
        elif kind == "current" and self.manifest.unchanged(name, stat_result):
            cache = IMMUTABLE
        else:
            cache = REVALIDATE
        response.headers["cache-control"] = cache
        return response
