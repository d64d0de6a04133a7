"""The built wheel is a complete install: templates, static files and migrations ride
inside the package, and an installed (not editable) copy migrates, seeds and serves.

The wheel goes into a fresh virtualenv. Its dependencies are borrowed from the test
run's own environment through a `.pth` line (a plain path: the editable install's own
`.pth` files there are not processed), so the test needs no network and cannot pick
up the checkout's `app/` by accident: it runs from an empty directory and asserts where
`app` was imported from.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.config import REPO_ROOT
from tests.support.ports import free_port
from tests.support.processes import clean_env, wait_until_healthy

pytestmark = pytest.mark.slow

TIMEOUT = 120


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(  # noqa: S603
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--quiet", "--wheel-dir", out, REPO_ROOT, cwd=out,
    )  # fmt: skip
    [built] = out.glob("undersigned-*.whl")
    return built


def test_the_wheel_carries_templates_static_files_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO_ROOT / "templates").rglob("*"):
        if path.is_file():
            assert f"app/templates/{path.relative_to(REPO_ROOT / 'templates')}" in names
    for path in (REPO_ROOT / "static").rglob("*"):
        if path.is_file():
            assert f"app/static/{path.relative_to(REPO_ROOT / 'static')}" in names
    for path in (REPO_ROOT / "migrations" / "versions").glob("*.py"):
        assert f"app/migrations/versions/{path.name}" in names
    assert "app/migrations/env.py" in names
    assert "app/migrations/script.py.mako" in names
    # The catalogs, and each one compiled at build time (hatch_build.py).
    for po in (REPO_ROOT / "translations").glob("*/LC_MESSAGES/messages.po"):
        shipped = f"app/translations/{po.relative_to(REPO_ROOT / 'translations')}"
        assert shipped in names
        assert shipped.removesuffix(".po") + ".mo" in names
    # Nothing from the repository's tooling or tests.
    assert not any(name.startswith(("tests/", "bench/", "app/tests/")) for name in names)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (not editable); returns its bin/."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    # Without a pip of its own (bootstrapping one takes most of the time): the test
    # run's pip installs into it, as `pip --python`, like the venv's own pip would.
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv.parent)
    bin_dir = venv / "bin"
    _run(
        sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--quiet",
        "--no-deps", "--no-index", wheel,
        cwd=venv.parent,
    )  # fmt: skip
    site_packages = Path(
        _run(
            bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
            cwd=venv.parent,
        ).strip()
    )  # fmt: skip
    ours = sysconfig.get_path("purelib")
    (site_packages / "borrowed_dependencies.pth").write_text(ours + "\n")
    return bin_dir


@pytest.fixture
def app_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(
        drop=("PYTHONPATH", "VIRTUAL_ENV"),
        database_url=f"sqlite:///{tmp_path / 'wheel.db'}",
        data_dir=str(tmp_path / "var"),
    )


def test_the_installed_package_is_the_wheel_not_the_checkout(
    installed: Path, tmp_path: Path, app_env: dict[str, str]
) -> None:
    where = _run(
        installed / "python", "-c",
        "import app, app.config as c; print(app.__file__); print(c.TEMPLATES_DIR); "
        "print(c.STATIC_DIR); print(c.MIGRATIONS_DIR)",
        cwd=tmp_path, env=app_env,
    ).split()  # fmt: skip
    venv = installed.parent.resolve()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv), where
        assert not Path(path).resolve().is_relative_to(REPO_ROOT.resolve()), where


@pytest.fixture
def served(installed: Path, tmp_path: Path, app_env: dict[str, str]) -> Iterator[str]:
    """`undersigned db upgrade`, `demo`, then `serve` from the installed wheel."""
    assert "up to date" in _run(installed / "undersigned", "db", "upgrade", cwd=tmp_path,
                                env=app_env)  # fmt: skip
    assert "ice-out" in _run(installed / "undersigned", "demo", cwd=tmp_path, env=app_env)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(  # noqa: S603
        [str(installed / "undersigned"), "serve", "--port", str(port), "--no-worker"],
        cwd=tmp_path,
        env={**app_env, "UNDERSIGNED_BASE_URL": base_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_healthy(base_url, server, lambda: server.stdout.read() if server.stdout else "")
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_installed_wheel_migrates_seeds_and_serves_pages(served: str) -> None:
    with urllib.request.urlopen(f"{served}/letters/ice-out", timeout=10) as response:  # noqa: S310
        assert response.status == 200
        page = response.read().decode()
    # The sign form, rendered from the installed templates (the public page carries
    # no CSRF token: browsers prove where a POST comes from).
    assert 'action="/letters/ice-out/sign"' in page and 'name="form_rendered"' in page
    # The content-hashed name, computed at startup from the installed static/.
    stylesheet = re.search(r'href="(/static/style\.[0-9a-f]{12}\.css)"', page)
    assert stylesheet, "no hashed stylesheet on the page"
    for url in (stylesheet[1], "/static/style.css"):
        with urllib.request.urlopen(f"{served}{url}", timeout=10) as response:  # noqa: S310
            assert response.status == 200
            assert response.read() == (REPO_ROOT / "static" / "style.css").read_bytes()
