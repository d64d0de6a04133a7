"""A real SMTP server (aiosmtpd) on loopback that records what it accepts and can
refuse on purpose."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal, TypeVar

from aiosmtpd.controller import Controller

from tests.support.ports import free_port

Stage = Literal["rcpt", "data"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpServer:
    """Records what it accepts; can refuse the next deliveries on purpose.

    `refuse("451 ...", times=2)` refuses the next two deliveries, `times=None` all of
    them; `at` says whether the refusal answers RCPT TO or the end of DATA.
    """

    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    _reply: str | None = None
    _times: int | None = 0
    _stage: Stage = "data"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse(self, reply: str, *, times: int | None = 1, at: Stage = "data") -> None:
        with self._lock:
            self._reply, self._times, self._stage = reply, times, at

    def _refusal(self, stage: Stage) -> str | None:
        """Counts one attempt per delivery, at the stage where refusals happen."""
        with self._lock:
            if stage != self._stage:
                return None
            self.attempts += 1
            if self._reply is None or self._times == 0:
                return None
            if self._times is not None:
                self._times -= 1
            return self._reply

    # aiosmtpd handler hooks (run on the controller's event-loop thread)
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        refusal = self._refusal("rcpt")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        refusal = self._refusal("data")
        if refusal:
            return refusal
        with self._lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [item.message for item in self.received]


Server = TypeVar("Server", bound=SmtpServer)


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """Runs `server` (an SmtpServer, or a subclass that replies otherwise) on its port."""
    controller = Controller(server, hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@contextmanager
def running_smtp_server() -> Iterator[SmtpServer]:
    with serving(SmtpServer(host="127.0.0.1", port=free_port())) as server:
        yield server
