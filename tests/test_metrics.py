"""`/metrics` (D88) and the request id in logs (D89): who may read it, what it counts
(under route templates, never paths; per letter slug, never an address), the backlog
read at scrape time, and `serve --workers 2` summing its processes' metrics."""

from __future__ import annotations

import json
import logging
import re
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app import logs
from app.config import Settings
from app.db import Database, utcnow
from app.jobs import backlog
from app.main import create_app
from app.redaction import RedactingFilter
from app.signatures.service import notify_pending
from tests.conftest import sqlite_copy
from tests.support.config import make_settings
from tests.support.factories import make_letter, sign, sign_and_confirm
from tests.support.ports import free_port
from tests.support.processes import (
    clean_env,
    console_script,
    run_in_process,
    wait_until_healthy,
)

METRICS_TOKEN = "a-long-random-metrics-token-0123456789"


@pytest.fixture
def sqlite_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    return make_settings(
        tmp_path, sqlite_copy(sqlite_template, tmp_path), metrics_token=METRICS_TOKEN
    )


def _client(settings: Settings, host: str = "127.0.0.1") -> TestClient:
    return TestClient(create_app(settings), base_url="http://testserver", client=(host, 50000))


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_answer_loopback_and_the_bearer_token_only(sqlite_settings: Settings) -> None:
    with _client(sqlite_settings) as local:
        answer = local.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert "undersigned_http_requests_total" in answer.text
        # Through a proxy on this machine, a visitor is not local.
        assert local.get("/metrics", headers={"X-Forwarded-For": "192.0.2.7"}).status_code == 404
        assert "/metrics" not in local.get("/api/v1/openapi.json").text
    with _client(sqlite_settings, host="203.0.113.9") as remote:
        assert remote.get("/metrics").status_code == 404
        wrong = {"Authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"}
        assert remote.get("/metrics", headers=wrong).status_code == 404
        basic = {"Authorization": "Basic " + METRICS_TOKEN}
        assert remote.get("/metrics", headers=basic).status_code == 404
        right = {"Authorization": "Bearer " + METRICS_TOKEN}
        assert remote.get("/metrics", headers=right).status_code == 200


def test_without_a_token_only_loopback_reads_metrics(tmp_path: Path, sqlite_template: Path) -> None:
    settings = make_settings(tmp_path, sqlite_copy(sqlite_template, tmp_path))
    with _client(settings, host="203.0.113.9") as remote:
        assert remote.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_requests_are_counted_under_their_route_template(sqlite_settings: Settings) -> None:
    token = secrets.token_urlsafe(32)
    labels = {"method": "GET", "route": "/verify/{token}"}
    before = _sample("undersigned_http_request_duration_seconds_count", **labels)
    with _client(sqlite_settings) as client:
        client.get(f"/verify/{token}")
        client.get(f"/no-such-page/{token}")
        text = client.get("/metrics").text
    assert _sample("undersigned_http_request_duration_seconds_count", **labels) == before + 1
    assert 'route="/verify/{token}"' in text
    assert 'route="<unmatched>"' in text
    assert token not in text


def test_signatures_and_confirmations_count_per_letter_once_committed(
    sqlite_settings: Settings,
) -> None:
    database = Database(sqlite_settings.database_url)
    try:
        with database.write() as session:
            slug = make_letter(session).slug
        with database.write() as session:
            letter = make_letter(session, slug=f"{slug}-x")
            sign_and_confirm(session, letter, sqlite_settings)
        with pytest.raises(RuntimeError), database.write() as session:  # rolled back
            sign_and_confirm(session, letter, sqlite_settings)
            raise RuntimeError
    finally:
        database.dispose()
    assert _sample("undersigned_signatures_total", letter=letter.slug) == 1
    assert _sample("undersigned_confirmations_total", letter=letter.slug) == 1
    assert _sample("undersigned_signatures_total", letter=slug) == 0
    with _client(sqlite_settings) as client:
        text = client.get("/metrics").text
    assert f'undersigned_confirmations_total{{letter="{letter.slug}"}} 1.0' in text
    assert "@" not in text  # no address in any label


def test_rate_limit_refusals_are_counted_per_limit(tmp_path: Path, sqlite_template: Path) -> None:
    settings = make_settings(
        tmp_path,
        sqlite_copy(sqlite_template, tmp_path),
        rate_limits=True,
        rate_limit_api="2/minute",
    )
    before = _sample("undersigned_rate_limited_total", limit="api")
    with _client(settings) as client:
        statuses = [client.get("/api/v1/letters").status_code for _ in range(4)]
    assert statuses.count(429) == 2
    assert _sample("undersigned_rate_limited_total", limit="api") == before + 2


def test_the_backlog_is_read_at_scrape_time(clean_database: Database, settings: Settings) -> None:
    database = clean_database
    assert backlog(database).worker_lag_seconds == 0
    with database.write() as session:
        letter = make_letter(session)
        sign(session, letter, settings)
    later = utcnow() + timedelta(seconds=90)
    found = backlog(database, now=later)
    assert 89 <= found.worker_lag_seconds <= 91
    assert found.outbox_depth == 0
    with database.write() as session:
        notify_pending(session, settings=settings)  # its email joins the outbox
    found = backlog(database, now=later)
    assert found.worker_lag_seconds == 0
    assert found.outbox_depth == 1
    assert 85 <= found.oldest_due_email_seconds <= 91
    with _client(settings) as client:
        text = client.get("/metrics").text
    assert re.search(r"^undersigned_outbox_depth 1\.0$", text, re.MULTILINE)
    assert re.search(r"^undersigned_worker_lag_seconds 0\.0$", text, re.MULTILINE)
    assert re.search(r"^undersigned_outbox_oldest_due_seconds [0-9.]+$", text, re.MULTILINE)
    assert "undersigned_backlog_up 1.0" in text


