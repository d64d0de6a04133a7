"""Under a burst bigger than the database pool, the real server answers every request
(done, or 503 with Retry-After), counts exactly, and keeps answering afterwards.

`undersigned serve` runs in a subprocess (2 processes on PostgreSQL, 1 on SQLite) with
a deliberately small pool: 4 connections per process, 2 for requests and 2 in reserve
(D51). 200 people sign through the API; their confirmation links are read from the dev
mailbox (the in-process mail worker delivers them), as a person would; then 200 clients
confirm at once while 50 more sign and 50 read the tally.

Before admission control, a request kept its connection (and, confirming, the lock on
the letter's counter row) while it waited for a thread to validate its answer, while
every thread waited for a connection or for that lock: the server stopped answering.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.config import PG_URL, skip_or_fail
from tests.support.databases import scratch_postgres_database
from tests.support.ports import free_port
from tests.support.processes import (
    clean_env,
    console_script,
    run_in_process,
    wait_until_healthy,
)

pytestmark = pytest.mark.slow  # runs `undersigned serve` in a subprocess

SIGNERS = 200
EXTRA_SIGNERS = 50
READERS = 50
POOL_SIZE = 4
SLUG = "load-test"
VERIFY_LINK = re.compile(r"/verify/([A-Za-z0-9_\-.]+)")
ANSWER_WITHIN_SECONDS = 60.0
"""Every request of the burst is answered within this (a stalled server answers
nothing until its pool times out, 30 s per request, and then with 500s)."""


@dataclass
class Server:
    port: int
    log: Path
    mailbox: Path


@dataclass
class Answer:
    kind: str
    status: int | None
    retry_after: str | None
    error: str | None
    seconds: float


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        "sqlite",
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'capacity.db'}"
        return
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    with scratch_postgres_database(PG_URL, "capacity") as url:
        yield url


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    env = clean_env()
    env.update(
        UNDERSIGNED_DATABASE_URL=database_url,
        UNDERSIGNED_DATABASE_POOL_SIZE=str(POOL_SIZE),
        # The tally read at the end must be exact at once, not up to 5 s old.
        UNDERSIGNED_PUBLIC_CACHE_SECONDS="0",
        UNDERSIGNED_SECRET_KEY=secrets.token_urlsafe(48),
        UNDERSIGNED_BASE_URL=f"http://127.0.0.1:{port}",
        UNDERSIGNED_DATA_DIR=str(tmp_path),
        UNDERSIGNED_MAIL_BACKEND="dev",
        UNDERSIGNED_RATE_LIMITS="off",
        UNDERSIGNED_LOG_LEVEL="warning",
    )
    body = tmp_path / "letter.md"
    body.write_text("We ask for **one thing**.\n", encoding="utf-8")
    for command in (
        ["db", "upgrade"],
        ["letter", "create", "--slug", SLUG, "--title", "Load test",
         "--body-file", str(body), "--publish"],
    ):  # fmt: skip
        # One-off set-up commands through the script's entry point, in this process (as
        # tests/test_cli.py runs them); the server below is the real process.
        done = run_in_process(command, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    workers = "2" if database_url.startswith("postgresql") else "1"
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603
            # With the mail worker in each process: it delivers the links to the dev
            # mailbox, and it needs its reserved connection while the requests pour in.
            [console_script(), "serve", "--port", str(port), "--workers", workers],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its worker processes too, for the clean-up below
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, log.read_text)
        yield Server(port=port, log=log, mailbox=tmp_path / "dev-mail")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _request(
    port: int, method: str, path: str, body: object | None, *, timeout: float
) -> tuple[int, str | None, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        payload = json.dumps(body) if body is not None else None
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Retry-After"), response.read()
    finally:
        connection.close()


def _sign_body(number: int) -> dict[str, object]:
    return {
        "name": f"Signer {number}",
        "email": f"load.{number}@example.org",
        "title": "Engineer",
        "organization": "Example Corp",
        "city": "Oakland",
        "display": "public",
        "contact_ok": False,
    }


def _sign(port: int, number: int) -> int:
    path = f"/api/v1/letters/{SLUG}/signatures"
    return _request(port, "POST", path, _sign_body(number), timeout=30)[0]


def _count(port: int) -> int:
    status, _, body = _request(port, "GET", f"/api/v1/letters/{SLUG}", None, timeout=30)
    assert status == 200, body
    count = json.loads(body)["signature_count"]
    assert isinstance(count, int)
    return count


def _links(mailbox: Path, wanted: int) -> dict[str, str]:
    """Each signer's confirmation token, read from the dev mailbox as they arrive."""
    tokens: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while len(tokens) < wanted:
        assert time.monotonic() < deadline, f"{len(tokens)} of {wanted} links arrived"
        for path in mailbox.glob("*.eml") if mailbox.is_dir() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            text = message.get_body(preferencelist=("plain",))
            found = VERIFY_LINK.search(text.get_content()) if text is not None else None
            if found:
                tokens[str(message["To"])] = found.group(1)
        time.sleep(0.2)
    return tokens


