"""Web fixtures: the real app on a fresh, migrated SQLite file per test."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.support.config import make_settings


@pytest.fixture
def app_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "web.db"
    shutil.copy(sqlite_template, path)
    return make_settings(tmp_path, f"sqlite:///{path}")


@pytest.fixture
def app(app_settings: Settings) -> FastAPI:
    return create_app(app_settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # From loopback, as a developer on their own machine (the dev mailbox answers only
    # loopback clients).
    with TestClient(app, base_url="http://testserver", client=("127.0.0.1", 50000)) as client:
        yield client


def csrf_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)
