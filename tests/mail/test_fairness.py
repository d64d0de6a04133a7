"""Honest signers first: the outbox is claimed by priority (links and sign-in links
before updates), then in turn across fairness keys (a recipient domain, or the network
a submission came from), so that a flood of emails for one key never holds up anyone
else's; the ranking reads a bounded part of the queue through the index (status,
priority, next_attempt_at), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.mail import service as mail_service
from app.mail.backends import dev_mailbox
from app.mail.models import OutboxEmail, OutboxStatus
from app.mail.service import Priority, enqueue, recipient_domain
from app.mail.worker import LEASE, claim_batch, deliver_due
from app.organizers.logins import request_login_link, send_login_links
from app.organizers.models import Role
from app.organizers.service import Actor
from app.updates.schemas import UpdateIn
from app.updates.service import fan_out_updates, queue_update
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import make_letter, sign_and_confirm
from tests.support.organizers import make_organizer

CONTEXT: dict[str, Any] = {"letter": {"title": "A letter"}, "letter_url": "http://testserver/"}


def _queue(
    session: Session,
    *,
    to: str,
    key: str | None = None,
    priority: int = 0,
    due: datetime | None = None,
    kind: str = "verify",
) -> int:
    email = OutboxEmail(
        kind=kind,
        to_address=to,
        subject="s",
        text_body="t",
        html_body="h",
        headers={},
        message_id=make_msgid(domain="test"),
        status=OutboxStatus.PENDING,
        next_attempt_at=due or utcnow(),
        priority=priority,
        fairness_key=recipient_domain(to) if key is None else key,
    )
    session.add(email)
    session.flush()
    return email.id


def _claimed(db: Database, *, limit: int, now: datetime | None = None) -> list[int]:
    with db.write() as session:
        return [email_id for email_id, _ in claim_batch(session, now=now or utcnow(), limit=limit)]


# --- What enqueue writes --------------------------------------------------------------


def test_enqueue_keys_an_email_by_its_recipients_domain(session: Session, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://")
    plain = enqueue(session, settings=settings, kind="already_signed", to="Ann@Mail.Example.ORG",
                    context=CONTEXT)  # fmt: skip
    keyed = enqueue(session, settings=settings, kind="already_signed", to="bo@example.org",
                    context=CONTEXT, priority=Priority.BULK, fairness_key="k" * 80)  # fmt: skip
    session.flush()
    assert (plain.priority, plain.fairness_key) == (0, "mail.example.org")
    assert (keyed.priority, keyed.fairness_key) == (1, "k" * 64)


def test_updates_are_bulk_and_sign_in_links_are_urgent(
    session: Session, tmp_path: Path, database: Database
) -> None:
    settings = make_settings(tmp_path, database.url)
    letter = make_letter(session)
    sign_and_confirm(session, letter, settings, contact_ok=True, email="reader@news.example")
    owner = make_organizer(session, f"owner-{letter.slug}@example.org", letter=letter,
                           role=Role.OWNER)  # fmt: skip
    queue_update(session, letter=letter, actor=Actor(owner),
                 data=UpdateIn(subject="News", body="We delivered it."))  # fmt: skip
    assert fan_out_updates(session, settings=settings) == 1
    request_login_link(session, email=owner.email)
    send_login_links(session, settings=settings)
    session.flush()
    start = utcnow() - timedelta(minutes=5)
    rows = session.execute(
        select(OutboxEmail.kind, OutboxEmail.priority, OutboxEmail.fairness_key).where(
            OutboxEmail.created_at >= start, OutboxEmail.kind != "verify"
        )
    ).all()
    found = {kind: (priority, key) for kind, priority, key in rows}
    assert found["update"] == (1, "news.example")
    assert found["organizer_login"] == (0, "example.org")


# --- The order of the claim -----------------------------------------------------------


def test_links_are_claimed_before_updates_that_waited_longer(db: Database) -> None:
    long_ago = utcnow() - timedelta(hours=1)
    with db.write() as session:
        updates = [
            _queue(session, to=f"r{n}@example.org", priority=1, due=long_ago, kind="update")
            for n in range(5)
        ]
        link = _queue(session, to="signer@example.org")
    assert _claimed(db, limit=1) == [link]
    assert _claimed(db, limit=10) == updates


def test_keys_are_served_in_turn_oldest_first(db: Database) -> None:
    """A (4 emails), then B (2), then C (1), queued in that order: A1 B1 C1 A2 B2 A3 A4."""
    start = utcnow() - timedelta(minutes=1)
    ids: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    with db.write() as session:
        for n, key in enumerate("aaaabbc"):
            ids[key].append(
                _queue(session, to=f"x{n}@{key}.example", due=start + timedelta(seconds=n))
            )
    a, b, c = ids["a"], ids["b"], ids["c"]
    assert _claimed(db, limit=7) == [a[0], b[0], c[0], a[1], b[1], a[2], a[3]]


def test_a_flood_to_one_domain_does_not_hold_up_another(db: Database) -> None:
    start = utcnow() - timedelta(minutes=10)
    with db.write() as session:
        for n in range(2000):
            _queue(session, to=f"victim{n}@flood.example", due=start + timedelta(milliseconds=n))
        honest = _queue(session, to="honest@example.org")
    first = _claimed(db, limit=20)
    assert first[1] == honest  # after the flood's oldest, which has waited longest
    assert len(first) == 20


def test_an_email_whose_lease_ran_out_is_taken_over_first(db: Database) -> None:
    with db.write() as session:
        waiting = _queue(session, to="a@a.example", due=utcnow() - timedelta(hours=1))
        crashed = _queue(session, to="b@b.example")
    now = utcnow()
    with db.write() as session:
        session.get_one(OutboxEmail, crashed).status = OutboxStatus.SENDING
        session.get_one(OutboxEmail, crashed).lease_expires_at = now - timedelta(seconds=1)
    assert _claimed(db, limit=1, now=now) == [crashed]
    assert _claimed(db, limit=1, now=now) == [waiting]
    # Claimed ones, under a live lease, are not claimed again.
    assert _claimed(db, limit=5, now=now + LEASE / 2) == []


def test_beyond_the_window_new_arrivals_compete_and_nobody_starves(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more than 2 x FAIR_WINDOW due emails, only the oldest and the newest are
    ranked: a newly queued email is served at once; one in the middle, seen by neither,
    is served first come, first served (after the older ones), and the oldest email of
    all is always claimed first: nobody starves."""
    monkeypatch.setattr(mail_service, "FAIR_WINDOW", 3)
    start = utcnow() - timedelta(minutes=1)
    with db.write() as session:
        flood = [
            _queue(session, to=f"f{n}@flood.example", due=start + timedelta(seconds=n))
            for n in range(5)
        ]
        middle = _queue(session, to="m@middle.example", due=start + timedelta(seconds=5))
        flood += [
            _queue(session, to=f"f{n}@flood.example", due=start + timedelta(seconds=n))
            for n in range(6, 11)
        ]
        newest = _queue(session, to="n@new.example", due=start + timedelta(seconds=11))
    assert _claimed(db, limit=2) == [flood[0], newest]
    order = [_claimed(db, limit=1)[0] for _ in range(5)]
    assert order == [*flood[1:5], middle]
    assert _claimed(db, limit=20) == flood[5:]


