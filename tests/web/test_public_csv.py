"""`/letters/{slug}/signers.csv`: the public signer list as CSV, exactly its public
fields (anonymous and waiting names empty, hidden and uncounted signers left out),
formula-safe, streamed in batches, and only where the list is public."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.signatures import public_csv
from app.signatures.models import SignatureDisplay, SignatureStatus
from tests.signatures.test_badges import add, crowd
from tests.support.config import make_settings
from tests.support.factories import make_letter

ANONYMOUS = SignatureDisplay.ANONYMOUS
DAY = datetime(2026, 11, 2, 23, 59, tzinfo=UTC)


def _rows(client: TestClient, slug: str) -> list[dict[str, str]]:
    response = client.get(f"/letters/{slug}/signers.csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="{slug}-signers.csv"'
    assert response.headers["cache-control"] == "no-store"
    reader = csv.DictReader(io.StringIO(response.text, newline=""))
    assert tuple(reader.fieldnames or ()) == public_csv.COLUMNS
    return list(reader)


def test_the_csv_holds_what_the_public_list_shows_and_nothing_more(
    app: FastAPI, client: TestClient
) -> None:
    with app.state.database.write() as session:
        letter = make_letter(session, slug="open-data")
        letter.domain_names = {"google.com": "Google"}
        first = add(session, letter, "acme.example", name="Ada Lovelace", organization="Acme")
        first.title, first.city, first.verified_at = "Analyst", "London", DAY
        first.comment = "my private reason"
        add(session, letter, "google.com", display=ANONYMOUS)
        add(session, letter, "waiting.example", name="Wendy Waiting", organization="Secret",
            threshold=50)  # fmt: skip
        add(session, letter, "", name="Hidden Harry", hidden=True)
        add(session, letter, "", name="Withdrawn Will", status=SignatureStatus.WITHDRAWN)
        add(session, letter, "", name="Removed Rita", status=SignatureStatus.REMOVED)
        confirmed = add(session, letter, "", show=False, name="Famous Person")
        confirmed.organizer_confirmed = True

    rows = _rows(client, "open-data")
    assert rows[0] == {
        "signed_on": "2026-11-02",
        "name": "Ada Lovelace",
        "title": "Analyst",
        "organization": "Acme",
        "city": "London",
        "anonymous": "no",
        "verified_domain": "acme.example",
        "verified_company": "",
        "confirmed_by_organizers": "no",
    }
    assert [row["name"] for row in rows] == ["Ada Lovelace", "", "", "Famous Person"]
    anonymous, waiting, famous = rows[1], rows[2], rows[3]
    assert anonymous["anonymous"] == "yes" and anonymous["verified_company"] == "Google"
    assert (waiting["anonymous"], waiting["organization"], waiting["verified_domain"]) == (
        "yes",
        "",
        "waiting.example",
    )
    assert famous["confirmed_by_organizers"] == "yes" and famous["verified_domain"] == ""
    body = client.get("/letters/open-data/signers.csv").text
    for secret in ("Wendy", "Secret", "Hidden Harry", "Withdrawn", "Removed", "private reason",
                   "@"):  # fmt: skip
        assert secret not in body


def test_formulas_are_neutralised_and_quoting_is_right(app: FastAPI, client: TestClient) -> None:
    with app.state.database.write() as session:
        letter = make_letter(session, slug="formulas")
        add(session, letter, "", name='=HYPERLINK("http://x","y")', organization='+1, "Co"')
        add(session, letter, "", name="@SUM(A1)", organization="-2")
    rows = _rows(client, "formulas")
    assert [(row["name"], row["organization"]) for row in rows] == [
        ('\'=HYPERLINK("http://x","y")', '\'+1, "Co"'),
        ("'@SUM(A1)", "'-2"),
    ]


def test_only_where_the_list_is_public(app: FastAPI, client: TestClient) -> None:
    with app.state.database.write() as session:
        add(session, make_letter(session, slug="private-list", show_signers=False), "")
    assert client.get("/letters/private-list/signers.csv").status_code == 404
    assert client.get("/letters/no-such-letter/signers.csv").status_code == 404


def test_streamed_in_batches_oldest_first(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(public_csv, "BATCH_SIZE", 3)
    with app.state.database.write() as session:
        letter = make_letter(session, slug="batched")
        crowd(session, letter, "", 7)
        add(session, letter, "", name="Hidden", hidden=True)  # in a batch of its own
        add(session, letter, "", name="Newest")
    batches: list[int] = []
    real = public_csv._batch

    def counted(*args: object) -> object:
        found = real(*args)  # type: ignore[arg-type]
        batches.append(len(found[0]))
        return found

    monkeypatch.setattr(public_csv, "_batch", counted)
    names = [row["name"] for row in _rows(client, "batched")]
    assert names == [f"Person {n}" for n in range(1, 8)] + ["Newest"]
    assert batches == [3, 3, 2]  # the last batch is short: no further query


def test_downloads_count_against_the_apis_limit(tmp_path: Path, app_settings: Settings) -> None:
    settings = make_settings(tmp_path, app_settings.database_url, rate_limits=True,
                             rate_limit_api="2/minute")  # fmt: skip
    app = create_app(settings)
    with app.state.database.write() as session:
        add(session, make_letter(session, slug="limited"), "")
    with TestClient(app) as client:
        assert client.get("/letters/limited/signers.csv").status_code == 200
        assert client.get("/api/v1/letters/limited").status_code == 200
        refused = client.get("/letters/limited/signers.csv")
        assert refused.status_code == 429 and "retry-after" in refused.headers
