"""The dev mailbox shows every confirmation link: this machine only, never cached."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response

from app.config import MailBackend, Settings
from app.main import create_app
from tests.support.config import make_settings
from tests.web.flows import add_letter, deliver, post_sign_form

LOOPBACK = [("127.0.0.1", 50000), ("127.8.9.10", 50000), ("::1", 50000), ("::ffff:127.0.0.1", 1)]
ELSEWHERE = [
    ("203.0.113.7", 50000),  # the internet
    ("10.0.0.5", 50000),  # the local network
    ("::ffff:203.0.113.7", 50000),
    ("2001:db8::1", 50000),
    ("testclient", 50000),  # not an address at all
    ("localhost", 50000),  # a name (from a forwarding header), not a loopback address
]
PROXY_HEADERS = [
    {"x-forwarded-for": "203.0.113.9"},
    {"x-forwarded-for": "127.0.0.1"},
    {"forwarded": "for=203.0.113.9"},
    {"x-real-ip": "203.0.113.9"},
    {"via": "1.1 proxy"},
]


@pytest.fixture
def with_mail(app: FastAPI, client: TestClient) -> FastAPI:
    """A confirmation email (with its live link) in the dev mailbox."""
    add_letter(app, slug="ice-out")
    post_sign_form(client, "ice-out")
    assert deliver(app) == 1
    return app


def _comparable(response: Response) -> tuple[int, str, dict[str, str]]:
    # The request id is random for every answer: it tells nothing.
    ignored = ("date", "content-length", "x-request-id")
    headers = {k: v for k, v in response.headers.items() if k not in ignored}
    return response.status_code, response.text, headers


def _not_there(tmp_path: Path, app_settings: Settings, method: str, path: str) -> Response:
    """The answer of an app that has no dev mailbox at all (SMTP backend)."""
    settings = make_settings(tmp_path, app_settings.database_url, mail_backend=MailBackend.SMTP)
    return TestClient(create_app(settings)).request(method, path)


@pytest.mark.parametrize("client_address", LOOPBACK)
def test_this_machine_sees_the_mailbox_and_nothing_caches_it(
    with_mail: FastAPI, client_address: tuple[str, int]
) -> None:
    response = TestClient(with_mail, client=client_address).get("/dev/mail")
    assert response.status_code == 200
    assert "/verify/" in response.text
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("client_address", ELSEWHERE)
def test_another_machine_gets_the_404_of_a_page_that_does_not_exist(
    with_mail: FastAPI, tmp_path: Path, app_settings: Settings, client_address: tuple[str, int]
) -> None:
    outsider = TestClient(with_mail, client=client_address)
    for method, path in (("GET", "/dev/mail"), ("POST", "/dev/mail"), ("GET", "/dev/mail/")):
        response = outsider.request(method, path, follow_redirects=False)
        assert "/verify/" not in response.text
        assert _comparable(response) == _comparable(
            _not_there(tmp_path, app_settings, method, path)
        ), (method, path)


@pytest.mark.parametrize("headers", PROXY_HEADERS)
def test_a_request_through_a_proxy_is_not_this_machine(
    with_mail: FastAPI, headers: dict[str, str]
) -> None:
    """A reverse proxy on the same machine connects from loopback for everyone."""
    response = TestClient(with_mail, client=("127.0.0.1", 50000)).get("/dev/mail", headers=headers)
    assert response.status_code == 404
    assert "/verify/" not in response.text