def test_dev_mailbox_receives_links_first_then_each_batch_in_turn(
    db: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, db.url)
    long_ago = utcnow() - timedelta(hours=1)
    with db.write() as session:
        for n in range(3):
            _queue(session, to=f"u{n}@big.example", priority=1, due=long_ago, kind="update")
        _queue(session, to="u@small.example", priority=1, due=long_ago, kind="update")
        _queue(session, to="signer@example.org")
    mailbox = dev_mailbox(settings)
    while deliver_due(db, mailbox, settings=settings, limit=10):
        pass
    received = [message["To"] for message in reversed(mailbox.messages())]  # oldest first
    assert received == [
        "signer@example.org",
        "u0@big.example",
        "u@small.example",
        "u1@big.example",
        "u2@big.example",
    ]


def test_workers_claiming_at_once_fill_their_batches_without_overlap(postgres: Database) -> None:
    truncate(postgres)
    with postgres.write() as session:
        for n in range(30):
            _queue(session, to=f"p{n}@d{n % 3}.example")
    with postgres.write() as first, postgres.write() as second:
        mine = [email_id for email_id, _ in claim_batch(first, now=utcnow(), limit=10)]
        # The first worker's rows stay locked (uncommitted) while the second claims.
        theirs = [email_id for email_id, _ in claim_batch(second, now=utcnow(), limit=10)]
    assert len(mine) == len(theirs) == 10
    assert not set(mine) & set(theirs)


