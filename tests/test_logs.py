"""No personal data in logs (D50): a failing statement does not print its bound values
(name, address, token), nor does PostgreSQL's error text; a 500 on `/verify/{token}`
logs the route's template, and the traceback (ours and uvicorn's) is redacted.

Each failure is triggered for real, on SQLite and PostgreSQL, and the captured log is
searched for the address, the name and the token."""

from __future__ import annotations

import http.client
import logging
import secrets
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Integer, String, bindparam, cast, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from app import tokens
from app.config import Settings
from app.db import Database, OnDriver, utcnow
from app.mail.models import OutboxEmail, OutboxStatus
from app.main import create_app
from tests.support.config import TEST_SECRET, make_settings
from tests.support.live import serve
from tests.support.ports import free_socket

ADDRESS = "victim@example.org"
NAME = "Ada Lovelace"
ORGANIZATION = "Bureau of Retaliation"
PUBLIC_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TOKEN = tokens.issue(TEST_SECRET, tokens.Purpose.SIGNATURE_VERIFY, PUBLIC_ID)
SECRETS = (ADDRESS, NAME, ORGANIZATION, TOKEN, TOKEN.split(".")[0], PUBLIC_ID)


def app_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (not the test's HTTP client, which logs the URLs it asks
    for, tokens included)."""
    return "\n".join(
        caplog.handler.format(record)
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore"))
    )


def assert_nothing_leaked(logged: str) -> None:
    for secret in SECRETS:
        assert secret not in logged, (secret, logged)


FAILING_INSERT = insert(OutboxEmail).values(
    kind=None,
    to_address=bindparam("to"),
    subject=f"{NAME}, {ORGANIZATION}",
    text_body=f"http://testserver/verify/{TOKEN}",
    html_body="",
    headers={},
    message_id="<log-test@testserver>",
    status=OutboxStatus.PENDING,
    attempts=0,
    next_attempt_at=bindparam("due"),
    created_at=bindparam("due"),
)
"""A statement that fails (NOT NULL) with personal data in its parameters; on
PostgreSQL the error's DETAIL would list the whole row."""


def failing_insert(session: Session) -> None:
    session.execute(FAILING_INSERT, {"to": ADDRESS, "due": utcnow()})


def formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# 1. The database layer -----------------------------------------------------------------


def test_a_failing_statement_shows_no_bound_values(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(IntegrityError) as caught, database.write() as session:
        failing_insert(session)
    logging.getLogger("tests.logs").error("the insert failed", exc_info=caught.value)

    for logged in (caplog.text, formatted(caught.value), str(caught.value.orig)):
        assert_nothing_leaked(logged)
    # Still says what went wrong, and where.
    assert "kind" in str(caught.value) and "outbox_emails" in str(caught.value)
    assert "[SQL: INSERT INTO outbox_emails" in str(caught.value)


@pytest.mark.postgres
def test_a_value_postgresql_cannot_read_is_not_quoted(postgres: Database) -> None:
    """SQLSTATE class 22 (data exception) quotes the value in its first line."""
    with pytest.raises(DBAPIError) as caught, postgres.write() as session:
        session.execute(text("SELECT CAST(:value AS INTEGER)"), {"value": ADDRESS})
    assert "invalid input syntax for type integer" in str(caught.value)
    assert getattr(caught.value.orig, "sqlstate", None) == "22P02"  # diagnostics kept
    assert_nothing_leaked(formatted(caught.value))


@pytest.mark.postgres
def test_a_statement_run_on_the_driver_is_scrubbed_as_any_other(
    postgres: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """D199: the confirmation's statements skip SQLAlchemy's execution, not its error
    handling. The NOT NULL violation's DETAIL (the whole row) and a class 22 error's
    quoted value stay out, as on `session.execute`."""
    for statement, values in (
        (FAILING_INSERT.returning(OutboxEmail.id), {"to": ADDRESS, "due": utcnow()}),
        (select(cast(bindparam("value", type_=String), Integer)), {"value": ADDRESS}),
    ):
        with pytest.raises(DBAPIError) as caught, postgres.write() as session:
            OnDriver(statement).rows(session, values)
        logging.getLogger("tests.logs").error("the statement failed", exc_info=caught.value)
        for logged in (caplog.text, formatted(caught.value), str(caught.value.orig)):
            assert_nothing_leaked(logged)
        assert not caught.value.connection_invalidated
    assert "outbox_emails" in caplog.text  # still says where
    assert "invalid input syntax for type integer" in caplog.text


# 2. A 500 on /verify/{token} ----------------------------------------------------------

CSRF = secrets.token_urlsafe(32)  # 43 characters, the cookie's shape


def break_verification(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The confirmation fails inside the request: a statement with personal data in its
    parameters, or an exception whose message quotes the token and the address."""

    def verify_signature(session: Session, *, token: str, settings: Settings) -> Any:
        if how == "statement":
            failing_insert(session)
        raise RuntimeError(f"lost track of {token} for {ADDRESS}")

    monkeypatch.setattr("app.signatures.service.verify_signature", verify_signature)


@pytest.fixture
def log_settings(tmp_path: Path, database: Database) -> Settings:
    return make_settings(tmp_path, database.url)


@pytest.mark.parametrize("how", ["statement", "message"])
def test_a_500_on_verify_logs_the_route_not_the_token(
    log_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    break_verification(monkeypatch, how)
    client = TestClient(create_app(log_settings), raise_server_exceptions=False)
    client.cookies.set("csrf", CSRF)

    with caplog.at_level(logging.INFO):
        response = client.post(f"/verify/{TOKEN}?t={TOKEN}", data={"csrf_token": CSRF})

    assert response.status_code == 500
    logged = app_log(caplog)
    assert "unhandled error on POST /verify/{token}" in logged
    assert "Traceback" in logged  # the traceback is there, redacted
    assert_nothing_leaked(logged)


@pytest.mark.parametrize("how", ["statement", "message"])
def test_a_500_on_verify_in_a_real_server_logs_no_token(
    log_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    break_verification(monkeypatch, how)
    sock, base_url = free_socket()
    # uvicorn's own error log does not reach the root logger that caplog listens on.
    uvicorn_error = logging.getLogger("uvicorn.error")
    try:
        with serve(sock, log_settings), caplog.at_level(logging.INFO):
            uvicorn_error.addHandler(caplog.handler)  # after uvicorn configured logging
            status = _post_form(base_url, f"/verify/{TOKEN}", {"csrf_token": CSRF})
    finally:  # the server has stopped: everything it had to log is logged
        uvicorn_error.removeHandler(caplog.handler)

    assert status == 500
    logged = app_log(caplog)
    assert "Exception in ASGI application" in logged  # uvicorn's record was seen
    assert "unhandled error on POST /verify/{token}" in logged
    assert_nothing_leaked(logged)


def _post_form(base_url: str, path: str, form: dict[str, str]) -> int:
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        connection.request(
            "POST",
            path,
            body=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrf={CSRF}",
            },
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
