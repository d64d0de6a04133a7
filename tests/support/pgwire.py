"""A TCP relay in front of PostgreSQL that counts the client's round trips.

A client that waits for an answer ends what it sent with a simple Query message (`Q`,
its own round trip) or with a Sync (`S`, the end of an extended-protocol batch). So the
number of `Q` and `S` messages the client sends is the number of times it waits for
the server (D197 tried to cut a confirmation's from five to three). The relay reads
the client's stream message by message (after the untyped start-up, SSL and GSS
requests) and forwards every byte unchanged.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import make_url

_UNTYPED_REQUESTS = (80877103, 80877104)  # SSLRequest, GSSENCRequest
"""Codes of the untyped requests a client may send before its start-up message."""


class RoundTrips:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1

    def reset(self) -> None:
        with self._lock:
            self.count = 0


def _shut(*ends: socket.socket) -> None:
    for end in ends:
        with suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        _shut(source, target)


def _read(client: socket.socket, buffer: bytearray, size: int) -> bool:
    while len(buffer) < size:
        data = client.recv(65536)
        if not data:
            return False
        buffer += data
    return True


def _counting_pipe(client: socket.socket, server: socket.socket, trips: RoundTrips) -> None:
    """Forwards the client's messages one by one, counting `Q` and `S`."""
    buffer = bytearray()
    started = False
    try:
        while True:
            if not started:
                if not _read(client, buffer, 8):
                    return
                length, code = struct.unpack("!II", buffer[:8])
                started = code not in _UNTYPED_REQUESTS
            else:
                if not _read(client, buffer, 5):
                    return
                length = struct.unpack("!I", buffer[1:5])[0] + 1
                if bytes(buffer[:1]) in (b"Q", b"S"):
                    trips.add()
            if not _read(client, buffer, length):
                return
            server.sendall(bytes(buffer[:length]))
            del buffer[:length]
    except OSError:
        pass
    finally:
        _shut(client, server)


@contextmanager
def counting_relay(url: str) -> Iterator[tuple[str, RoundTrips]]:
    """`url` rewritten to go through the relay, and the relay's count."""
    target = make_url(url)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    trips = RoundTrips()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection((target.host or "127.0.0.1", target.port or 5432))
            for run, ends in ((_counting_pipe, (client, server, trips)), (_pipe, (server, client))):
                threading.Thread(target=run, args=ends, daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        # No TLS: the relay reads the messages.
        relayed = target.set(host="127.0.0.1", port=port).update_query_dict({"sslmode": "disable"})
        yield relayed.render_as_string(hide_password=False), trips
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