# --- The cost with a big queue --------------------------------------------------------

QUEUED = 100_000


@contextmanager
def _statements(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _seed_big_queue(session: Session, *, priority: int) -> None:
    """QUEUED due emails straight into the table (a third to one domain)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    numbers = (
        "generate_series(1, :count) AS g(n)"
        if postgres
        else "(WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count) "
        "SELECT n FROM g) AS g"
    )
    domain = "CASE WHEN n % 3 = 0 THEN 'big.example' ELSE 'd' || (n % 997) || '.example' END"
    due = "now() - n * interval '1 millisecond'" if postgres else "datetime('now', '-1 hour')"
    session.execute(
        text(
            "INSERT INTO outbox_emails (kind, priority, fairness_key, to_address, subject, "
            "text_body, html_body, headers, message_id, status, attempts, next_attempt_at, "
            f"created_at) SELECT 'update', :priority, {domain}, 'x' || n || '@example.org', "
            f"'s', 't', 'h', '{{}}', '<' || n || '@test>', 'pending', 0, {due}, {due} "
            f"FROM {numbers}"
        ),
        {"count": QUEUED, "priority": priority},
    )
    session.execute(text("ANALYZE"))


@pytest.mark.parametrize("links", [0, 50], ids=["bulk only", "links and bulk"])
def test_the_claim_reads_a_bounded_part_of_a_big_queue_through_the_index(
    session: Session, links: int
) -> None:
    """100,000 updates queued (and maybe a few links): the claim reads the due index
    and ranks at most 2 x FAIR_WINDOW rows (asserted on the plan; the time it took is
    printed for the record, never asserted)."""
    _seed_big_queue(session, priority=1)
    for n in range(links):
        _queue(session, to=f"signer{n}@example.org")
    session.flush()
    with _statements(session.get_bind()) as seen:
        started = time.perf_counter()
        claims = claim_batch(session, now=utcnow(), limit=20)
        took = time.perf_counter() - started
    print(f"\nclaim_batch with {QUEUED + links} queued: {took * 1000:.1f} ms")
    assert len(claims) == 20
    if links:
        kinds = session.scalars(
            select(OutboxEmail.kind).where(OutboxEmail.id.in_([i for i, _ in claims]))
        ).all()
        assert set(kinds) == {"verify"}, "the links first"
    [(ranking, parameters)] = [s for s in seen if "row_number()" in s[0]]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        rows = connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {ranking}", parameters
        ).scalar_one()
        plan = json.dumps(rows)
        assert '"Node Type": "Seq Scan"' not in plan, plan
        assert "ix_outbox_emails_due" in plan, plan
        if links:
            assert "ix_outbox_emails_due_priority" in plan, plan
        windows = [node for node in _nodes(rows[0]["Plan"]) if node["Node Type"] == "WindowAgg"]
        assert windows and all(
            node["Actual Rows"] <= 2 * mail_service.FAIR_WINDOW for node in windows
        ), plan
    else:
        found = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {ranking}", parameters)
        plan = "\n".join(str(row[-1]) for row in found)
        index = (
            "SEARCH outbox_emails USING INDEX ix_outbox_emails_due_priority "
            "(status=? AND priority=? AND next_attempt_at<?)"
        )
        assert plan.count(index) == 2, plan  # the oldest and the newest, in index order
        assert "SCAN outbox_emails" not in plan, plan


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)
