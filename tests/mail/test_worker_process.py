"""`undersigned worker`, the real process, delivering to a real SMTP server: a clean stop
on SIGTERM, a restart after SIGKILL mid-send (D52), and what it prints (D50)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from app import tokens
from app.config import Settings
from app.db import Database
from app.mail.models import OutboxStatus
from tests.mail.outbox import queue_email, rows
from tests.mail.test_worker import only_row, sign_committed
from tests.support.config import TEST_SECRET
from tests.support.ports import free_port
from tests.support.processes import clean_env, console_script
from tests.support.smtp import SmtpServer, serving

PRIVATE_TOKEN = tokens.issue(TEST_SECRET, tokens.Purpose.SIGNATURE_VERIFY, "0f1e2d3c4b5a6978")

pytestmark = pytest.mark.slow  # runs `undersigned` in subprocesses


def test_the_worker_command_delivers_and_stops_cleanly(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    sign_committed(db, smtp_settings, "grace@example.org")
    worker = start_worker(smtp_settings, worker_env(smtp_settings, smtp_server), subprocess.PIPE)
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


# A worker killed while it holds emails --------------------------------------------------


@dataclass
class StallingSmtpServer(SmtpServer):
    """Holds its reply to the first DATA (and to every DATA until `release()`), so that
    a worker is caught mid-send, its batch claimed; after `release()` it accepts."""

    stalled: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.released.is_set():
            self.stalled.set()
            while not self.released.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 Too late"  # to a client that is gone by now
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def stalling_smtp_server() -> Iterator[StallingSmtpServer]:
    with serving(StallingSmtpServer(host="127.0.0.1", port=free_port())) as server:
        try:
            yield server
        finally:
            server.release()  # before the controller stops: no handler left waiting


def worker_env(settings: Settings, smtp_server: SmtpServer) -> dict[str, str]:
    return clean_env(
        database_url=settings.database_url,
        data_dir=str(settings.data_dir),
        secret_key=settings.secret,
        base_url=settings.base_url,
        mail_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=str(smtp_server.port),
    )


def start_worker(
    settings: Settings, env: dict[str, str], output: IO[str] | int
) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603
        [console_script(), "worker"],
        cwd=settings.data_dir,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_all(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


def stop(worker: subprocess.Popen[str]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


RESTART_DEADLINE_SECONDS = 60
EMAILS = 5


def test_after_a_sigkill_mid_send_a_new_worker_sends_every_email_within_a_minute(
    db: Database, smtp_settings: Settings, tmp_path: Path
) -> None:
    ids = [queue_email(db, to=f"signer{n}@example.org") for n in range(EMAILS)]
    with stalling_smtp_server() as smtp_server, (tmp_path / "worker.log").open("w+") as log:
        env = worker_env(smtp_settings, smtp_server)
        first = start_worker(smtp_settings, env, log)
        try:
            assert smtp_server.stalled.wait(timeout=30), "the worker never reached DATA"
            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        # Killed mid-send, holding its whole batch.
        claimed = rows(db)
        assert [row.id for row in claimed] == ids
        assert {row.status for row in claimed} == {OutboxStatus.SENDING}
        assert smtp_server.received == []
        smtp_server.release()

        restarted_at = time.monotonic()
        second = start_worker(smtp_settings, env, log)
        try:
            while len(smtp_server.received) < EMAILS:
                assert second.poll() is None, read_all(log)
                waited = time.monotonic() - restarted_at
                assert waited < RESTART_DEADLINE_SECONDS, (
                    f"{len(smtp_server.received)} of {EMAILS} sent {waited:.0f} s after "
                    f"the restart; rows: {[(r.status, r.lease_expires_at) for r in rows(db)]}"
                )
                time.sleep(0.2)
            print(f"\nall {EMAILS} sent {time.monotonic() - restarted_at:.1f} s after restart")
        finally:
            stop(second)

    finished = rows(db)
    assert {row.status for row in finished} == {OutboxStatus.SENT}
    # The one being sent when the worker died was never accepted: each went out once.
    received_ids = sorted(message["Message-ID"] for message in smtp_server.messages())
    assert received_ids == sorted(row.message_id for row in finished)


# What a worker process prints ----------------------------------------------------------

VICTIM = "victim@example.org"


def test_the_worker_process_logs_smtp_refusals_without_the_address(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    link = f"{smtp_settings.base_url}/verify/{PRIVATE_TOKEN}"
    refused = queue_email(db, to=VICTIM, text=f"Confirm: {link}")
    smtp_server.refuse(f"550 <{VICTIM}> unknown", times=1, at="rcpt")
    queue_email(db, to="other@example.org")  # then one that is accepted
    with (tmp_path / "worker.log").open("w+") as log:
        # One sender: the server refuses whichever RCPT comes first, and that must be
        # the victim's.
        env = {**worker_env(smtp_settings, smtp_server), "UNDERSIGNED_MAIL_SENDERS": "1"}
        worker = start_worker(smtp_settings, env, log)
        try:
            deadline = time.monotonic() + 30
            # Both outcomes: the worker's senders may finish them in either order.
            while not (smtp_server.received and "permanent failure" in read_all(log)):
                assert worker.poll() is None
                assert time.monotonic() < deadline, "nothing was delivered"
                time.sleep(0.1)
        finally:
            stop(worker)
        output = read_all(log)
    assert f"email {refused}: permanent failure: 550" in output, output
    for secret in (VICTIM, PRIVATE_TOKEN, PRIVATE_TOKEN.split(".")[0]):
        assert secret not in output