def test_each_answer_has_a_request_id_and_a_client_one_only_in_strict_form(
    sqlite_settings: Settings,
) -> None:
    proxy_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    uuid = "123e4567-e89b-12d3-a456-426614174000"
    with _client(sqlite_settings) as client:
        first = client.get("/healthz").headers["x-request-id"]
        second = client.get("/healthz").headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second
        echoed = client.get("/healthz", headers={"X-Request-ID": proxy_id.upper()})
        assert echoed.headers["x-request-id"] == proxy_id
        assert (
            client.get("/healthz", headers={"X-Request-ID": uuid}).headers["x-request-id"] == uuid
        )
        for forged in ("victim@example.org", "x" * 32, proxy_id + "\nINFO forged", "", "1-2"):
            got = client.get("/healthz", headers={"X-Request-ID": forged.replace("\n", " ")})
            assert got.headers["x-request-id"] != forged
            assert re.fullmatch(r"[0-9a-f]{32}", got.headers["x-request-id"])


def _handler(json_lines: bool) -> tuple[logging.Logger, list[str]]:
    """A logger with the handler `log_config` describes (formatter and filters), into
    a list: the process's own logging is left alone."""
    lines: list[str] = []

    class ToList(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ToList()
    handler.addFilter(logs.RequestIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logs.JsonFormatter() if json_lines else logs.TextFormatter())
    logger = logging.getLogger(f"undersigned.test-logs.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, lines


def test_json_logs_are_one_redacted_line_per_event_with_the_request_id() -> None:
    logger, lines = _handler(json_lines=True)
    token = secrets.token_urlsafe(24) + "9"
    reset = logs.REQUEST_ID.set("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    try:
        try:
            raise ValueError(f"no such address victim@example.org\nsecond line /verify/{token}")
        except ValueError:
            logger.exception("could not deliver to %s", "victim@example.org")
    finally:
        logs.REQUEST_ID.reset(reset)
    logger.info("outside a request")
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    entry = json.loads(lines[0])
    assert entry["request_id"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    assert entry["level"] == "ERROR" and "ValueError" in entry["exception"]
    assert "victim@example.org" not in lines[0] and token not in lines[0]
    assert "[address]" in entry["message"]
    assert json.loads(lines[1])["request_id"] == "-"


def test_text_logs_are_one_line_per_event_too() -> None:
    logger, lines = _handler(json_lines=False)
    logger.warning("integrity check:\nletter-1: tally 3, counted 3\nletter-2: ok")
    assert len(lines) == 1 and "\n" not in lines[0]
    assert re.match(r"\S+Z WARNING undersigned\.test-logs\.\w+ \[-\] integrity check:", lines[0])


def test_log_config_redacts_every_logger_through_its_handler() -> None:
    config = logs.log_config(level="info", json_lines=True)
    handler = config["handlers"]["default"]
    assert handler["filters"] == ["request_id", "redact"] and handler["formatter"] == "json"
    assert set(config["loggers"]) >= {"undersigned", "uvicorn.error", "uvicorn.access"}
    assert config["root"]["handlers"] == ["default"]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """`serve --workers 2` with JSON logs, in a real process."""
    directory = tmp_path_factory.mktemp("metrics-serve")
    data_dir = directory / "data"
    stale = data_dir / "metrics" / "counter_999999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from the last run")
    env = clean_env(
        data_dir=str(data_dir),
        database_url=f"sqlite:///{directory / 'site.db'}",
        log_format="json",
    )
    done = run_in_process(["db", "upgrade"], cwd=directory, env=env)
    assert done.returncode == 0, done.stderr
    port = free_port()
    output = directory / "serve.log"
    with output.open("w") as log:
        server = subprocess.Popen(  # noqa: S603
            [console_script(), "serve", "--port", str(port), "--workers", "2", "--no-worker"],
            cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, output.read_text)
        yield url, data_dir, output
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_serve_with_two_workers_sums_their_metrics(two_workers: tuple[str, Path, Path]) -> None:
    url, data_dir, output = two_workers
    for _ in range(40):  # new connections: both processes answer some
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:  # noqa: S310
            assert answer.status == 200
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:  # noqa: S310
        text = answer.read().decode()
    found = re.search(
        r'^undersigned_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert found and float(found.group(1)) >= 40, text[:2000]
    files = {path.name for path in (data_dir / "metrics").glob("*.db")}
    assert "counter_999999.db" not in files  # cleaned at start
    # Multi-process mode: each server process that answered writes its own file (which
    # process accepts a connection is the kernel's choice), and /metrics sums them all.
    assert any(name.startswith("counter_") for name in files), files
    assert "undersigned_outbox_depth 0.0" in text
    # uvicorn's own start-up lines, as JSON, one per line.
    logged = [line for line in output.read_text().splitlines() if line.startswith("{")]
    assert logged and all(json.loads(line)["logger"] for line in logged)
    assert any("Started server process" in json.loads(line)["message"] for line in logged)
