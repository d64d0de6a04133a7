"""Sign-in links: asked for (the same work for anyone), sent by the worker (to
organizers only, capped), used once, expiring, purged. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from app import tokens
from app.config import Settings
from app.db import Database, utcnow
from app.errors import InvalidToken
from app.mail.models import OutboxEmail
from app.organizers.logins import (
    ADDRESS_LOCKS,
    EMAIL_WINDOW,
    EMAILS_PER_WINDOW,
    LINK_LIFETIME,
    LINK_MAX_AGE_SECONDS,
    check_login_link,
    purge_login_links,
    request_login_link,
    send_login_links,
    use_login_link,
)
from app.organizers.models import AuditEvent, LoginLink, LoginState, Organizer
from app.organizers.service import find_organizer, signed_in_organizer, start_session
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import tampered
from tests.support.organizers import make_organizer

LINK = re.compile(r"https?://[^/\s]+/login/([A-Za-z0-9_.\-]+)")


def _links(session: Session) -> list[LoginLink]:
    return list(session.scalars(select(LoginLink).order_by(LoginLink.created_at, LoginLink.id)))


def _emails(session: Session, kind: str = "organizer_login") -> list[OutboxEmail]:
    return list(
        session.scalars(
            select(OutboxEmail).where(OutboxEmail.kind == kind).order_by(OutboxEmail.id)
        )
    )


def _token_in(email: OutboxEmail) -> str:
    match = LINK.search(email.text_body)
    assert match, email.text_body
    assert match.group(0) in email.html_body
    return match.group(1)


def _ask_and_send(session: Session, settings: Settings, email: str) -> str:
    """One request, one worker pass; the token of the email it sent."""
    before = len(_emails(session))
    request_login_link(session, email=email)
    send_login_links(session, settings=settings)
    emails = _emails(session)
    assert len(emails) == before + 1
    return _token_in(emails[-1])


def old_token(settings: Settings, link_id: str, *, age: int) -> str:
    """A correctly signed login token issued `age` seconds ago."""

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    serializer = URLSafeTimedSerializer(settings.secret, salt="organizer-login", signer=Past)
    return str(serializer.dumps(link_id))


# --- Asking ----------------------------------------------------------------------------


def test_asking_only_stores_a_waiting_request(session: Session, settings: Settings) -> None:
    make_organizer(session, "known@example.org")
    before = utcnow()
    request_login_link(session, email="  Known@Example.org ")
    [link] = _links(session)
    assert link.state == LoginState.WAITING
    assert link.email == "known@example.org"
    assert link.organizer_id is None and link.used_at is None
    assert len(link.id) == 32
    assert before + LINK_LIFETIME <= link.expires_at <= utcnow() + LINK_LIFETIME
    assert _emails(session) == []  # the worker decides, later


@contextmanager
def _statements(session: Session) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = session.get_bind()

    def record(*args: Any) -> None:
        seen.append(args[2])  # the statement, without its parameters

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_asking_runs_the_same_statements_for_an_organizer_and_a_stranger(
    session: Session, settings: Settings
) -> None:
    make_organizer(session, "known@example.org")
    make_organizer(session, "admin@example.org", is_admin=True)
    runs = {}
    for address in ("known@example.org", "admin@example.org", "stranger@example.org"):
        with _statements(session) as seen:
            request_login_link(session, email=address)
        runs[address] = seen
    assert runs["known@example.org"], "nothing was recorded"
    assert runs["admin@example.org"] == runs["known@example.org"]
    assert runs["stranger@example.org"] == runs["known@example.org"]
    assert all(
        statement.lstrip().upper().startswith("INSERT") for statement in runs["known@example.org"]
    )


# --- Sending ---------------------------------------------------------------------------


def test_an_organizer_gets_a_link_and_the_request_forgets_the_address(
    session: Session, settings: Settings
) -> None:
    organizer = make_organizer(session, "known@example.org")
    request_login_link(session, email="known@example.org")

    assert send_login_links(session, settings=settings) == 1

    [link] = _links(session)
    assert link.state == LoginState.SENT
    assert link.email is None
    assert link.organizer_id == organizer.id
    [email] = _emails(session)
    assert email.to_address == "known@example.org"
    assert "http://testserver/login/" in email.text_body
    token = _token_in(email)
    assert tokens.read(settings.secret, tokens.Purpose.ORGANIZER_LOGIN, token) == link.id
    assert "15 minutes" in email.text_body
    assert send_login_links(session, settings=settings) == 0  # nothing waits any more


def test_a_stranger_gets_nothing_and_no_account(session: Session, settings: Settings) -> None:
    request_login_link(session, email="stranger@example.org")

    assert send_login_links(session, settings=settings) == 1

    assert _links(session) == []
    assert _emails(session) == []
    assert find_organizer(session, email="stranger@example.org") is None


def test_open_registration_makes_an_account(
    session: Session, database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database.url, open_registration=True)
    request_login_link(session, email="New@Example.org")

    assert send_login_links(session, settings=settings) == 1

    organizer = find_organizer(session, email="new@example.org")
    assert organizer is not None and not organizer.is_admin
    [link] = _links(session)
    assert link.organizer_id == organizer.id and link.email is None
    [email] = _emails(session)
    assert email.to_address == "new@example.org"
    assert "organizer account has been made" in email.text_body
    events = session.scalars(select(AuditEvent).where(AuditEvent.organizer_id == organizer.id))
    assert [(e.action, e.letter_id) for e in events] == [("organizer.register", None)]


def test_registration_is_closed_by_default(session: Session, settings: Settings) -> None:
    assert settings.open_registration is False
    request_login_link(session, email="new@example.org")
    send_login_links(session, settings=settings)
    assert session.scalar(select(func.count()).select_from(Organizer)) == 0


def test_an_organizer_gets_at_most_five_sign_in_emails_an_hour(
    session: Session, settings: Settings
) -> None:
    make_organizer(session, "known@example.org")
    make_organizer(session, "other@example.org")
    start = utcnow()
    for _ in range(EMAILS_PER_WINDOW + 2):
        request_login_link(session, email="known@example.org")
    request_login_link(session, email="other@example.org")

    assert send_login_links(session, settings=settings, now=start) == EMAILS_PER_WINDOW + 3

    to = [email.to_address for email in _emails(session)]
    assert to.count("known@example.org") == EMAILS_PER_WINDOW  # the rest were dropped
    assert to.count("other@example.org") == 1  # a cap per organizer, not for everyone
    assert all(link.state == LoginState.SENT for link in _links(session))
    assert len(_links(session)) == EMAILS_PER_WINDOW + 1

    # Later requests in the hour are dropped too, across worker passes...
    request_login_link(session, email="known@example.org")
    send_login_links(session, settings=settings, now=start + timedelta(minutes=50))
    assert len(_emails(session)) == EMAILS_PER_WINDOW + 1
    # ...and once the hour has passed (and the purge ran) a link goes again.
    purge_login_links(session, now=start + EMAIL_WINDOW + timedelta(seconds=1))
    request_login_link(session, email="known@example.org")
    send_login_links(session, settings=settings, now=start + EMAIL_WINDOW + timedelta(seconds=1))
    assert len(_emails(session)) == EMAILS_PER_WINDOW + 2


# --- Using -----------------------------------------------------------------------------


def test_a_link_signs_in_once(session: Session, settings: Settings) -> None:
    organizer = make_organizer(session, "known@example.org")
    token = _ask_and_send(session, settings, "known@example.org")

    assert check_login_link(session, token=token, settings=settings).organizer.id == organizer.id
    assert use_login_link(session, token=token, settings=settings).id == organizer.id
    [link] = _links(session)
    session.refresh(link)
    assert link.used_at is not None

    with pytest.raises(InvalidToken) as used:
        use_login_link(session, token=token, settings=settings)
    assert used.value.reason == "used"
    with pytest.raises(InvalidToken) as shown:
        check_login_link(session, token=token, settings=settings)
    assert shown.value.reason == "used"


def test_looking_at_a_link_changes_nothing(session: Session, settings: Settings) -> None:
    make_organizer(session, "known@example.org")
    token = _ask_and_send(session, settings, "known@example.org")
    for _ in range(3):  # a mail scanner, a preview, the person
        check_login_link(session, token=token, settings=settings)
    [link] = _links(session)
    session.refresh(link)
    assert link.used_at is None
    use_login_link(session, token=token, settings=settings)  # still good


def test_the_session_it_starts_signs_the_organizer_in(session: Session, settings: Settings) -> None:
    organizer = make_organizer(session, "known@example.org")
    token = _ask_and_send(session, settings, "known@example.org")
    cookie = start_session(
        session,
        organizer=use_login_link(session, token=token, settings=settings),
        settings=settings,
    )
    assert signed_in_organizer(session, cookie=cookie, settings=settings).id == organizer.id
    assert organizer.last_login_at is not None


def test_a_link_expires_after_fifteen_minutes(session: Session, settings: Settings) -> None:
    make_organizer(session, "known@example.org")
    _ask_and_send(session, settings, "known@example.org")
    [link] = _links(session)

    stale = old_token(settings, link.id, age=LINK_MAX_AGE_SECONDS + 5)
    for check in (check_login_link, use_login_link):
        with pytest.raises(InvalidToken) as expired:
            check(session, token=stale, settings=settings)
        assert expired.value.reason == "expired"

    fresh = old_token(settings, link.id, age=LINK_MAX_AGE_SECONDS - 60)
    assert check_login_link(session, token=fresh, settings=settings)


def test_the_row_expiring_is_enough_to_refuse_a_link(session: Session, settings: Settings) -> None:
    make_organizer(session, "known@example.org")
    token = _ask_and_send(session, settings, "known@example.org")
    [link] = _links(session)
    link.expires_at = utcnow() - timedelta(seconds=1)
    session.flush()
    for check in (check_login_link, use_login_link):
        with pytest.raises(InvalidToken) as expired:
            check(session, token=token, settings=settings)
        assert expired.value.reason == "expired"
    session.refresh(link)
    assert link.used_at is None


def test_a_link_used_after_the_moved_clock_is_refused(session: Session, settings: Settings) -> None:
    make_organizer(session, "known@example.org")
    token = _ask_and_send(session, settings, "known@example.org")
    later = utcnow() + LINK_LIFETIME + timedelta(seconds=1)
    with pytest.raises(InvalidToken) as expired:
        use_login_link(session, token=token, settings=settings, now=later)
    assert expired.value.reason == "expired"


@pytest.mark.parametrize(
    "mangle",
    [
        tampered,
        lambda token: token[:-3],
        lambda token: "not-a-token",
        lambda token: "",
        lambda token: token + "x" * 400,
    ],
)
def test_a_tampered_link_is_refused(session: Session, settings: Settings, mangle: Any) -> None:
    make_organizer(session, "known@example.org")
    token = _ask_and_send(session, settings, "known@example.org")
    for check in (check_login_link, use_login_link):
        with pytest.raises(InvalidToken) as bad:
            check(session, token=mangle(token), settings=settings)
        assert bad.value.reason == "invalid"
    [link] = _links(session)
    session.refresh(link)
    assert link.used_at is None


def test_tokens_of_other_purposes_or_rows_do_not_sign_in(
    session: Session, settings: Settings
) -> None:
    make_organizer(session, "known@example.org")
    _ask_and_send(session, settings, "known@example.org")
    [link] = _links(session)
    for token in (
        tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, link.id),
        tokens.issue(settings.secret, tokens.Purpose.ORGANIZER_LOGIN, "no-such-link"),
        tokens.issue(settings.secret, tokens.Purpose.ORGANIZER_LOGIN, {"id": link.id}),
    ):
        with pytest.raises(InvalidToken) as bad:
            use_login_link(session, token=token, settings=settings)
        assert bad.value.reason == "invalid"


def test_a_waiting_request_has_no_usable_link(session: Session, settings: Settings) -> None:
    make_organizer(session, "known@example.org")
    request_login_link(session, email="known@example.org")
    [link] = _links(session)
    token = tokens.issue(settings.secret, tokens.Purpose.ORGANIZER_LOGIN, link.id)
    with pytest.raises(InvalidToken):
        use_login_link(session, token=token, settings=settings)


# --- Retention -------------------------------------------------------------------------


def test_purge_deletes_expired_requests_and_keeps_what_the_cap_counts(
    session: Session, settings: Settings
) -> None:
    make_organizer(session, "known@example.org")
    now = utcnow()
    for _ in range(4):
        request_login_link(session, email="known@example.org", now=now)
    send_login_links(session, settings=settings, now=now)
    sent = _links(session)
    assert [link.state for link in sent] == [LoginState.SENT] * 4
    # Requests the worker has not reached yet keep an address: they go once expired.
    request_login_link(session, email="fresh@example.org", now=now)
    request_login_link(session, email="slow@example.org", now=now - timedelta(minutes=20))
    # Sent ones hold no address and stay as long as the hourly cap counts them.
    sent[0].expires_at = now + timedelta(minutes=5)  # still works
    sent[1].expires_at = now - timedelta(minutes=5)  # expired; sent 20 minutes ago
    sent[2].expires_at = now - (EMAIL_WINDOW - LINK_LIFETIME) - timedelta(seconds=1)  # sent > 1 h
    sent[3].expires_at = now - timedelta(days=2)
    session.flush()

    assert purge_login_links(session, now=now) == 3

    left = _links(session)
    assert {link.id for link in left if link.state == LoginState.SENT} == {sent[0].id, sent[1].id}
    assert [link.email for link in left if link.state == LoginState.WAITING] == [
        "fresh@example.org"
    ]
    assert purge_login_links(session, now=now) == 0


# --- Several workers and requests at once (PostgreSQL) ---------------------------------


@pytest.fixture
def pg(postgres: Database) -> Iterator[Database]:
    truncate(postgres)
    yield postgres
    truncate(postgres)


def test_racing_requests_with_one_link_sign_in_once(pg: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pg.url)
    with pg.write() as session:
        make_organizer(session, "known@example.org")
        token = _ask_and_send(session, settings, "known@example.org")
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def use() -> None:
        barrier.wait()
        try:
            with pg.write() as session:
                use_login_link(session, token=token, settings=settings)
            outcomes.append("in")
        except InvalidToken as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["in"] + ["used"] * 5


def test_a_worker_leaves_an_address_another_worker_is_deciding_for(
    pg: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, pg.url, open_registration=True)
    with pg.write() as session:
        request_login_link(session, email="busy@example.org")
        request_login_link(session, email="free@example.org")
    with pg.write() as other:
        # Another worker holds "busy@example.org" (as _claim_addresses would).
        key = int(hashlib.sha256(b"busy@example.org").hexdigest()[:8], 16) - 2**31
        assert other.scalar(
            text("SELECT pg_try_advisory_xact_lock(:space, :key)"),
            {"space": ADDRESS_LOCKS, "key": key},
        )
        with pg.write() as session:
            assert send_login_links(session, settings=settings) == 1
        other.rollback()
    with pg.read() as session:
        links = {link.email: link.state for link in _links(session)}
        assert links == {"busy@example.org": LoginState.WAITING, None: LoginState.SENT}
        assert [e.to_address for e in _emails(session)] == ["free@example.org"]
    with pg.write() as session:
        assert send_login_links(session, settings=settings) == 1  # its turn now
