"""Nobody can tell whether an address has signed: not from the answer, not from its timing.

The sign request does the same work whatever the address's state (new, pending,
confirmed, or past the email cap): it records the submission, and the mail worker
decides later what to send. Two tests hold that: the database statements a sign request
runs are the same list for every state (exact), and the response times of the four
kinds of address cannot be told apart by a threshold (statistical, with a margin far
from what an attacker needed before: 93 to 96 % of addresses classified from 8 requests).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import Settings
from app.letters.models import Letter
from app.signatures.service import EMAILS_PER_WINDOW, notify_pending, sign_letter
from tests.support.factories import make_letter, sign, sign_and_confirm, signature_in
from tests.web.flows import add_letter, deliver

STATES = ("new", "pending", "confirmed", "capped")


def _prepare(session: Session, letter: Letter, settings: Settings, state: str, n: int) -> str:
    """An address in the given state; returns it."""
    address = f"{state}.{n}@example.org"
    if state == "pending":
        sign(session, letter, settings, email=address)
        notify_pending(session, settings=settings)
    elif state == "confirmed":
        sign_and_confirm(session, letter, settings, email=address)
    elif state == "capped":
        for _ in range(EMAILS_PER_WINDOW + 1):
            sign(session, letter, settings, email=address)
        notify_pending(session, settings=settings)
    return address


@contextmanager
def _statements(session: Session) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = session.get_bind()

    def record(*args: Any) -> None:
        seen.append(args[2])  # the statement text, without its parameters

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_sign_request_runs_the_same_statements_whatever_the_address_did(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    runs: dict[str, list[str]] = {}
    for state in STATES:
        address = _prepare(session, letter, settings, state, 0)
        data = signature_in(email=address)
        with _statements(session) as seen:
            sign_letter(session, slug=letter.slug, data=data, settings=settings)
        runs[state] = seen
    assert runs["new"], "nothing was recorded"
    for state in STATES[1:]:
        assert runs[state] == runs["new"], state


def _best_threshold_accuracy(first: list[float], second: list[float]) -> float:
    """How well the best single threshold on time tells the two groups apart (0.5 is a
    coin toss, 1.0 is perfect)."""
    labelled = sorted([(value, 0) for value in first] + [(value, 1) for value in second])
    total, best = len(labelled), 0.5
    below_first = below_second = 0
    for _value, group in labelled:
        if group == 0:
            below_first += 1
        else:
            below_second += 1
        # "below or at the threshold means first" and the opposite reading.
        right = below_first + (len(second) - below_second)
        best = max(best, right / total, 1 - right / total)
    return best


@pytest.mark.slow  # 300 timed requests
def test_response_times_do_not_tell_whether_an_address_signed(
    app: FastAPI, client: TestClient, app_settings: Settings
) -> None:
    letter = add_letter(app, slug="timing")
    rounds = 60
    addresses: dict[str, list[str]] = {state: [] for state in STATES}
    with app.state.database.write() as session:
        target = session.get_one(Letter, letter.id)
        for state in STATES:
            for n in range(rounds):
                addresses[state].append(_prepare(session, target, app_settings, state, n))
    deliver(app)
    url = f"/api/v1/letters/{letter.slug}/signatures"
    body = signature_in(email="warm-up@example.org").model_dump(mode="json")
    for _ in range(20):  # warm-up: caches, the first statement plans
        assert client.post(url, json=body).status_code == 202

    times: dict[str, list[float]] = {state: [] for state in STATES}
    order = [(state, n) for state in STATES for n in range(rounds)]
    random.Random(12).shuffle(order)  # interleaved, so drift hits every state alike
    for state, n in order:
        body = signature_in(email=addresses[state][n]).model_dump(mode="json")
        start = time.perf_counter()
        response = client.post(url, json=body)
        times[state].append(time.perf_counter() - start)
        assert response.status_code == 202
        assert response.json() == {"status": "pending"}

    medians = {state: statistics.median(values) for state, values in times.items()}
    for state in STATES[1:]:
        accuracy = _best_threshold_accuracy(times["new"], times[state])
        assert accuracy < 0.75, (state, accuracy, medians)
        # And no systematic gap: medians within 20 % of each other.
        assert abs(medians[state] - medians["new"]) < 0.2 * medians["new"], medians
