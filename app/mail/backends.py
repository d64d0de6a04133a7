"""Where email goes: the dev mailbox (files under DATA_DIR/dev-mail) or SMTP."""

from __future__ import annotations

import contextlib
import os
import select
import smtplib
import socket
import ssl
import tempfile
import threading
import time
from datetime import timedelta
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

from app.config import MailBackend, Settings, SmtpSecurity
from app.mail.models import OutboxEmail
from app.redaction import redact


class TransientMailError(Exception):
    """Worth retrying later (4xx reply, connection trouble). Its text is redacted: it is
    stored and logged, and SMTP replies quote the recipient."""


class PermanentMailError(Exception):
    """Retrying will not help (5xx reply, address refused). Its text is redacted too."""


class Backend(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class _HeaderClasses(HeaderRegistry):
    """The standard registry, except that it makes each header's class once: the
    standard one builds a new class with `type()` for every header set or parsed, a
    large part of what building a message costs (D92)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


SEND_POLICY = policy.default.clone(refold_source="none", header_factory=_HeaderClasses())
"""The outbox's own header fields (`List-Unsubscribe`, …) go out exactly as stored: the
default policy RFC 2047-encodes a long field with no space to fold at (a link in angle
brackets), which mail providers would not read as a link. Every other field is built
and folded as usual. (`enqueue` lets only one-line ASCII values in.)"""


def build_message(email: OutboxEmail, *, mail_from: str) -> EmailMessage:
    if email.to_address is None:
        raise PermanentMailError("The address was already deleted.")
    message = EmailMessage(policy=SEND_POLICY)
    message["From"] = mail_from
    message["To"] = email.to_address
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = email.message_id
    message["Auto-Submitted"] = "auto-generated"
    for name, value in email.headers.items():
        if value.isascii() and value.isprintable():  # one line: nothing to inject
            message.set_raw(name, value)
        else:
            message[name] = value  # folded (or refused) by the policy
    message.set_content(email.text_body)
    message.add_alternative(email.html_body, subtype="html")
    return message


class DevMailbox:
    """Delivers into files that `/dev/mail` shows. For a machine with no mail server."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            # The message's own policy (with CRLF), as SMTP sends it: see SEND_POLICY.
            handle.write(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
        name = f"{time_ns_name()}.eml"
        os.replace(tmp, self.directory / name)

    def messages(self, limit: int = 50) -> list[EmailMessage]:
        if not self.directory.is_dir():
            return []
        files = sorted(self.directory.glob("*.eml"), reverse=True)[:limit]
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(path.read_bytes()) for path in files]

    def purge(self, *, older_than: timedelta) -> int:
        """Dev mail holds addresses too: it follows the outbox's retention."""
        if not self.directory.is_dir():
            return 0
        cutoff = time.time() - older_than.total_seconds()
        deleted = 0
        for path in self.directory.glob("*.eml"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                deleted += 1
        return deleted


def time_ns_name() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}"


MESSAGES_PER_CONNECTION = 100
"""An SMTP connection carries at most this many messages, then QUIT and a new one: many
servers cap messages per connection, and a long-lived session is not what they expect."""
IDLE_SECONDS = 5.0
"""A connection unused this long is closed (QUIT) rather than reused: servers drop idle
clients (Postfix after 300 s, 10 s under stress), and a quiet worker holds none open."""


class _Connection(smtplib.SMTP):
    """Remembers whether DATA began. Before it, the server cannot have accepted the
    message, so a connection that failed there can be replaced and the message sent on
    the new one without any chance of it arriving twice. And how much it has carried,
    and when it was last used (for `SmtpBackend`'s limits)."""

    data_started = False
    sent_on_connection = 0
    last_used = 0.0

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


class _TlsConnection(smtplib.SMTP_SSL):
    data_started = False
    sent_on_connection = 0
    last_used = 0.0

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


_GONE = (smtplib.SMTPServerDisconnected, ConnectionError)
"""The connection went away (closed by the server, reset, broken pipe)."""


class SmtpBackend:
    """Sends through SMTP connections kept open across messages (and across batches
    while the worker is busy): a new one after a failure, after `messages_per_connection`
    messages, or after `idle_seconds` unused. `messages_per_connection=1` opens a
    connection per message (the behaviour before D91, kept for the benchmark).

    Thread-safe: each send takes an idle kept connection (or opens one) and gives it
    back afterwards, so a worker's sender threads (`MAIL_SENDERS`, D98) each send on
    their own connection, one message at a time per connection.

    Never twice: a message is retried here, on a new connection, only when the reused
    one turned out to be gone before DATA began (the server had not got it). Any other
    failure raises, classified as before (4xx, connection trouble: transient; 5xx:
    permanent), and the worker's rules retry it; the connection is then dropped unless
    the server replied and smtplib reset the session (RSET), which keeps it usable."""

    def __init__(
        self,
        settings: Settings,
        *,
        messages_per_connection: int = MESSAGES_PER_CONNECTION,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.settings = settings
        self.messages_per_connection = max(1, messages_per_connection)
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: list[_Connection | _TlsConnection] = []
        self.connections_opened = 0

    def send(self, message: EmailMessage) -> None:
        try:
            refused = self._send(message)
        except smtplib.SMTPRecipientsRefused as exc:
            # `from None`: the original exception quotes each refused address.
            raise _classify(exc.recipients) from None
        except smtplib.SMTPResponseException as exc:
            error = redact(f"{exc.smtp_code} {exc.smtp_error!r}")
            if 400 <= exc.smtp_code < 500:
                raise TransientMailError(error) from None
            raise PermanentMailError(error) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientMailError(redact(f"{type(exc).__name__}: {exc}")) from None
        if refused:
            raise _classify(refused)

    def _send(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        smtp, reused = self._connection()
        try:
            refused = self._send_on(smtp, message)
        except Exception as exc:
            if not (reused and not smtp.data_started and _gone(exc)):
                raise
            # The kept connection was gone before the message was handed over (the
            # server closed it while idle, or said 421): once more on a new one.
            smtp, _ = self._connection(reuse=False)
            refused = self._send_on(smtp, message)
        smtp.sent_on_connection += 1
        smtp.last_used = time.monotonic()
        if smtp.sent_on_connection >= self.messages_per_connection:
            _close(smtp, polite=True)
        else:
            with self._lock:
                self._idle.append(smtp)
        return refused

    def _send_on(
        self, smtp: _Connection | _TlsConnection, message: EmailMessage
    ) -> dict[str, tuple[int, bytes]]:
        smtp.data_started = False
        try:
            return smtp.send_message(message)
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
            # A refusal: smtplib has reset the session (RSET), or closed it after a 421.
            if smtp.sock is None:
                _close(smtp, polite=False)
            else:
                smtp.last_used = time.monotonic()
                with self._lock:
                    self._idle.append(smtp)
            raise
        except BaseException:
            _close(smtp, polite=False)  # a timeout or a drop: its state is unknown
            raise

    def _connection(self, *, reuse: bool = True) -> tuple[_Connection | _TlsConnection, bool]:
        """A kept connection if one is idle and still usable (the most recently used
        first), else a new one; and whether it was kept. The connection is this
        caller's until `_send` gives it back."""
        while reuse:
            with self._lock:
                if not self._idle:
                    break
                smtp = self._idle.pop()
            if time.monotonic() - smtp.last_used >= self.idle_seconds:
                _close(smtp, polite=True)
            elif smtp.sock is None or _readable(smtp.sock):
                # Between transactions a server says nothing unless it is leaving (a 421
                # on timeout, or the end of the stream).
                _close(smtp, polite=False)
            else:
                return smtp, True
        smtp = self._open()
        smtp.last_used = time.monotonic()
        return smtp, False

    def _open(self) -> _Connection | _TlsConnection:
        s = self.settings
        smtp: _Connection | _TlsConnection
        if s.smtp_security == SmtpSecurity.TLS:
            smtp = _TlsConnection(
                s.smtp_host,
                s.smtp_port,
                timeout=s.smtp_timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            smtp = _Connection(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            if s.smtp_security == SmtpSecurity.STARTTLS:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username and s.smtp_password:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
        except BaseException:
            smtp.close()
            raise
        with self._lock:
            self.connections_opened += 1
        return smtp

    @property
    def kept_connections(self) -> int:
        """How many connections are open and idle, waiting for the next message."""
        with self._lock:
            return len(self._idle)

    def close_if_idle(self) -> None:
        """Closes the kept connections unused for `idle_seconds` (the worker calls this
        when it finds nothing to send)."""
        now = time.monotonic()
        with self._lock:
            stale = [smtp for smtp in self._idle if now - smtp.last_used >= self.idle_seconds]
            self._idle = [smtp for smtp in self._idle if smtp not in stale]
        for smtp in stale:
            _close(smtp, polite=True)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for smtp in idle:
            _close(smtp, polite=True)


def _close(smtp: _Connection | _TlsConnection, *, polite: bool) -> None:
    if polite and smtp.sock is not None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
    smtp.close()


def _gone(exc: BaseException) -> bool:
    if isinstance(exc, _GONE):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(code == 421 for code, _ in exc.recipients.values())
    return False


def _readable(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _classify(recipients: dict[str, tuple[int, bytes]]) -> Exception:
    codes = [code for code, _ in recipients.values()]
    error = redact("; ".join(f"{code} {reply!r}" for code, reply in recipients.values()))
    if all(400 <= code < 500 for code in codes):
        return TransientMailError(error)
    return PermanentMailError(error)


def make_backend(settings: Settings) -> Backend:
    if settings.mail_backend == MailBackend.SMTP:
        return SmtpBackend(settings)
    return dev_mailbox(settings)


def dev_mailbox(settings: Settings) -> DevMailbox:
    return DevMailbox(settings.data_dir / "dev-mail")
