"""`undersigned worker`, the real process, delivering to a real SMTP server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.config import Settings
from app.db import Database
from app.mail.models import OutboxStatus
from tests.mail.test_worker import only_row, sign_committed
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.slow  # runs `undersigned` in subprocesses


def test_the_worker_command_delivers_and_stops_cleanly(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    sign_committed(db, smtp_settings, "grace@example.org")
    env = {key: value for key, value in os.environ.items() if not key.startswith("UNDERSIGNED_")}
    env.update(
        UNDERSIGNED_DATABASE_URL=smtp_settings.database_url,
        UNDERSIGNED_DATA_DIR=str(smtp_settings.data_dir),
        UNDERSIGNED_SECRET_KEY=smtp_settings.secret,
        UNDERSIGNED_BASE_URL=smtp_settings.base_url,
        UNDERSIGNED_MAIL_BACKEND="smtp",
        UNDERSIGNED_SMTP_HOST=smtp_server.host,
        UNDERSIGNED_SMTP_PORT=str(smtp_server.port),
    )
    script = Path(sys.executable).with_name("undersigned")
    worker = subprocess.Popen(  # noqa: S603
        [str(script), "worker"],
        cwd=smtp_settings.data_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not smtp_server.received and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
            time.sleep(0.1)
        assert [m["To"] for m in smtp_server.messages()] == ["grace@example.org"]
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output
    assert "Mail worker delivering through the smtp backend" in output
    assert only_row(db).status == OutboxStatus.SENT
