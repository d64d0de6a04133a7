"""/api/v1/letters/{slug}/log and /.well-known/undersigned-log-key, on SQLite and
PostgreSQL: a letter confirmed, withdrawn from, moderated and sequenced through the real
services, then read and checked over HTTP the way a verifier does it, with the library's
own RFC 6962 and signed-note checks."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.errors import InvalidInput
from app.letters.models import Letter, LetterStatus
from app.main import create_app
from app.organizers.service import SHELL
from app.signatures.manage import manage_token, withdraw
from app.signatures.models import RemovalReason
from app.signatures.moderation import remove_signature
from app.signlog import keys
from app.signlog import service as log
from app.signlog.models import LogCheckpoint
from app.signlog.sequencer import sequence_all
from app.transparency import merkle
from app.transparency.note import Verifier, open_checkpoint
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign_and_confirm

SLUG = "log-letter"
IMMUTABLE = "public, max-age=31536000, immutable"
ROUTES = ("checkpoint", "entries", "proof/inclusion", "proof/consistency", "lookup")


@dataclass
class Logged:
    client: TestClient
    database: Database
    settings: Settings
    letter_id: int
    commitments: list[str]
    """Of the signatures in the order they were confirmed (the first two are removed)."""
    unsequenced: str
    """The commitment of a confirmation made after the last sequencer pass."""

    def get(self, route: str, **params: Any) -> Any:
        response = self.client.get(f"/api/v1/letters/{SLUG}/log/{route}", params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def logged(clean_database: Database, tmp_path: Path) -> Iterator[Logged]:
    """A letter whose log has two checkpoints: 12 confirmations (size 12), then a
    withdrawal, a removal as a duplicate and 3 confirmations (size 17: count 13); then
    one more confirmation, not yet sequenced (tally 14). And a draft letter."""
    settings = make_settings(tmp_path, clean_database.url)
    with clean_database.write() as session:
        letter = make_letter(session, slug=SLUG)
        make_letter(session, slug="draft-letter", status=LetterStatus.DRAFT)
        signed = [sign_and_confirm(session, letter, settings) for _ in range(12)]
        letter_id = letter.id
    sequence_all(clean_database, settings)
    with clean_database.write() as session:
        assert withdraw(
            session, token=manage_token(settings, signed[0].public_id or ""), settings=settings
        )
        assert remove_signature(
            session,
            actor=SHELL,
            letter_id=letter_id,
            position=signed[1].position or 0,
            reason=RemovalReason.DUPLICATE,
        )
        letter = session.get_one(Letter, letter_id)
        signed += [sign_and_confirm(session, letter, settings) for _ in range(3)]
    sequence_all(clean_database, settings)
    with clean_database.write() as session:
        late = sign_and_confirm(session, session.get_one(Letter, letter_id), settings)
    commitments = [signature.receipt_commitment or "" for signature in signed]
    assert all(len(commitment) == 64 for commitment in commitments)
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        yield Logged(
            client, clean_database, settings, letter_id, commitments, late.receipt_commitment or ""
        )


def _key(logged: Logged) -> Verifier:
    response = logged.client.get("/.well-known/undersigned-log-key")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.text.endswith("\n") and response.text.count("\n") == 1
    return Verifier.parse(response.text[:-1])


def _leaf_hashes(logged: Logged, size: int) -> list[bytes]:
    entries = logged.get("entries", start=0, end=size)["entries"]
    return [merkle.leaf_hash(entry["leaf"].encode("ascii")) for entry in entries]


def _invalid(logged: Logged, route: str, field: str | None = None, **params: Any) -> None:
    response = logged.client.get(f"/api/v1/letters/{SLUG}/log/{route}", params=params)
    assert response.status_code == 422, (route, params, response.text)
    body = response.json()
    assert body["error"] == "invalid_input", body
    if field is not None:
        assert field in body["fields"], body


# --- Checkpoints and the key ---


def test_the_latest_checkpoint_is_signed_and_adds_up(logged: Logged) -> None:
    verifier = _key(logged)
    assert verifier.vkey() == keys.verifier(logged.settings).vkey()
    latest = logged.get("checkpoint")
    assert latest["key"] == verifier.vkey()
    assert latest["origin"] == f"testserver/letters/{SLUG}"
    assert (latest["size"], latest["adds"], latest["removes"]) == (17, 15, 2)
    assert latest["count"] == 13
    assert latest["unsequenced"] == 1
    assert latest["receipt_prefix"] == 0
    assert latest["created_at"].endswith("Z")
    signed = open_checkpoint(latest["note"], verifier, origin=latest["origin"])
    assert signed.size == 17
    assert base64.b64decode(latest["root_hash"]) == signed.root_hash
    # The tally is the checkpoint's count and what is still on its way.
    tally = logged.client.get(f"/api/v1/letters/{SLUG}").json()["signature_count"]
    assert tally == latest["count"] + latest["unsequenced"] == 14


def test_a_past_checkpoint_is_kept_and_immutable(logged: Logged) -> None:
    response = logged.client.get(f"/api/v1/letters/{SLUG}/log/checkpoint", params={"size": 12})
    assert response.status_code == 200
    assert response.headers["cache-control"] == IMMUTABLE
    past = response.json()
    assert (past["size"], past["adds"], past["removes"], past["count"]) == (12, 12, 0, 12)
    assert past["unsequenced"] == 0
    signed = open_checkpoint(past["note"], _key(logged), origin=f"testserver/letters/{SLUG}")
    assert signed.size == 12
    assert signed.root_hash == merkle.root(_leaf_hashes(logged, 12))

    empty = logged.get("checkpoint", size=0)
    assert (empty["size"], empty["count"], empty["created_at"]) == (0, 0, None)
    assert base64.b64decode(empty["root_hash"]) == merkle.EMPTY_ROOT
    assert open_checkpoint(empty["note"], _key(logged)).size == 0


def test_no_checkpoint_of_a_size_never_signed_or_of_a_draft(logged: Logged) -> None:
    for size in (5, 18, 10**6):
        response = logged.client.get(
            f"/api/v1/letters/{SLUG}/log/checkpoint", params={"size": size}
        )
        assert response.status_code == 404, size
        assert response.json()["error"] == "not_found"
    for slug in ("draft-letter", "no-such-letter", "NOT a slug"):
        for route in ROUTES:
            response = logged.client.get(
                f"/api/v1/letters/{slug}/log/{route}",
                params={
                    "start": 0,
                    "end": 1,
                    "index": 0,
                    "size": 1,
                    "first": 1,
                    "second": 1,
                    "prefix": "",
                },
            )
            assert response.status_code == 404, (slug, route)
            assert response.json()["error"] == "letter_not_found"
    _invalid(logged, "checkpoint", "size", size=-1)
    _invalid(logged, "checkpoint", "size", size="twelve")


def test_a_letter_nobody_signed_has_the_empty_log(logged: Logged) -> None:
    with logged.database.write() as session:
        make_letter(session, slug="quiet-letter")
    empty = logged.client.get("/api/v1/letters/quiet-letter/log/checkpoint").json()
    assert (empty["size"], empty["count"], empty["unsequenced"]) == (0, 0, 0)
    assert empty["origin"] == "testserver/letters/quiet-letter"
    assert open_checkpoint(empty["note"], _key(logged)).root_hash == merkle.EMPTY_ROOT
    response = logged.client.get(
        "/api/v1/letters/quiet-letter/log/entries", params={"start": 0, "end": 1}
    )
    assert response.status_code == 422


# --- Entries ---


def test_entries_are_their_leaves_and_rebuild_the_signed_root(logged: Logged) -> None:
    page = logged.get("entries", start=0, end=17)
    assert (page["start"], page["end"], len(page["entries"])) == (0, 17, 17)
    entries = page["entries"]
    assert [entry["index"] for entry in entries] == list(range(17))
    for entry in entries:
        fields = ("event", "reason", "hour", "commitment")
        assert entry["leaf"] == " ".join(["undersigned-log/v1", *(entry[f] for f in fields)])
        assert entry["hour"].endswith(":00:00Z")
    assert [(e["event"], e["reason"]) for e in entries[12:14]] == [
        ("remove", "withdrawn"),
        ("remove", "duplicate"),
    ]
    assert {e["reason"] for e in entries[:12] + entries[14:]} == {"confirmed"}
    # A removal carries the commitment of the signature it takes away.
    assert [e["commitment"] for e in entries[12:14]] == logged.commitments[:2]
    assert [e["commitment"] for e in entries if e["event"] == "add"] == logged.commitments
    assert logged.unsequenced not in {e["commitment"] for e in entries}

    leaves = [merkle.leaf_hash(entry["leaf"].encode("ascii")) for entry in entries]
    latest = logged.get("checkpoint")
    assert merkle.root(leaves) == base64.b64decode(latest["root_hash"])
    # A middle range is the same entries.
    assert logged.get("entries", start=5, end=9)["entries"] == entries[5:9]


def test_entries_out_of_range_are_json_errors(logged: Logged) -> None:
    _invalid(logged, "entries", "end", start=0, end=18)  # beyond the latest checkpoint
    _invalid(logged, "entries", "end", start=5, end=5)
    _invalid(logged, "entries", "end", start=6, end=5)
    _invalid(logged, "entries", "start", start=-1, end=5)
    _invalid(logged, "entries", "end", start=0, end=0)
    _invalid(logged, "entries", "end", start=0)
    _invalid(logged, "entries", "start", start="a", end=2)
    _invalid(logged, "entries", "end", start=0, end=2**63)


def test_at_most_a_thousand_entries_at_a_time(session: Session) -> None:
    letter = make_letter(session)
    with pytest.raises(InvalidInput) as refused:
        log.entries(session, letter_id=letter.id, start=0, end=1001, size=5000)
    assert "1,000" in refused.value.detail
    assert log.entries(session, letter_id=letter.id, start=4000, end=5000, size=5000) == []


# --- Proofs ---


def test_inclusion_proofs_verify_for_every_entry_and_size(logged: Logged) -> None:
    leaves = _leaf_hashes(logged, 17)
    for size in (1, 2, 5, 12, 13, 17):
        head = merkle.root(leaves[:size])
        for index in range(size):
            proof = logged.get("proof/inclusion", index=index, size=size)
            assert (proof["index"], proof["size"]) == (index, size)
            hashes = [base64.b64decode(value) for value in proof["hashes"]]
            merkle.verify_inclusion(leaves[index], index, size, hashes, head)
            with pytest.raises(merkle.ProofError):  # and for no other entry
                merkle.verify_inclusion(leaves[(index + 1) % 17], index, size, hashes, head)
    # Against the signed root of the past checkpoint.
    past = logged.get("checkpoint", size=12)
    proof = logged.get("proof/inclusion", index=7, size=12)
    merkle.verify_inclusion(
        leaves[7],
        7,
        12,
        [base64.b64decode(value) for value in proof["hashes"]],
        base64.b64decode(past["root_hash"]),
    )


def test_consistency_proofs_verify_between_sizes(logged: Logged) -> None:
    leaves = _leaf_hashes(logged, 17)
    for second in (12, 17):
        for first in range(1, second + 1):
            proof = logged.get("proof/consistency", first=first, second=second)
            assert (proof["first"], proof["second"]) == (first, second)
            hashes = [base64.b64decode(value) for value in proof["hashes"]]
            assert (hashes == []) == (first == second)
            merkle.verify_consistency(
                first, second, merkle.root(leaves[:first]), merkle.root(leaves[:second]), hashes
            )
    # Between the two signed checkpoints; a rewritten first tree fails.
    past, latest = logged.get("checkpoint", size=12), logged.get("checkpoint")
    proof = [base64.b64decode(value) for value in logged.get(
        "proof/consistency", first=12, second=17)["hashes"]]  # fmt: skip
    old, new = base64.b64decode(past["root_hash"]), base64.b64decode(latest["root_hash"])
    merkle.verify_consistency(12, 17, old, new, proof)
    rewritten = merkle.root([merkle.leaf_hash(b"forged"), *leaves[1:12]])
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(12, 17, rewritten, new, proof)


def test_proofs_refuse_values_out_of_range(logged: Logged) -> None:
    _invalid(logged, "proof/inclusion", "index", index=17, size=17)
    _invalid(logged, "proof/inclusion", "index", index=5, size=3)
    _invalid(logged, "proof/inclusion", "size", index=0, size=18)
    _invalid(logged, "proof/inclusion", "size", index=0, size=0)
    _invalid(logged, "proof/inclusion", "index", index=-1, size=3)
    _invalid(logged, "proof/inclusion", "size", index=0)
    _invalid(logged, "proof/consistency", "first", first=0, second=3)
    _invalid(logged, "proof/consistency", "first", first=4, second=3)
    _invalid(logged, "proof/consistency", "second", first=1, second=18)
    _invalid(logged, "proof/consistency", "second", first=1, second="x")


# --- Receipt lookups ---


def test_a_lookup_finds_my_entries_in_a_bucket(logged: Logged) -> None:
    mine = logged.commitments[0]  # confirmed, then withdrawn: two entries
    found = logged.get("lookup", prefix=mine[:3].upper())
    assert found["prefix"] == mine[:3] and found["size"] == 17
    assert found["truncated"] is False
    assert all(entry["commitment"].startswith(mine[:3]) for entry in found["entries"])
    assert [(e["event"], e["reason"]) for e in found["entries"] if e["commitment"] == mine] == [
        ("add", "confirmed"),
        ("remove", "withdrawn"),
    ]
    # The whole log, while it is small enough for an empty prefix.
    everything = logged.get("lookup", prefix="")
    assert [entry["index"] for entry in everything["entries"]] == list(range(17))
    # Only sequenced entries: the late confirmation is not in the log yet.
    assert logged.get("lookup", prefix=logged.unsequenced)["entries"] == []
    _invalid(logged, "lookup", "prefix", prefix="xyz")
    _invalid(logged, "lookup", "prefix", prefix="a" * 65)
    _invalid(logged, "lookup", "prefix")


def test_a_lookup_says_when_it_was_cut(logged: Logged, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "MAX_BUCKET", 5)
    found = logged.get("lookup", prefix="")
    assert found["truncated"] is True
    assert [entry["index"] for entry in found["entries"]] == [0, 1, 2, 3, 4]
    monkeypatch.setattr(log, "MAX_BUCKET", 17)
    assert logged.get("lookup", prefix="")["truncated"] is False


def test_a_big_log_refuses_a_short_prefix(logged: Logged) -> None:
    """A checkpoint of 1,024 entries asks for one hex digit (a bucket of about 64)."""
    with logged.database.write() as session:
        session.add(
            LogCheckpoint(
                letter_id=logged.letter_id,
                size=1024,
                root=bytes(32),
                adds=1024,
                removes=0,
                note="unused",
            )
        )
    assert logged.get("checkpoint")["receipt_prefix"] == 1
    _invalid(logged, "lookup", "prefix", prefix="")
    found = logged.get("lookup", prefix=logged.commitments[2][0])
    assert found["size"] == 1024
    assert logged.commitments[2] in {entry["commitment"] for entry in found["entries"]}


def test_receipt_prefix_keeps_buckets_between_64_and_1024() -> None:
    assert [log.receipt_prefix(size) for size in (0, 1, 1023, 1024, 16383, 16384)] == [
        0,
        0,
        0,
        1,
        1,
        2,
    ]
    for size in (1024, 5000, 16384, 10**6, 10**9):
        digits = log.receipt_prefix(size)
        assert log.BUCKET_TARGET <= size / 16**digits < log.BUCKET_TARGET * 16


def test_the_service_refuses_a_short_or_odd_prefix(session: Session) -> None:
    letter = make_letter(session)
    for prefix, size in (("", 1024), ("a", 16384), ("zz", 10)):
        with pytest.raises(InvalidInput) as refused:
            log.lookup(session, letter_id=letter.id, prefix=prefix, size=size)
        assert "prefix" in refused.value.fields
    assert log.lookup(session, letter_id=letter.id, prefix="ab", size=16384) == ([], False)


# --- Caching and CORS ---


def test_cache_headers_and_not_modified(logged: Logged) -> None:
    base = f"/api/v1/letters/{SLUG}/log"
    latest = logged.client.get(f"{base}/checkpoint")
    assert latest.headers["cache-control"].startswith("public")
    assert "immutable" not in latest.headers["cache-control"]
    etag = latest.headers["etag"]
    again = logged.client.get(f"{base}/checkpoint", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
    # A new checkpoint changes the latest (and its ETag).
    sequence_all(logged.database, logged.settings)
    moved = logged.client.get(f"{base}/checkpoint", headers={"If-None-Match": etag})
    assert moved.status_code == 200
    assert (moved.json()["size"], moved.json()["unsequenced"]) == (18, 0)

    for path, params in (
        ("checkpoint", {"size": 12}),
        ("entries", {"start": 0, "end": 17}),
        ("proof/inclusion", {"index": 3, "size": 12}),
        ("proof/consistency", {"first": 12, "second": 17}),
    ):
        response = logged.client.get(f"{base}/{path}", params=params)
        assert response.status_code == 200
        assert response.headers["cache-control"] == IMMUTABLE, path
        assert "etag" in response.headers, path
        again = logged.client.get(
            f"{base}/{path}", params=params, headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304, path
    lookup = logged.client.get(f"{base}/lookup", params={"prefix": "a"})
    assert lookup.headers["cache-control"].startswith("public")
    assert "immutable" not in lookup.headers["cache-control"]
    # An error is never cached.
    refused = logged.client.get(f"{base}/entries", params={"start": 0, "end": 99})
    assert "immutable" not in refused.headers.get("cache-control", "")


def test_the_public_cache_keeps_the_latest_a_few_seconds(
    clean_database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, clean_database.url, public_cache_seconds=5)
    with clean_database.write() as session:
        make_letter(session, slug=SLUG)
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/api/v1/letters/{SLUG}/log/checkpoint")
        assert "s-maxage=5" in response.headers["cache-control"]


def test_any_site_may_read_the_log(logged: Logged) -> None:
    response = logged.client.get(
        f"/api/v1/letters/{SLUG}/log/entries",
        params={"start": 0, "end": 2},
        headers={"Origin": "https://elsewhere.example"},
    )
    assert response.headers["access-control-allow-origin"] == "*"
    assert "ETag" in response.headers["access-control-expose-headers"]


# --- The schema ---


def test_the_log_routes_are_documented_with_their_bounds(logged: Logged) -> None:
    paths = logged.client.get("/api/v1/openapi.json").json()["paths"]
    base = "/api/v1/letters/{slug}/log"
    expected: dict[str, dict[str, int | None]] = {
        "checkpoint": {"slug": None, "size": 0},
        "entries": {"slug": None, "start": 0, "end": 1},
        "proof/inclusion": {"slug": None, "index": 0, "size": 1},
        "proof/consistency": {"slug": None, "first": 1, "second": 1},
        "lookup": {"slug": None, "prefix": None},
    }
    for route, parameters in expected.items():
        operation = paths[f"{base}/{route}"]["get"]
        documented = {p["name"]: p for p in operation["parameters"]}
        assert set(documented) == set(parameters), route
        for name, minimum in parameters.items():
            if minimum is not None:
                schema = documented[name]["schema"]
                bounds = schema.get("anyOf", [schema])[0]
                assert bounds["minimum"] == minimum, (route, name)
                assert bounds["maximum"] == 2**63 - 1, (route, name)
        assert operation["description"], route
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].startswith("#/components/schemas/"), route
    prefix = {p["name"]: p for p in paths[f"{base}/lookup"]["get"]["parameters"]}["prefix"]
    assert prefix["schema"]["pattern"] == "^[0-9a-fA-F]*$"
    assert prefix["schema"]["maxLength"] == 64
    checkpoint = logged.client.get("/api/v1/openapi.json").json()["components"]["schemas"][
        "CheckpointOut"
    ]
    assert {"note", "key", "receipt_prefix", "unsequenced", "count"} <= set(
        checkpoint["properties"]
    )
