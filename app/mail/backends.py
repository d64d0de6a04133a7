"""Where email goes: the dev mailbox (files under DATA_DIR/dev-mail) or SMTP."""

from __future__ import annotations

import binascii
import contextlib
import functools
import os
import re
import secrets
import select
import smtplib
import socket
import ssl
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formatdate
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


class Outgoing:
    """A message ready for the wire: its envelope and its bytes (CRLF line ends), built
    once (`build_message`). `message["To"]` reads a header of it (parsed on first use,
    for tests and logs). A message the fast builder does not handle (an address that is
    not plain ASCII, say) carries the standard library's `EmailMessage` instead, sent by
    `smtplib.send_message` as before (`legacy`)."""

    __slots__ = ("_parsed", "data", "legacy", "recipient", "sender")

    def __init__(
        self,
        *,
        sender: str = "",
        recipient: str = "",
        data: bytes = b"",
        legacy: EmailMessage | None = None,
    ) -> None:
        self.sender, self.recipient, self.data, self.legacy = sender, recipient, data, legacy
        self._parsed: EmailMessage | None = legacy

    def as_bytes(self) -> bytes:
        """The whole message with CRLF line ends, as SMTP carries it."""
        if self.legacy is not None:
            return self.legacy.as_bytes(policy=self.legacy.policy.clone(linesep="\r\n"))
        return self.data

    @property
    def message(self) -> EmailMessage:
        if self._parsed is None:
            parsed = BytesParser(policy=policy.default).parsebytes(self.data)
            assert isinstance(parsed, EmailMessage)
            self._parsed = parsed
        return self._parsed

    def __getitem__(self, name: str) -> Any:
        return self.message[name]


class Backend(Protocol):
    def send(self, message: Outgoing) -> None: ...


def _outgoing(message: Outgoing | EmailMessage) -> Outgoing:
    """The backends also take an `EmailMessage` made elsewhere (sent as before)."""
    return message if isinstance(message, Outgoing) else Outgoing(legacy=message)


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


_WIRE_POLICY = SEND_POLICY.clone(linesep="\r\n")
_SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
"""An address the fast builder writes as it is (what the standard library writes too)."""
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_LINE = 78
"""The length a header line or a 7bit body line keeps to (RFC 5322's "SHOULD")."""


def build_message(email: OutboxEmail, *, mail_from: str) -> Outgoing:
    """The message for `email`, ready for the wire: multipart/alternative (text, HTML),
    UTF-8, each part 7bit when it is short-lined ASCII, else quoted-printable; From,
    To, Subject, Date, Message-ID, Auto-Submitted, the email's own header fields as
    written (`enqueue` lets only one-line ASCII values in), MIME-Version.

    Built here, not with `email.message.EmailMessage` (about 1.5 ms of CPU a message,
    most of a worker's share, D179): header fields that need encoding or folding (a
    non-ASCII or long subject, a From with a name) still go through the standard
    library's own folding (`SEND_POLICY`), the rest is written as it would write it. An
    email this does not cover (an address that is not plain ASCII, a stored header
    value that is not one line of ASCII) is built as before (`Outgoing.legacy`)."""
    if email.to_address is None:
        raise PermanentMailError("The address was already deleted.")
    sender = _envelope_sender(mail_from)
    to = email.to_address
    headers = email.headers or {}
    if (
        sender is None
        or not _SIMPLE_ADDRESS.fullmatch(to)
        or len(to) + 4 > _LINE
        or not _one_ascii_line(email.message_id)
        or not all(
            _HEADER_NAME.fullmatch(name) and _one_ascii_line(value)
            for name, value in headers.items()
        )
    ):
        return Outgoing(legacy=_build_with_email_package(email, mail_from=mail_from))
    boundary = f"==_{secrets.token_hex(16)}"
    text = _text_part("plain", email.text_body)
    html = _text_part("html", email.html_body)
    while f"--{boundary}".encode() in text + html:  # (never, but cheap to be sure)
        boundary = f"==_{secrets.token_hex(16)}"
    head = [
        _from_line(mail_from),
        f"To: {to}\r\n".encode(),
        _subject_line(email.subject),
        f"Date: {format_datetime(datetime.now(UTC))}\r\n".encode(),  # +0000: UTC
        f"Message-ID: {email.message_id}\r\n".encode(),
        b"Auto-Submitted: auto-generated\r\n",
        *(f"{name}: {value}\r\n".encode() for name, value in headers.items()),
        b"MIME-Version: 1.0\r\n",
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode(),
    ]
    mark = f"--{boundary}".encode()
    data = b"".join(
        [*head, mark, b"\r\n", text, b"\r\n", mark, b"\r\n", html, b"\r\n", mark, b"--\r\n"]
    )
    return Outgoing(sender=sender, recipient=to, data=data)


def _one_ascii_line(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _text_part(subtype: str, text: str) -> bytes:
    """One text part: its lines as the standard library splits them (a lone CR or LF,
    or CRLF), 7bit when they are ASCII and at most 78 long, else quoted-printable
    (binascii's encoder: lines of at most 76, `=` and trailing spaces escaped)."""
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    if body.isascii() and max(map(len, lines), default=0) <= _LINE:
        encoding = b"7bit"
    else:
        encoding, body = b"quoted-printable", binascii.b2a_qp(body, istext=True)
    return (
        b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body.replace(b"\n", b"\r\n")
    )


def _folded(name: str, value: str) -> bytes:
    """A header field as the standard library writes it (encoded, folded, CRLF)."""
    return _WIRE_POLICY.fold_binary(*SEND_POLICY.header_store_parse(name, value))


def _subject_line(subject: str) -> bytes:
    if (
        _one_ascii_line(subject)
        and len(subject) + 9 <= _LINE
        and " ".join(subject.split()) == subject
        and "=?" not in subject
    ):
        return f"Subject: {subject}\r\n".encode()
    return _folded("Subject", subject)


@functools.lru_cache(maxsize=8)
def _from_line(mail_from: str) -> bytes:
    return _folded("From", mail_from)


@functools.lru_cache(maxsize=8)
def _envelope_sender(mail_from: str) -> str | None:
    """MAIL FROM for `mail_from` (`Name <address>`), as smtplib would take it from the
    From field; None when it is not one plain ASCII address (then the message is built
    and sent as before)."""
    try:
        field = SEND_POLICY.header_store_parse("From", mail_from)[1]
        addresses: tuple[Any, ...] = tuple(getattr(field, "addresses", ()))
    except Exception:
        return None
    if len(addresses) != 1 or not _SIMPLE_ADDRESS.fullmatch(addresses[0].addr_spec):
        return None
    return str(addresses[0].addr_spec)


def _build_with_email_package(email: OutboxEmail, *, mail_from: str) -> EmailMessage:
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

    def send(self, message: Outgoing | EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(_outgoing(message).as_bytes())  # as SMTP sends it
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

    def send(self, message: Outgoing | EmailMessage) -> None:
        try:
            refused = self._send(_outgoing(message))
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

    def _send(self, message: Outgoing) -> dict[str, tuple[int, bytes]]:
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
        self, smtp: _Connection | _TlsConnection, message: Outgoing
    ) -> dict[str, tuple[int, bytes]]:
        smtp.data_started = False
        try:
            if message.legacy is not None:
                return smtp.send_message(message.legacy)
            return smtp.sendmail(message.sender, [message.recipient], message.data)
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
