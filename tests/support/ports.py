"""Free loopback ports, for test servers and bench servers alike."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port that nothing listens on (at the moment of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_socket() -> tuple[socket.socket, str]:
    """A bound loopback socket (no race: it stays bound) and the base URL it will serve."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"
