"""The worker's own message builder (`build_message`, D179): what it writes must read
back, in any mail reader, as exactly what the outbox row says, stay 7-bit and within
line limits, and write each header field the way the standard library would."""

from __future__ import annotations

import re
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from sqlalchemy import delete, text

from app.db import Database, utcnow
from app.mail import worker
from app.mail.backends import Outgoing, _build_with_email_package, build_message
from app.mail.models import OutboxEmail, OutboxStatus
from app.mail.service import FORGOTTEN
from tests.mail.outbox import queue_email, rows

MAIL_FROM = "Undersigned <noreply@letters.example.org>"

BODIES = {
    "ascii": ("Hello,\n\nconfirm: https://x.example/verify/abc\n", "<p>Hello</p>"),
    "accents and quotes": (
        "Hola,\n\nfirme «aquí»: https://x.example/v/é — gracias.\n",
        "<p>Confirme su firma: <strong>«Biblioteca abierta»</strong> — ¡gracias!</p>",
    ),
    "long lines": ("word " * 60 + "\n" + "x" * 300 + "\n", "<p>" + "lorem ipsum " * 80 + "</p>"),
    "qp traps": (
        "a=b =?utf-8?q?x?= trailing spaces   \n.\n..\nFrom me\n\tindented\t\n",
        '<a href="https://x.example/?a=1&b=2">=3D</a>   \n.\n',
    ),
    "line breaks": ("one\r\ntwo\rthree\n\nfour", "<p>\r\n</p>"),
    "empty": ("", ""),
    "other scripts": ("Подтвердите подпись 署名を確認 ✓\n" * 3, "<p>Ελληνικά 🙂</p>"),
}


def email_row(text_body: str, html_body: str, **fields: object) -> OutboxEmail:
    values: dict[str, object] = {
        "kind": "verify",
        "to_address": "signer.one+tag@d1.example",
        "subject": "Confirm your signature: Keep the public library open",
        "text_body": text_body,
        "html_body": html_body,
        "headers": {"List-Unsubscribe": "<https://x.example/unsubscribe/" + "t" * 90 + ">"},
        "message_id": "<123.456@letters.example.org>",
    }
    values.update(fields)
    return OutboxEmail(**values)


def lines_of(text: str) -> list[bytes]:
    """A body's lines as a reader sees them (line ends are the transport's; an empty
    body is one empty line)."""
    return text.encode().splitlines() or [b""]


