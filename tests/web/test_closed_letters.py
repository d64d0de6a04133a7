"""A letter whose closing time has passed is closed everywhere people and programs look:
the home page, its own page and the API (the signing routes already refused it).

The ordering query runs on both databases in tests/letters/test_service.py; these check
what the pages and the API show, on SQLite."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.db import utcnow
from app.letters.models import Letter, LetterStatus
from app.letters.schemas import LetterCreate
from app.letters.service import add_to_tally, create_letter

CARD = re.compile(r'<li class="card">(.*?)</li>\s*(?=<li class="card">|</ul>)', re.S)


def _letter(app: FastAPI, slug: str, *, count: int = 0, **fields: Any) -> Letter:
    values: dict[str, Any] = {
        "slug": slug,
        "title": f"The {slug} letter",
        "body_markdown": "We ask for **one thing**.",
        "status": LetterStatus.OPEN,
        **fields,
    }
    with app.state.database.write() as session:
        letter = create_letter(session, data=LetterCreate(**values))
        add_to_tally(session, letter_id=letter.id, delta=count)
    return letter


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"


@pytest.fixture
def moments() -> dict[str, datetime]:
    now = utcnow()
    return {"past": now - timedelta(days=3), "future": now + timedelta(days=40)}


@pytest.fixture
def letters(app: FastAPI, moments: dict[str, datetime]) -> dict[str, Letter]:
    return {
        "expired": _letter(app, "expired", count=50, closes_at=moments["past"]),
        "open": _letter(app, "open", count=2),
        "closing": _letter(app, "closing", count=1, closes_at=moments["future"]),
        "closed": _letter(app, "closed", status=LetterStatus.CLOSED),
    }


def test_home_shows_an_expired_letter_as_closed_after_the_open_ones(
    client: TestClient, letters: dict[str, Letter], moments: dict[str, datetime]
) -> None:
    page = client.get("/")

    assert page.status_code == 200
    cards = dict(
        zip(["open", "closing", "expired", "closed"], CARD.findall(page.text), strict=True)
    )
    for name, card in cards.items():
        assert f'href="/letters/{letters[name].slug}"' in card, "open letters first"
        assert ('class="badge">Closed<' in card) == (name in ("expired", "closed")), name
    past, future = moments["past"], moments["future"]
    assert f'Closed on <time datetime="{past:%Y-%m-%d}">{_day(past)}</time>' in cards["expired"]
    assert f'Closes on <time datetime="{future:%Y-%m-%d}">{_day(future)}</time>' in cards["closing"]
    assert "Closes on" not in cards["open"] and "Closed on" not in cards["open"]
    assert "Closed on" not in cards["closed"], "no closing time, no date"
    assert not re.search(r"\d\d:\d\d", page.text), "a date, never a time"


def test_an_expired_letter_page_is_closed_and_invites_no_signature(
    client: TestClient, letters: dict[str, Letter], moments: dict[str, datetime]
) -> None:
    page = client.get(f"/letters/{letters['expired'].slug}")

    assert page.status_code == 200
    assert "This letter is closed" in page.text
    assert f">{_day(moments['past'])}</time>" in page.text
    assert "Closed on" in page.text and "Closes on" not in page.text
    assert '<form method="post"' not in page.text
    assert "Sign this letter" not in page.text
    assert "Be the first to sign" not in page.text


def test_a_closed_letter_without_signers_invites_no_signature(
    client: TestClient, letters: dict[str, Letter]
) -> None:
    page = client.get(f"/letters/{letters['closed'].slug}")
    assert page.status_code == 200
    assert "This letter is closed" in page.text
    assert "Be the first to sign" not in page.text
    assert "No confirmed signatures." in page.text


def test_an_open_letter_page_shows_when_it_closes(
    client: TestClient, letters: dict[str, Letter], moments: dict[str, datetime]
) -> None:
    page = client.get(f"/letters/{letters['closing'].slug}")
    assert page.status_code == 200
    assert f'Closes on <time datetime="{moments["future"]:%Y-%m-%d}">' in page.text
    assert "Be the first to sign" in page.text
    assert re.search(
        rf'<form method="post" action="/letters/{letters["closing"].slug}/sign', page.text
    )
    assert "This letter is closed" not in page.text


def test_the_api_says_closed_once_the_closing_time_has_passed(
    client: TestClient, letters: dict[str, Letter]
) -> None:
    items = client.get("/api/v1/letters").json()["items"]
    assert [(item["slug"], item["status"]) for item in items] == [
        ("open", "open"),
        ("closing", "open"),
        ("expired", "closed"),
        ("closed", "closed"),
    ]
    for name, status in (("expired", "closed"), ("closing", "open"), ("closed", "closed")):
        detail = client.get(f"/api/v1/letters/{letters[name].slug}").json()
        assert detail["status"] == status, name
