"""app.abuse.proof: ALTCHA challenges issued, solved as the widget does, checked and
spent (on SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import altcha
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.abuse import proof
from app.abuse.models import SpentChallenge
from app.abuse.proof import ProofResult
from app.config import ProofOfWork, Settings
from app.db import utcnow
from tests.support.config import make_settings

LETTER = "ice-out"


def cheap(settings: Settings, **overrides: Any) -> Settings:
    """The test's settings with a proof of work cheap enough to solve in a test."""
    values = {**settings.model_dump(), "proof_of_work_cost": 10, **overrides}
    return Settings(_env_file=None, **values)


def solve(challenge: dict[str, Any]) -> str:
    """What the widget sends back: the challenge and its solution, base64 JSON."""
    parsed = altcha.Challenge.from_dict(challenge)
    solution = altcha.solve_challenge(parsed)
    assert solution is not None
    return str(altcha.Payload(parsed, solution).to_base64())


def edit(payload: str, change: Any) -> str:
    data = json.loads(base64.b64decode(payload))
    change(data)
    return base64.b64encode(json.dumps(data).encode()).decode()


@pytest.fixture
def pow_settings(settings: Settings) -> Settings:
    return cheap(settings)


def test_a_challenge_names_its_letter_and_expires(pow_settings: Settings) -> None:
    challenge = proof.new_challenge(pow_settings, letter_slug=LETTER)
    parameters = challenge["parameters"]
    assert parameters["algorithm"] == "PBKDF2/SHA-256"
    assert parameters["cost"] == 10
    assert parameters["keyPrefix"] == proof.KEY_PREFIX
    assert parameters["data"] == {"letter": LETTER}
    lifetime = parameters["expiresAt"] - time.time()
    assert proof.CHALLENGE_LIFETIME.total_seconds() - 5 < lifetime
    assert lifetime <= proof.CHALLENGE_LIFETIME.total_seconds()
    assert len(challenge["signature"]) == 64
    # Random every time: two challenges never share a nonce or a salt.
    other = proof.new_challenge(pow_settings, letter_slug=LETTER)["parameters"]
    assert other["nonce"] != parameters["nonce"] and other["salt"] != parameters["salt"]


def test_a_good_solution_is_verified_once_then_replayed(
    session: Session, pow_settings: Settings
) -> None:
    payload = solve(proof.new_challenge(pow_settings, letter_slug=LETTER))
    assert proof.check(session, pow_settings, payload=payload, letter_slug=LETTER) == (
        ProofResult.VERIFIED
    )
    assert session.scalar(select(func.count()).select_from(SpentChallenge)) == 1
    assert proof.check(session, pow_settings, payload=payload, letter_slug=LETTER) == (
        ProofResult.REPLAYED
    )
    # The record is a hash of the nonce, never the payload or anything about a person.
    spent = session.scalars(select(SpentChallenge)).one()
    nonce = json.loads(base64.b64decode(payload))["challenge"]["parameters"]["nonce"]
    assert nonce not in spent.nonce_hash and len(spent.nonce_hash) == 64


def test_a_wrong_answer_is_invalid(session: Session, pow_settings: Settings) -> None:
    payload = solve(proof.new_challenge(pow_settings, letter_slug=LETTER))

    def wrong_counter(data: dict[str, Any]) -> None:
        data["solution"]["counter"] += 1

    def wrong_key(data: dict[str, Any]) -> None:
        data["solution"]["derivedKey"] = "00" * 32

    for change in (wrong_counter, wrong_key):
        result = proof.check(
            session, pow_settings, payload=edit(payload, change), letter_slug=LETTER
        )
        assert result == ProofResult.INVALID
    # Refused solutions spend nothing: the good one still works.
    assert proof.check(session, pow_settings, payload=payload, letter_slug=LETTER) == (
        ProofResult.VERIFIED
    )


