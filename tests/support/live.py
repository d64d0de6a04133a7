"""The real app served by uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

from app.config import Settings
from app.main import create_app


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
