"""Mail fixtures: a real SMTP server (aiosmtpd) on loopback, and settings that use it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import MailBackend, Settings
from app.db import Database
from tests.support.config import make_settings
from tests.support.smtp import SmtpServer, running_smtp_server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def smtp_settings(tmp_path: Path, clean_database: Database, smtp_server: SmtpServer) -> Settings:
    return make_settings(
        tmp_path,
        clean_database.url,
        mail_backend=MailBackend.SMTP,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_timeout_seconds=5.0,
    )


@pytest.fixture
def db(clean_database: Database) -> Database:
    """The test's database, empty at the start; work in it really commits."""
    return clean_database
