"""The signer list and its search use indexes on both databases (asserted on the plans).

The list's order (newest first, by list position) comes straight from an index, so a
page costs the same at 300,000 signers as at 30; the search uses a trigram index (GIN on
PostgreSQL, an FTS5 trigram table on SQLite) instead of scanning every name. On
PostgreSQL, sequential scans are switched off for the EXPLAIN so that a small test table
shows whether an index *can* serve the query, not what the planner picks for 30 rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.letters.models import Letter
from app.signatures.models import SignatureDisplay
from app.signatures.service import list_public_signatures
from tests.support.factories import make_letter, sign_and_confirm


@contextmanager
def _captured(session: Session) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []
    engine = session.get_bind()

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _plan(session: Session, **query: Any) -> str:
    """The plan of the statement `list_public_signatures(**query)` runs."""
    with _captured(session) as seen:
        list_public_signatures(session, **query)
    [(statement, parameters)] = [s for s in seen if "FROM signatures" in s[0]]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        plan = json.dumps(rows.scalar_one())
        connection.exec_driver_sql("SET LOCAL enable_seqscan = on")
        return plan
    rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
    return "\n".join(str(row[-1]) for row in rows)


def _thirty_signers(session: Session, settings: Settings) -> Letter:
    """A letter with 30 signers through the services; every fifth anonymous."""
    letter = make_letter(session)
    for n in range(30):
        sign_and_confirm(
            session, letter, settings, name=f"Signer {n}", organization=f"Org {n % 7}",
            display=SignatureDisplay.ANONYMOUS if n % 5 == 0 else SignatureDisplay.PUBLIC,
        )  # fmt: skip
    return letter


def _seed(session: Session, settings: Settings, *, bulk: int) -> int:
    """30 signers through the services; on PostgreSQL, which plans by cost, `bulk` more
    straight into the table, so the letter looks like a busy one in production."""
    letter = _thirty_signers(session, settings)
    if session.get_bind().dialect.name == "postgresql":
        for letter_id, offset in ((letter.id, 30),):  # positions after the 30 above
            session.execute(
                text(
                    "INSERT INTO signatures (letter_id, position, status, display, name, "
                    "title, organization, city, email, email_hash, email_domain, contact_ok, "
                    "verified_at) SELECT :letter, :offset + n, 'verified', 'public', "
                    "'Bulk ' || md5(n::text), '', 'Bulk Org ' || (n % 1000), '', NULL, "
                    "md5(:letter || '-' || n), 'example.org', false, now() "
                    "FROM generate_series(1, :count) AS n"
                ),
                {"letter": letter_id, "offset": offset, "count": bulk},
            )
    session.execute(text("ANALYZE"))
    return letter.id


def test_the_list_is_read_in_index_order(session: Session, settings: Settings) -> None:
    letter_id = _seed(session, settings, bulk=20_000)
    for after in (None, 20, 10_000):
        plan = _plan(session, letter_id=letter_id, after=after)
        assert "uq_signatures_letter_id_position" in plan, plan
        if session.get_bind().dialect.name == "postgresql":
            assert '"Node Type": "Sort"' not in plan, plan
            assert '"Scan Direction": "Backward"' in plan, plan
        else:
            assert "TEMP B-TREE" not in plan, plan  # no sort of every row


def test_search_uses_a_trigram_index(session: Session, settings: Settings) -> None:
    letter_id = _seed(session, settings, bulk=60_000)
    plan = _plan(session, letter_id=letter_id, query="gner 1")
    if session.get_bind().dialect.name == "postgresql":
        assert "ix_signatures_name_trgm" in plan, plan
        assert "ix_signatures_organization_trgm" in plan, plan
        assert '"Node Type": "Seq Scan"' not in plan, plan
    else:
        assert "signatures_search VIRTUAL TABLE INDEX" in plan, plan
        assert "SCAN signatures\n" not in plan + "\n", plan  # never every row


def test_search_results_match_on_both_databases(session: Session, settings: Settings) -> None:
    letter_id = _thirty_signers(session, settings).id
    items, _ = list_public_signatures(session, letter_id=letter_id, query="gner 1")
    expected = [f"Signer {n}" for n in reversed(range(30)) if str(n).startswith("1") and n % 5]
    assert [item.name for item in items] == expected
    by_org, _ = list_public_signatures(session, letter_id=letter_id, query="org 3")
    assert {item.name for item in by_org} == {
        f"Signer {n}" for n in range(30) if n % 7 == 3 and n % 5
    }