def parse(data: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize("bodies", BODIES.values(), ids=BODIES.keys())
def test_the_message_reads_back_as_the_row_and_stays_7bit_and_short_lined(
    bodies: tuple[str, str],
) -> None:
    text_body, html_body = bodies
    row = email_row(text_body, html_body)
    message = build_message(row, mail_from=MAIL_FROM)

    assert message.legacy is None  # the fast builder made it
    assert (message.sender, message.recipient) == ("noreply@letters.example.org", row.to_address)
    assert message.data.isascii()
    assert b"\n" not in message.data.replace(b"\r\n", b"")  # CRLF only
    head, _, body = message.data.partition(b"\r\n\r\n")
    for line in body.split(b"\r\n"):
        assert len(line) <= 78, line
    for line in head.split(b"\r\n"):
        if not line.startswith(b"List-Unsubscribe:"):  # written as stored, on one line
            assert len(line) <= 78, line

    parsed = parse(message.data)
    assert parsed["From"] == MAIL_FROM
    assert parsed["To"] == row.to_address
    assert parsed["Subject"] == row.subject
    assert parsed["Message-ID"] == row.message_id
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["List-Unsubscribe"] == row.headers["List-Unsubscribe"]
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Date"].datetime.utcoffset() == timedelta(0)
    assert parsed.get_content_type() == "multipart/alternative"
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_content_charset() == html_part.get_content_charset() == "utf-8"
    assert text_part["Content-Transfer-Encoding"] in ("7bit", "quoted-printable")
    assert lines_of(text_part.get_content()) == lines_of(text_body)
    assert lines_of(html_part.get_content()) == lines_of(html_body)
    # What is read on the page is what the row says, and so is the SMTP envelope.
    assert message["To"] == row.to_address


@pytest.mark.parametrize(
    ("mail_from", "subject"),
    [
        (MAIL_FROM, "Confirm your signature: Keep the public library open"),
        ("noreply@letters.example.org", "Short"),
        ("Undersigned Café <noreply@letters.example.org>", "Confirme su firma: «Biblioteca»"),
        ("Undersigned <noreply@letters.example.org>", "Sign in to Undersigned " * 6),
        ("Undersigned <noreply@letters.example.org>", "An =?utf-8?q?encoded?= look-alike"),
        ("Undersigned <noreply@letters.example.org>", "Подтвердите подпись: " + "слово " * 20),
    ],
)
def test_header_fields_are_written_as_the_standard_library_writes_them(
    mail_from: str, subject: str
) -> None:
    """Date and the MIME structure aside, the header is the standard library's, byte
    for byte: encoded words and folding where needed, plain text where not."""
    row = email_row("Hello.\n", "<p>Hello.</p>", subject=subject)
    fast = build_message(row, mail_from=mail_from)
    standard = _build_with_email_package(row, mail_from=mail_from)
    expected = standard.as_bytes(policy=standard.policy.clone(linesep="\r\n"))

    def fields(data: bytes, names: tuple[str, ...]) -> list[bytes]:
        head = data.partition(b"\r\n\r\n")[0]
        folded = re.split(rb"\r\n(?![ \t])", head)
        return [f for f in folded if f.split(b":", 1)[0].decode() in names]

    names = ("From", "To", "Subject", "Message-ID", "Auto-Submitted", "List-Unsubscribe")
    assert fields(fast.data, names) == fields(expected, names)
    if subject.isascii() and "=?" not in subject:
        # (The standard library's own folding of long non-ASCII text can drop a space
        # between two encoded words, and reads a look-alike as encoded: as before.)
        assert parse(fast.data)["Subject"] == subject


@pytest.mark.parametrize(
    ("fields", "mail_from"),
    [
        ({"to_address": "jöhn@example.org"}, MAIL_FROM),
        ({"to_address": "john@exämple.org"}, MAIL_FROM),
        ({"to_address": '"john smith"@example.org'}, MAIL_FROM),
        ({}, "Undersigned <nöreply@letters.example.org>"),
        ({"headers": {"X-Note": "caf\u00e9"}}, MAIL_FROM),
    ],
    ids=["non-ascii-local-part", "idn-domain", "quoted-local-part", "odd-sender", "odd-header"],
)
def test_what_the_fast_builder_does_not_cover_is_built_as_before(
    fields: dict[str, object], mail_from: str
) -> None:
    message = build_message(email_row("Hello.\n", "<p>Hello.</p>", **fields), mail_from=mail_from)
    assert isinstance(message.legacy, EmailMessage)
    assert message["Message-ID"] == "<123.456@letters.example.org>"


def test_a_forgotten_address_cannot_be_built() -> None:
    from app.mail.backends import PermanentMailError

    with pytest.raises(PermanentMailError):
        build_message(email_row("a", "b", to_address=None), mail_from=MAIL_FROM)


def test_the_dev_mailbox_and_tests_still_take_an_email_message() -> None:
    message = EmailMessage()
    message["To"] = "a@example.org"
    message.set_content("body")
    outgoing = Outgoing(legacy=message)
    assert outgoing["To"] == "a@example.org"
    assert outgoing.as_bytes().endswith(b"body\r\n")


# --- recording on PostgreSQL (one statement per email, D179) ------------------------------


def test_an_outcome_and_the_next_renewal_are_one_statement_that_respects_claims(
    postgres: Database,
) -> None:
    with postgres.write() as session:
        session.execute(delete(OutboxEmail))
    first, second = (queue_email(postgres, to=f"s{n}@example.org") for n in range(2))
    with postgres.write() as session:
        claims = dict(worker.claim_batch(session, now=utcnow(), limit=20))
    sent = {"status": OutboxStatus.SENT, "finished_at": utcnow(), "last_error": None, **FORGOTTEN}
    later = utcnow()

    with worker._Ledger(postgres) as ledger:
        # A stale claim records nothing and renews nothing.
        assert not ledger.settle_and_renew((first, "stale", dict(sent)), second, "stale", later)
        assert [row.status for row in rows(postgres)] == [OutboxStatus.SENDING] * 2
        assert ledger.settle_and_renew(
            (first, claims[first], dict(sent)), second, claims[second], later
        )
        connection = ledger._connection
        assert connection is not None
        # The async commit was for that statement's transaction only: the pooled
        # connection goes back to the app as it came.
        assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"

    one, two = rows(postgres)
    assert (one.status, one.to_address, one.claim_token, one.lease_expires_at) == (
        OutboxStatus.SENT,
        None,
        None,
        None,
    )
    assert two.status == OutboxStatus.SENDING and two.lease_expires_at == later + worker.LEASE
