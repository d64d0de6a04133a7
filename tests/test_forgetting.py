"""A signer who did not ask to be contacted leaves no address anywhere in the database.

The whole loop runs on the real parts: the app (TestClient), a real SMTP server on
loopback, the mail worker's pass. Then the whole database is dumped (SQLite: `iterdump`
plus the raw database and WAL files after the worker's checkpoint; PostgreSQL:
`pg_dump`) and searched for every address and every identity field of an anonymous
signer, and for the comment of a submission that could no longer be confirmed. The same
dump taken before the emails went is searched too, so the test shows it can find what it
looks for.
"""

from __future__ import annotations

import html
import re
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import make_url

from app.config import Settings
from app.db import Database
from app.jobs import forget_in_files, work_once
from app.letters.models import FieldRule
from app.mail.backends import SmtpBackend
from app.main import create_app
from tests.support.factories import make_letter
from tests.support.smtp import SmtpServer
from tests.web.conftest import csrf_from
from tests.web.flows import BROWSER_POST

PUBLIC = {
    "name": "Quietly Signing Person",
    "email": "quiet.person.7f3k@example.org",
    "title": "Engineer",
    "organization": "Open Org",
    "city": "Open City",
    "comment": "Public Reason Kept",
    "display": "public",
}
ANONYMOUS = {
    "name": "Hidden Soul Zyxw",
    "email": "Hidden.Soul+9q2w@Example.org",
    "title": "Secret Title Vbn",
    "organization": "Secret Org Qwvk",
    "city": "Nowhere Town Plk",
    "comment": "Anonymous Reason Kept",  # a comment is not an identity field: kept
    "display": "anonymous",
    "contact_ok": "yes",  # ticked, but an anonymous signature keeps no address
}
SECOND_THOUGHTS = "Second Thoughts Jq8w"
"""The comment of a submission sent after confirming: it gets an "already signed" note
and is never confirmed, so its comment goes."""
NEVER_KEPT = [
    "quiet.person.7f3k",
    "hidden.soul",
    "Hidden.Soul",
    "9q2w",
    "Hidden Soul Zyxw",
    "Secret Title Vbn",
    "Secret Org Qwvk",
    "Nowhere Town Plk",
    SECOND_THOUGHTS,
]


def _dump(database: Database) -> bytes:
    """Everything the database holds, as bytes."""
    url = make_url(database.url)
    if database.dialect == "postgresql":
        return subprocess.run(  # noqa: S603
            [
                "pg_dump",
                "--no-owner",
                "-h",
                url.host or "127.0.0.1",
                "-p",
                str(url.port or 5432),
                "-U",
                url.username or "postgres",
                url.database or "",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    path = Path(url.database or "")
    with closing(sqlite3.connect(path)) as connection:
        text = "\n".join(connection.iterdump())
    # The raw files are read by another process: closing any descriptor of a file that
    # SQLite has open releases every POSIX lock this process holds on it, and the
    # pooled connections would then write where other processes no longer look.
    files = [str(f) for f in (path, path.with_name(path.name + "-wal")) if f.exists()]
    raw = subprocess.run(["cat", *files], capture_output=True, check=True, timeout=60).stdout  # noqa: S603
    return text.encode() + b"\n" + raw


def test_no_address_survives_anywhere_after_confirming(
    clean_database: Database, smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    settings = smtp_settings
    with clean_database.write() as session:
        slug = make_letter(session, field_comment=FieldRule.OPTIONAL).slug
    app = create_app(settings)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        for person in (PUBLIC, ANONYMOUS):
            assert client.get(f"/letters/{slug}").status_code == 200
            response = client.post(
                f"/letters/{slug}/sign", data=person, headers=BROWSER_POST, follow_redirects=False
            )
            assert response.status_code == 303

        before = _dump(clean_database)
        assert b"quiet.person.7f3k" in before  # the search can find what it looks for
        assert b"Secret Org Qwvk" in before

        assert work_once(clean_database, SmtpBackend(settings), settings=settings) >= 2
        links = []
        for message in smtp_server.messages():
            text = message.get_body(("plain",))
            assert text is not None
            links += re.findall(r"/verify/[A-Za-z0-9_.\-]+", html.unescape(text.get_content()))
        assert len(links) == 2
        for link in links:
            token = csrf_from(client.get(link).text)
            assert client.post(link, data={"csrf_token": token}).status_code == 200
        assert client.get(f"/api/v1/letters/{slug}").json()["signature_count"] == 2

        data = {**PUBLIC, "comment": SECOND_THOUGHTS}
        response = client.post(
            f"/letters/{slug}/sign", data=data, headers=BROWSER_POST, follow_redirects=False
        )
        assert response.status_code == 303
        assert SECOND_THOUGHTS.encode() in _dump(clean_database)
        assert work_once(clean_database, SmtpBackend(settings), settings=settings) >= 1

    forget_in_files(clean_database)  # what the worker does every minute on SQLite
    after = _dump(clean_database)
    assert b"Quietly Signing Person" in after  # public, as the signer chose
    assert b"Public Reason Kept" in after and b"Anonymous Reason Kept" in after
    for secret in NEVER_KEPT:
        assert secret.encode() not in after, secret
        assert secret.lower().encode() not in after.lower(), secret
