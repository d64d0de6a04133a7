"""`undersigned serve`, the real process as `make run` starts it: the address it builds
links for, the files it creates, and what it answers over a raw socket (the dev
mailbox behind a proxy, oversized headers, trailing-slash redirects)."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import (
    clean_env,
    console_script,
    run_in_process,
    wait_until_healthy,
)

pytestmark = pytest.mark.slow  # runs `undersigned` in subprocesses

TIMEOUT = 120


@dataclass
class Served:
    directory: Path  # the working directory: ./var is DATA_DIR, as with `make run`
    port: int
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`db upgrade`, `demo`, then `serve --port N` with nothing but TRUSTED_PROXIES
    set: no BASE_URL, no SECRET_KEY, no DATA_DIR, as `make run PORT=N` does."""
    directory = tmp_path_factory.mktemp("serve")
    env = clean_env(trusted_proxies="127.0.0.1")
    script = console_script()
    for command in (["db", "upgrade"], ["demo"]):
        # One-off set-up commands through the script's entry point, in this process (as
        # tests/test_cli.py runs them); `serve` below is the real process.
        done = run_in_process(command, cwd=directory, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    output = directory / "serve.log"
    with output.open("w") as log:
        server = subprocess.Popen(  # noqa: S603
            [script, "serve", "--port", str(port)],
            cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    site = Served(directory, port, output)
    try:
        wait_until_healthy(site.url, server, output.read_text)
        yield site
    finally:
        server.terminate()
        server.wait(timeout=30)


def _raw(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Sends `request` as is; returns the status line, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _get(path: str, *headers: str, host: str = "127.0.0.1") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.fixture(scope="module")
def dev_email(served: Served) -> str:
    """Signs the demo letter through the API; the confirmation email, once the
    in-process worker has put it in the dev mailbox."""
    request = urllib.request.Request(  # noqa: S310
        f"{served.url}/api/v1/letters/ice-out/signatures",
        data=json.dumps({"name": "Port Tester", "email": "port@example.org"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 202
    mailbox = served.directory / "var" / "dev-mail"
    deadline = time.monotonic() + 30
    while not list(mailbox.glob("*.eml")):
        assert time.monotonic() < deadline, "no email reached the dev mailbox"
        time.sleep(0.1)
    [path] = mailbox.glob("*.eml")
    return path.read_text()


# --- make run PORT=N: every link uses the port it serves on ---


def test_links_use_the_port_served_on_when_base_url_is_not_set(
    served: Served, dev_email: str
) -> None:
    expected = f"http://127.0.0.1:{served.port}"
    assert f"{expected}/verify/" in dev_email
    assert "127.0.0.1:8000" not in dev_email
    with urllib.request.urlopen(f"{served.url}/api/v1/letters/ice-out", timeout=10) as response:  # noqa: S310
        assert json.load(response)["url"] == f"{expected}/letters/ice-out"
    assert f"Undersigned on {expected}" in served.output.read_text()


# --- what it creates is for this user only ---


def test_data_dir_and_everything_in_it_are_private(served: Served, dev_email: str) -> None:
    var = served.directory / "var"
    modes = {
        str(path.relative_to(served.directory)): stat.S_IMODE(path.stat().st_mode)
        for path in [var, *var.rglob("*")]
    }
    assert {"var/undersigned.db", "var/undersigned.db-wal", "var/undersigned.db-shm",
            "var/secret_key", "var/dev-mail"} <= set(modes)  # fmt: skip
    assert any(name.endswith(".eml") for name in modes)
    assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}
    assert modes["var"] == 0o700
    assert modes["var/secret_key"] == 0o600


# --- the dev mailbox answers this machine only ---


def test_the_dev_mailbox_answers_loopback_but_not_a_client_behind_the_proxy(
    served: Served,
) -> None:
    # TRUSTED_PROXIES=127.0.0.1: uvicorn takes the client from X-Forwarded-For.
    status, _, body = _raw(served.port, _get("/dev/mail", "X-Forwarded-For: 203.0.113.9"))
    assert status == "HTTP/1.1 404 Not Found"
    assert b"Dev mailbox" not in body
    assert b"/verify/" not in body
    missing = _raw(served.port, _get("/no-such-page", "X-Forwarded-For: 203.0.113.9"))
    # A page names its own address (canonical link, language links): apart from that,
    # the same 404 as an address that does not exist.
    assert body.replace(b"/dev/mail", b"/no-such-page") == missing[2]

    status, headers, body = _raw(served.port, _get("/dev/mail"))
    assert status == "HTTP/1.1 200 OK"
    assert b"Dev mailbox" in body
    assert headers["cache-control"] == "no-store"


# --- headers: uvicorn (httptools) reads any size; the app answers 431 past 16 KB ---


@pytest.mark.parametrize("size", [100_000, 4_000_000])
def test_oversized_request_headers_get_431(served: Served, size: int) -> None:
    lines = [f"X-Filler-{i}: {'a' * 7_990}" for i in range(size // 8_000)]
    status, headers, body = _raw(served.port, _get("/letters/ice-out", *lines))
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["content-type"].startswith("text/html")
    assert b"headers are too large" in body


def test_ordinary_headers_pass(served: Served) -> None:
    lines = [f"X-Filler-{i}: {'a' * 990}" for i in range(12)]  # 12 KB
    status, _, _ = _raw(served.port, _get("/letters/ice-out", *lines))
    assert status == "HTTP/1.1 200 OK"


# --- trailing-slash redirects stay on this site ---


def test_a_trailing_slash_redirect_ignores_the_host_header(served: Served) -> None:
    status, headers, _ = _raw(served.port, _get("/letters/ice-out/?ref=x", host="evil.example"))
    assert status == "HTTP/1.1 307 Temporary Redirect"
    assert headers["location"] == "/letters/ice-out?ref=x"
