"""The real app served by uvicorn on a free loopback port, in a thread (browser tests)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from app.config import Settings
from app.main import create_app
from tests.conftest import skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """UNDERSIGNED_TEST_CHROMIUM, else Debian's /usr/bin/chromium, else None."""
    configured = os.environ.get("UNDERSIGNED_TEST_CHROMIUM", "")
    if configured:
        return configured if Path(configured).is_file() else None
    default = "/usr/bin/chromium"
    return default if Path(default).is_file() else None


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium through Playwright; skips (fails under REQUIRE_ALL) without it."""
    executable = chromium_path()
    if executable is None:
        skip_or_fail("Chromium not found (set UNDERSIGNED_TEST_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def free_socket() -> tuple[socket.socket, str]:
    """A bound loopback socket and the base URL it will serve."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def serve(sock: socket.socket, settings: Settings) -> Iterator[None]:
    """Runs create_app(settings) on `sock` until the block ends, then stops it."""
    config = uvicorn.Config(
        create_app(settings), lifespan="on", log_level="warning", server_header=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait_until(lambda: server.started, thread, "uvicorn did not start within 15 s")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=40)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def _wait_until(ready: Callable[[], bool], thread: threading.Thread, message: str) -> None:
    deadline = time.monotonic() + 15
    while not ready():
        assert thread.is_alive(), "uvicorn stopped during start-up"
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
