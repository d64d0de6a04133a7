"""/api/v1/openapi.json tells the truth: it describes /api/v1 only, every status each
route can send, and every error as the `ErrorOut` the app really sends.

The slow test runs Schemathesis (its CLI, in a subprocess) against the real app served
by uvicorn on a free loopback port, on SQLite and, when it is configured, PostgreSQL,
with the demo letters, a closed letter and a few verified signers in the database.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.db import Database
from app.letters.demo import create_demo_letters
from app.letters.models import Letter, LetterStatus
from app.signatures.service import verify_signature
from app.signlog.sequencer import sequence_all
from app.signlog.well_known import KEY_PATH
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import make_letter, sign, verify_token
from tests.support.live import serve
from tests.support.ports import free_socket

SCHEMA_PATH = "/api/v1/openapi.json"
ERROR_OUT = "#/components/schemas/ErrorOut"

# Every operation of the API and every status it can send (429 will come with rate
# limits). Schemathesis checks the other direction: nothing undocumented comes back.
OPERATIONS = {
    ("get", "/api/v1/letters"): {"200", "304", "503"},
    ("get", "/api/v1/letters/{slug}"): {"200", "304", "404", "503"},
    ("get", "/api/v1/letters/{slug}/challenge"): {"200", "404", "503"},
    ("get", "/api/v1/letters/{slug}/breakdown"): {"200", "304", "404", "503"},
    ("get", "/api/v1/letters/{slug}/timeline"): {"200", "304", "404", "503"},
    ("get", "/api/v1/letters/{slug}/signatures"): {"200", "304", "404", "422", "503"},
    ("post", "/api/v1/letters/{slug}/signatures"): {"202", "404", "409", "413", "422", "503"},
    ("post", "/api/v1/signatures/verify"): {"200", "400", "409", "413", "422", "503"},
    **{
        ("get", f"/api/v1/letters/{{slug}}/log/{route}"): {"200", "304", "404", "422", "503"}
        for route in ("checkpoint", "entries", "proof/inclusion", "proof/consistency", "lookup")
    },
    ("get", KEY_PATH): {"200"},
}

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
MAX_EXAMPLES = 25  # per operation and phase: about 800 requests, 10 to 25 seconds
TIME_LIMIT = 90.0  # seconds for the whole Schemathesis run; it is killed after that


def _schema(client: TestClient) -> dict[str, Any]:
    response = client.get(SCHEMA_PATH)
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def test_the_schema_lists_exactly_the_api_and_every_status(client: TestClient) -> None:
    paths = _schema(client)["paths"]
    documented = {
        (method, path): set(operation["responses"])
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert documented == OPERATIONS
    # No /healthz, /static, /dev: /api/v1, and the log's key (part of its contract).
    assert all(path.startswith("/api/v1/") for path in set(paths) - {KEY_PATH})


def test_every_error_is_error_out_never_fastapis_validation_error(client: TestClient) -> None:
    schema = _schema(client)
    assert "HTTPValidationError" not in json.dumps(schema)
    assert set(schema["components"]["schemas"]).isdisjoint(
        {"HTTPValidationError", "ValidationError"}
    )
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                where = f"{method.upper()} {path} {status}"
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": ERROR_OUT
                    }, where
                    assert response["description"], where
                else:
                    assert ERROR_OUT not in _refs(response), where


def test_error_out_requires_error_and_detail(client: TestClient) -> None:
    error_out = _schema(client)["components"]["schemas"]["ErrorOut"]
    assert error_out["required"] == ["error", "detail"]
    assert set(error_out["properties"]) == {"error", "detail", "fields", "reason", "expired"}


def test_the_slug_is_documented_with_an_example_that_exists(client: TestClient) -> None:
    operation = _schema(client)["paths"]["/api/v1/letters/{slug}"]["get"]
    [slug] = operation["parameters"]
    assert slug["schema"]["examples"] == ["ice-out"]
    assert slug["schema"]["pattern"] == "^[a-z0-9]+(?:-[a-z0-9]+)*$"


# --- Schemathesis against a live server ---


def _seed(database: Database, settings: Settings) -> None:
    """The demo letters (open), a closed letter (409s), and verified signers on
    `ice-out`, public and anonymous (a signer list with real items), in its log."""
    with database.write() as session:
        create_demo_letters(session)
        make_letter(session, slug="closed-letter", status=LetterStatus.CLOSED)
        letter = session.scalars(select(Letter).where(Letter.slug == "ice-out")).one()
        for person in (
            {"name": "Grace Hopper"},
            {"name": "Hidden Person", "display": "anonymous"},
            {"name": "Bare Name", "title": "", "organization": "", "city": ""},
        ):
            signature = sign(session, letter, settings, **person)
            verify_signature(session, token=verify_token(settings, signature), settings=settings)
    sequence_all(database, settings)  # the signature log of `ice-out` has entries


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live_api(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """The base URL of the real app in uvicorn, with the dev mail backend."""
    if request.param == "postgresql":
        # The run's shared database: emptied before, and after, for the tests to come.
        database: Database = request.getfixturevalue("postgres")
        truncate(database)
    else:
        path = tmp_path / "openapi.db"
        shutil.copy(sqlite_template, path)
        database = Database(f"sqlite:///{path}")
    sock, base_url = free_socket()
    settings = make_settings(tmp_path, database.url, base_url=base_url)
    try:
        _seed(database, settings)
        with serve(sock, settings):
            yield base_url
    finally:
        if request.param == "postgresql":
            truncate(database)
        else:
            database.dispose()


def _statuses_seen(har: Path) -> set[tuple[str, str, int]]:
    """(method, path with the query left off, status) of every request in a HAR file."""
    entries = json.loads(har.read_text())["log"]["entries"]
    seen = set()
    for entry in entries:
        _, api, path = entry["request"]["url"].split("?")[0].partition("/api/")
        seen.add((entry["request"]["method"], api + path, entry["response"]["status"]))
    return seen


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


@pytest.mark.slow
def test_schemathesis_finds_nothing(live_api: str, tmp_path: Path) -> None:
    junit, har = tmp_path / "schemathesis.xml", tmp_path / "schemathesis.har"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{live_api}{SCHEMA_PATH}",
        f"--url={live_api}",
        f"--checks={','.join(CHECKS)}",
        f"--max-examples={MAX_EXAMPLES}",
        "--request-timeout=10",
        "--generation-database=none",  # no example database left behind
        "--report=junit,har",
        f"--report-junit-path={junit}",
        f"--report-har-path={har}",
        "--no-color",
    ]
    started = time.monotonic()
    try:
        result = subprocess.run(  # noqa: S603 (our own command line)
            command,
            cwd=tmp_path,  # so no schemathesis.toml from elsewhere applies
            capture_output=True,
            text=True,
            timeout=TIME_LIMIT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = [_text(exc.stdout), _text(exc.stderr)]
        pytest.fail(f"Schemathesis ran over {TIME_LIMIT} s:\n" + "\n".join(partial))
    output = f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}"
    print(f"Schemathesis took {time.monotonic() - started:.1f} s")

    if result.returncode != 0:
        pytest.fail(output, pytrace=False)
    suite = ElementTree.parse(junit).getroot()  # noqa: S314 (our own report)
    tested = {case.get("name") for case in suite.iter("testcase")}
    operations = {f"{method.upper()} {path}" for method, path in OPERATIONS}
    assert operations <= tested, output
    assert not list(suite.iter("failure")) + list(suite.iter("error")), output
    # The seeded data was reached, not only 404s and 422s.
    seen = _statuses_seen(har)
    assert ("GET", "/api/v1/letters/ice-out", 200) in seen, output
    assert ("GET", "/api/v1/letters/ice-out/log/checkpoint", 200) in seen, output
    assert any(
        method == "POST" and path.endswith("/signatures") and status == 202
        for method, path, status in seen
    ), output
