"""An update's List-Unsubscribe and List-Unsubscribe-Post headers (RFC 8058) reach a real
SMTP server (aiosmtpd on loopback) as written: one line each, never RFC 2047-encoded
(a long link has nowhere to fold), with text and HTML parts; then the outbox forgets
them with the address."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.mail.backends import DevMailbox, SmtpBackend, build_message
from app.mail.models import OutboxEmail, OutboxStatus
from app.mail.service import enqueue
from app.mail.worker import deliver_due
from app.organizers.service import Actor
from app.updates.schemas import UpdateIn
from app.updates.service import fan_out_updates, queue_update
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.smtp import SmtpServer

HEADER_LINE = re.compile(rb"^List-Unsubscribe: <(http://testserver/unsubscribe/[^>\s]+)>\r$", re.M)


def queue_one_update(db: Database, settings: Settings, email: str) -> None:
    """A letter with one signer who asked for updates, and an update fanned out (its
    email waits in the outbox), committed."""
    with db.write() as session:
        letter = make_letter(session, title="Clean air now")
        sign_and_confirm(session, letter, settings, email=email, contact_ok=True)
        session.execute(delete(OutboxEmail))  # the confirmation email: not under test
        data = UpdateIn(subject="The council answered", body="They said **yes**.")
        queue_update(session, letter=letter, actor=Actor(None), data=data)
    with db.write() as session:
        assert fan_out_updates(session, settings=settings) == 1


def parts(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): str(part.get_content())
        for part in message.walk()
        if not part.is_multipart()
    }


def test_the_unsubscribe_headers_arrive_over_smtp_as_written(
    db: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    queue_one_update(db, smtp_settings, "reader@example.org")

    assert deliver_due(db, SmtpBackend(smtp_settings), settings=smtp_settings) == 1

    [received] = smtp_server.received
    assert received.rcpt_tos == ["reader@example.org"]
    raw = received.content
    match = HEADER_LINE.search(raw)
    assert match, raw[:1500]
    link = match.group(1).decode()
    assert len(match.group(0)) > 78  # longer than a folded line: not encoded for it
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0].lower()
    assert re.search(rb"^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$", raw, re.M)

    message = received.message
    assert message["List-Unsubscribe"] == f"<{link}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Subject"] == "The council answered"
    bodies = parts(message)
    assert set(bodies) == {"text/plain", "text/html"}
    assert link in bodies["text/plain"] and f'href="{link}"' in bodies["text/html"]
    assert "Clean air now" in bodies["text/plain"] and "<strong>yes</strong>" in bodies["text/html"]

    with db.read() as session:
        row = session.scalars(select(OutboxEmail)).one()
    assert row.status == OutboxStatus.SENT
    assert (row.to_address, row.headers, row.text_body) == (None, {}, "")


def test_the_dev_mailbox_keeps_the_headers_as_written(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db.url)
    queue_one_update(db, settings, "reader@example.org")
    mailbox = DevMailbox(tmp_path / "dev-mail")

    assert deliver_due(db, mailbox, settings=settings) == 1

    [path] = (tmp_path / "dev-mail").glob("*.eml")
    assert HEADER_LINE.search(path.read_bytes())
    [message] = mailbox.messages()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    "headers",
    [
        {"List-Unsubscribe": "<http://x/u>\r\nBcc: victim@example.org"},
        {"List-Unsubscribe": "<http://x/u>\nX: y"},
        {"List-Unsubscribe": "<http://x/ü>"},
        {"Bad:Name": "x"},
        {"List-Unsubscribe": "<http://x/" + "u" * 1000 + ">"},
    ],
    ids=["crlf", "lf", "not-ascii", "colon-in-name", "too-long"],
)
def test_enqueue_refuses_a_header_it_could_not_send_as_written(
    session: Session, settings: Settings, headers: dict[str, str]
) -> None:
    letter = make_letter(session)
    context = {"letter": letter, "verify_url": "http://x/v", "letter_url": "http://x/l"}
    with pytest.raises(ValueError, match="header"):
        enqueue(
            session,
            settings=settings,
            kind="verify",
            to="a@example.org",
            context={**context, "max_age_days": 7},
            headers=headers,
        )


def test_a_stored_header_with_a_line_break_cannot_inject_another(
    session: Session, settings: Settings
) -> None:
    """Rows only `enqueue` writes cannot hold one; a row written otherwise still cannot
    smuggle a header: the policy refuses to build the message."""
    email = OutboxEmail(
        kind="update",
        to_address="a@example.org",
        subject="s",
        text_body="t",
        html_body="<p>t</p>",
        headers={"List-Unsubscribe": "<http://x/u>\r\nBcc: victim@example.org"},
        message_id="<1@testserver>",
    )
    with pytest.raises(ValueError):
        build_message(email, mail_from=settings.mail_from)