def test_a_tampered_challenge_is_invalid(session: Session, pow_settings: Settings) -> None:
    """An easier challenge than ours (a shorter prefix, fewer iterations), or one moved
    to another letter, no longer matches the server's signature."""
    payload = solve(proof.new_challenge(pow_settings, letter_slug=LETTER))

    def easier(data: dict[str, Any]) -> None:
        data["challenge"]["parameters"]["keyPrefix"] = ""

    def cheaper(data: dict[str, Any]) -> None:
        data["challenge"]["parameters"]["cost"] = 1

    def elsewhere(data: dict[str, Any]) -> None:
        data["challenge"]["parameters"]["data"] = {"letter": "other-letter"}

    for change in (easier, cheaper, elsewhere):
        result = proof.check(
            session, pow_settings, payload=edit(payload, change), letter_slug=LETTER
        )
        assert result == ProofResult.INVALID


def test_a_solution_for_another_letter_is_invalid(session: Session, pow_settings: Settings) -> None:
    payload = solve(proof.new_challenge(pow_settings, letter_slug="other-letter"))
    assert proof.check(session, pow_settings, payload=payload, letter_slug=LETTER) == (
        ProofResult.INVALID
    )


def test_another_servers_challenge_is_invalid(
    session: Session, pow_settings: Settings, tmp_path: Path
) -> None:
    other = cheap(make_settings(tmp_path, "sqlite://", secret_key="k" * 40))
    payload = solve(proof.new_challenge(other, letter_slug=LETTER))
    assert proof.check(session, pow_settings, payload=payload, letter_slug=LETTER) == (
        ProofResult.INVALID
    )


def test_an_expired_challenge_is_refused(
    session: Session, pow_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    past = utcnow() - proof.CHALLENGE_LIFETIME - timedelta(seconds=1)
    monkeypatch.setattr(proof, "utcnow", lambda: past)
    payload = solve(proof.new_challenge(pow_settings, letter_slug=LETTER))
    monkeypatch.undo()
    assert proof.check(session, pow_settings, payload=payload, letter_slug=LETTER) == (
        ProofResult.EXPIRED
    )


@pytest.mark.parametrize(
    "payload",
    ["x", "not base64 !!", base64.b64encode(b"[1, 2]").decode(),
     base64.b64encode(b'{"challenge": {}, "solution": {}}').decode(), "A" * 5000],
)  # fmt: skip
def test_garbage_is_invalid(session: Session, pow_settings: Settings, payload: str) -> None:
    assert proof.check(session, pow_settings, payload=payload, letter_slug=LETTER) == (
        ProofResult.INVALID
    )


def test_no_payload_is_missing(session: Session, pow_settings: Settings) -> None:
    assert proof.check(session, pow_settings, payload="", letter_slug=LETTER) == (
        ProofResult.MISSING
    )


def test_when_it_is_asked_for(pow_settings: Settings) -> None:
    for mode, busy, expected in [
        (ProofOfWork.OFF, False, False),
        (ProofOfWork.OFF, True, False),
        (ProofOfWork.ALWAYS, False, True),
        (ProofOfWork.ALWAYS, True, True),
        (ProofOfWork.AUTO, False, False),
        (ProofOfWork.AUTO, True, True),
    ]:
        assert proof.asked_for(cheap(pow_settings, proof_of_work=mode), busy=busy) is expected


def test_spent_challenges_are_purged_after_they_expire(
    session: Session, pow_settings: Settings
) -> None:
    payload = solve(proof.new_challenge(pow_settings, letter_slug=LETTER))
    assert proof.check(session, pow_settings, payload=payload, letter_slug=LETTER) == (
        ProofResult.VERIFIED
    )
    assert proof.purge_spent_challenges(session, now=utcnow()) == 0
    later = utcnow() + proof.CHALLENGE_LIFETIME + timedelta(seconds=1)
    assert proof.purge_spent_challenges(session, now=later) == 1
    assert session.scalar(select(func.count()).select_from(SpentChallenge)) == 0
