"""Where email goes: the dev mailbox (files under DATA_DIR/dev-mail) or SMTP."""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
import time
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

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


SEND_POLICY = policy.default.clone(refold_source="none")
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


class SmtpBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            smtp: smtplib.SMTP
            if s.smtp_security == SmtpSecurity.TLS:
                smtp = smtplib.SMTP_SSL(
                    s.smtp_host,
                    s.smtp_port,
                    timeout=s.smtp_timeout_seconds,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
            with smtp:
                if s.smtp_security == SmtpSecurity.STARTTLS:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_username and s.smtp_password:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                refused = smtp.send_message(message)
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
