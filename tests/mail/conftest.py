"""Mail fixtures (the SMTP server and `smtp_settings` live in tests/conftest.py)."""

from __future__ import annotations

import pytest

from app.db import Database


@pytest.fixture
def db(clean_database: Database) -> Database:
    """The test's database, empty at the start; work in it really commits."""
    return clean_database
