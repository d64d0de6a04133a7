"""Two mail workers fanning out updates at once on PostgreSQL (FOR UPDATE SKIP LOCKED):
neither waits for the other, and no batch is queued twice. (SQLite has one writer.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, text

from app.db import Database
from app.mail.models import OutboxEmail
from app.organizers.service import Actor
from app.updates.models import LetterUpdate, UpdateState
from app.updates.schemas import UpdateIn
from app.updates.service import fan_out_updates, queue_update
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import make_letter, sign_and_confirm


@pytest.mark.postgres
def test_two_workers_take_different_updates_and_never_the_same_batch(
    postgres: Database, tmp_path: Path
) -> None:
    truncate(postgres)
    settings = make_settings(tmp_path, postgres.url)
    with postgres.write() as session:
        for number in range(2):
            letter = make_letter(session)
            for _ in range(3):
                sign_and_confirm(session, letter, settings, contact_ok=True)
            data = UpdateIn(subject=f"Update {number}", body="News.")
            queue_update(session, letter=letter, actor=Actor(None), data=data)

    with postgres.write() as first, postgres.write() as second:
        assert fan_out_updates(first, settings=settings, batch_size=2) == 2
        # The first worker still holds its update's row: the second neither waits for
        # it (the lock timeout would fail this test) nor queues its batch again.
        second.execute(text("SET LOCAL lock_timeout = '2s'"))
        assert fan_out_updates(second, settings=settings, batch_size=2) == 2
    with postgres.write() as session:
        while fan_out_updates(session, settings=settings, batch_size=2):
            pass

    with postgres.read() as session:
        emails = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "update")).all()
        states = set(session.scalars(select(LetterUpdate.state)))
    truncate(postgres)  # committed: leave nothing for the tests that share the database
    per_address = Counter((email.to_address, email.subject) for email in emails)
    assert len(per_address) == 6 and set(per_address.values()) == {1}
    assert states == {UpdateState.SENT}