@dataclass(frozen=True)
class Call:
    kind: str  # what EXPECTED says it answers when admitted
    method: str
    path: str
    body: object | None


# What each kind of request answers when it is admitted.
EXPECTED = {"confirm": 200, "sign": 202, "read": 200}


def _one(port: int, call: Call, start: threading.Barrier) -> Answer:
    start.wait(timeout=60)
    began = time.monotonic()
    try:
        status, retry_after, _ = _request(
            port, call.method, call.path, call.body, timeout=ANSWER_WITHIN_SECONDS
        )
    except OSError as exc:  # a timeout, or the connection dropped
        return Answer(call.kind, None, None, repr(exc), time.monotonic() - began)
    return Answer(call.kind, status, retry_after, None, time.monotonic() - began)


def _burst(port: int, calls: list[Call]) -> list[Answer]:
    """Every call at once, each from its own client."""
    start = threading.Barrier(len(calls))
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(_one, port, call, start) for call in calls]
        return [future.result(timeout=ANSWER_WITHIN_SECONDS + 60) for future in futures]


def test_a_burst_bigger_than_the_pool_is_answered_counted_and_survived(
    server: Server,
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda n: _sign(server.port, n), range(SIGNERS)))
    assert statuses == [202] * SIGNERS
    tokens = _links(server.mailbox, SIGNERS)
    confirm = "/api/v1/signatures/verify"
    calls = [Call("confirm", "POST", confirm, {"token": token}) for token in tokens.values()]
    path = f"/api/v1/letters/{SLUG}/signatures"
    calls += [Call("sign", "POST", path, _sign_body(SIGNERS + n)) for n in range(EXTRA_SIGNERS)]
    calls += [Call("read", "GET", f"/api/v1/letters/{SLUG}", None)] * READERS

    began = time.monotonic()
    answers = _burst(server.port, calls)
    took = time.monotonic() - began

    failures = [
        answer
        for answer in answers
        if answer.status != EXPECTED[answer.kind]
        and not (answer.status == 503 and answer.retry_after)
    ]
    summary = sorted(Counter((a.kind, a.status) for a in answers).items(), key=str)
    assert failures == [], (
        f"{len(failures)} of {len(calls)} not answered as expected in {took:.1f} s: "
        f"{summary}; first: {failures[:3]}\n{server.log.read_text()[-3000:]}"
    )
    slowest = max(answer.seconds for answer in answers)
    print(f"\n{len(calls)} requests in {took:.2f} s (slowest {slowest:.2f} s): {summary}")
    assert "QueuePool limit" not in server.log.read_text()

    # Exact: the tally counts the confirmations that were answered 200, no more, no less.
    confirmed = sum(1 for a in answers if a.kind == "confirm" and a.status == 200)
    assert _count(server.port) == confirmed
    # Afterwards the server answers normally: every link still confirms (again, or for
    # the first time if it was answered 503), and the count is every signer.
    assert _request(server.port, "GET", "/healthz", None, timeout=10)[0] == 200
    for token in tokens.values():
        assert _request(server.port, "POST", confirm, {"token": token}, timeout=10)[0] == 200
    assert _count(server.port) == SIGNERS
    assert _sign(server.port, 10_000) == 202
