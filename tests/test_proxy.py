"""docs/deploy/nginx.conf, the sample reverse proxy, run for real: nginx with that very
file (ports, paths, certificate and upstream addresses substituted, nothing else) in
front of two real `undersigned serve` processes on SQLite, sharing rate limits in Redis.

It proves: the public pages and the tally API are answered from the proxy's cache on
the second request; a signature signed and confirmed through the proxy (with the
`Origin` / `Sec-Fetch-Site` a browser sends) shows in the count seen through the proxy
within the cache's lifetime plus one refresh; the confirmation page, sign-in and the
dashboard never use the cache, and neither does a request with the session or "thank
you" cookie; the app sees each client's address through X-Forwarded-For from the proxy,
and believes that header from nobody else; the access log holds the request id and no
client address or token.

The cache rules themselves (an answer that sets a cookie, or says private, or says
nothing, is never kept; an unlisted path is never cached) are checked against a stub
upstream that answers exactly the headers under test, so that each rule is proved on
its own rather than through whatever the app happens to send.
"""

from __future__ import annotations

import gzip
import http.client
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from tests.support.config import REPO_ROOT, skip_or_fail
from tests.support.ports import free_port
from tests.support.processes import clean_env, console_script, run_in_process, wait_until_healthy

pytestmark = pytest.mark.slow  # runs nginx and `undersigned serve` in subprocesses

SAMPLE = REPO_ROOT / "docs" / "deploy" / "nginx.conf"
REDIS_URL = "redis://127.0.0.1:6379"
API_LIMIT = 20
"""RATE_LIMIT_API per minute for the served app: the X-Forwarded-For test spends it."""
CACHE_SECONDS = 5
"""PUBLIC_CACHE_SECONDS of the served app (its default, set here to be explicit)."""
CATCH_UP_SECONDS = 35
"""How long a confirmed signature may take to show through the proxy: the app's own
cache and the proxy's (CACHE_SECONDS each), then one background refresh, bounded by
the stale-while-revalidate window (6 times CACHE_SECONDS)."""
TIMEOUT = 30
SLUG = "ice-out"
VERIFY_LINK = re.compile(r"https://127\.0\.0\.1:\d+/verify/([A-Za-z0-9_.\-]+)")
COUNT = re.compile(r"data-live-count>([\d,]+)<")


# --- the sample, as a test variant ---------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        skip_or_fail("nginx is not installed (apt-get install nginx-light)")
    return found


@dataclass
class Ports:
    http: int
    https: int


def sample_variant(prefix: Path, ports: Ports, upstreams: tuple[str, str], tls: Path) -> str:
    """The sample with this machine's ports, files and app servers in place of the
    production ones. Every replaced text must be in the sample (exactly as many times as
    expected), so a sample that drifts from what this test knows fails here loudly."""
    text = SAMPLE.read_text()
    first, second = upstreams
    replacements = [
        ("user www-data;", "user root;", 1),  # the test's files are root's, mode 0700
        ("pid /run/nginx.pid;", f"pid {prefix}/nginx.pid;", 1),
        ("/var/log/nginx/", f"{prefix}/log/", 2),
        ("/var/cache/nginx/", f"{prefix}/cache/", 6),
        ("/var/www/letsencrypt", f"{prefix}/acme", 1),
        ("/etc/letsencrypt/live/letters.example.org/", f"{tls}/", 2),
        ("server 10.0.0.11:8000 ", f"server {first} ", 1),
        ("server 10.0.0.12:8000 ", f"server {second} ", 1),
        ("listen 80;", f"listen 127.0.0.1:{ports.http};", 1),
        ("listen [::]:80;", "", 1),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{ports.https} ssl http2;", 1),
        ("listen [::]:443 ssl http2;", "", 1),
    ]
    for old, new, times in replacements:
        assert text.count(old) == times, f"the sample has {old!r} {text.count(old)} times"
        text = text.replace(old, new)
    for production in ("10.0.0.", "/var/", "/run/", "/etc/letsencrypt"):
        assert production not in text, f"{production} is left in the test variant"
    return text


def make_certificate(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1, as fullchain.pem and privkey.pem."""
    directory.mkdir(mode=0o700)
    subprocess.run(  # noqa: S603
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return directory


@dataclass
class Proxy:
    prefix: Path
    ports: Ports
    context: ssl.SSLContext

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.ports.https}"

    def access_log(self) -> str:
        return (self.prefix / "log" / "access.log").read_text()

    def logged(self, pattern: str) -> bool:
        """Whether a line of the access log matches `pattern`, waiting a moment for it:
        nginx writes the line once the request is over, which may be just after the
        client has read the answer."""
        deadline = time.monotonic() + 5
        while not re.search(pattern, self.access_log()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@contextmanager
def running_nginx(
    prefix: Path, ports: Ports, upstreams: tuple[str, str], tls: Path
) -> Iterator[Proxy]:
    """nginx in the foreground with the test variant of the sample, until the block
    ends."""
    binary = nginx_binary()
    for directory in ("log", "cache", "acme"):
        (prefix / directory).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(sample_variant(prefix, ports, upstreams, tls))
    output = prefix / "nginx.out"
    with output.open("w") as log:
        process = subprocess.Popen(  # noqa: S603
            [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, f"nginx stopped:\n{output.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", ports.https), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"nginx did not start:\n{output.read_text()}"
                time.sleep(0.05)
        context = ssl.create_default_context(cafile=str(tls / "fullchain.pem"))
        yield Proxy(prefix, ports, context)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=TIMEOUT)


# --- requests, as a browser makes them ----------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def cache(self) -> str | None:
        return self.headers.get("X-Cache-Status")

    def json(self) -> object:
        return json.loads(self.body)


def request(
    proxy: Proxy,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source: str = "127.0.0.1",
) -> Reply:
    """One request to the proxy over HTTPS, from `source` (a loopback address: each one
    is another client to the proxy)."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", proxy.ports.https, context=proxy.context, timeout=TIMEOUT,
        source_address=(source, 0),
    )  # fmt: skip
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def direct(port: int, path: str, *, headers: dict[str, str], source: str) -> Reply:
    """One request straight to an app process (plain HTTP), bypassing the proxy."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=TIMEOUT, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def browser_post(proxy: Proxy, path: str, fields: dict[str, str], source: str) -> Reply:
    """A form POST as a current browser sends it from this site's own page: Origin and
    Sec-Fetch-Site, and no cookie (the cached page set none)."""
    from urllib.parse import urlencode

    return request(
        proxy, "POST", path, body=urlencode(fields).encode(), source=source,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": proxy.origin,
            "Sec-Fetch-Site": "same-origin",
            "Sec-Fetch-Mode": "navigate",
        },
    )  # fmt: skip


class _Form(HTMLParser):
    """The hidden inputs of the form posting to `action`."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.found = False
        self.hidden: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.inside = values.get("action") == self.action
            self.found = self.found or self.inside
        elif tag == "input" and self.inside and values.get("type") == "hidden":
            self.hidden[values.get("name", "")] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def hidden_fields(html: str, action: str) -> dict[str, str]:
    parser = _Form(action)
    parser.feed(html)
    assert parser.found, f"no form posting to {action}"
    return parser.hidden


def count_on(html: str) -> int:
    match = COUNT.search(html)
    assert match, "no tally on the page"
    return int(match.group(1).replace(",", ""))


# --- the site: two app processes behind the sample ------------------------------------------


@dataclass
class Site:
    proxy: Proxy
    directory: Path
    app_ports: tuple[int, int]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`db upgrade` and `demo` on SQLite, then two `undersigned serve` processes (one
    with the mail worker and the dev mailbox, one without), rate limits on and shared
    through Redis, TRUSTED_PROXIES the proxy's address; the sample nginx in front."""
    nginx_binary()
    store = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        store.ping()
    except redis.RedisError:
        skip_or_fail(f"no Redis at {REDIS_URL}")
    directory = tmp_path_factory.mktemp("proxy-site")
    tls = make_certificate(directory / "tls")
    https_port = free_port()
    app_ports = (free_port(), free_port())
    prefix = f"undersigned-proxytest-{uuid.uuid4().hex}"
    env = clean_env(
        base_url=f"https://127.0.0.1:{https_port}",
        trusted_proxies="127.0.0.1",
        rate_limit_storage=REDIS_URL,
        rate_limit_key_prefix=prefix,
        rate_limit_api=f"{API_LIMIT}/minute",
        public_cache_seconds=str(CACHE_SECONDS),
        form_min_seconds="0",
        proof_of_work="off",
    )
    for command in (["db", "upgrade"], ["demo"]):
        done = run_in_process(command, cwd=directory, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    servers: list[subprocess.Popen[bytes]] = []
    try:
        outputs = []
        for port, extra in zip(app_ports, ([], ["--no-worker"]), strict=True):
            outputs.append(directory / f"serve-{port}.log")
            with outputs[-1].open("w") as log:
                server = subprocess.Popen(  # noqa: S603
                    [console_script(), "serve", "--port", str(port), *extra],
                    cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            servers.append(server)
        for port, server, output in zip(app_ports, servers, outputs, strict=True):
            wait_until_healthy(f"http://127.0.0.1:{port}", server, output.read_text)
        upstreams = (f"127.0.0.1:{app_ports[0]}", f"127.0.0.1:{app_ports[1]}")
        ports = Ports(free_port(), https_port)
        with running_nginx(directory / "nginx", ports, upstreams, tls) as proxy:
            yield Site(proxy, directory, app_ports)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=TIMEOUT)
        for key in store.scan_iter(f"{prefix}:*"):
            store.delete(key)
        store.close()


def _personal_email(directory: Path, address: str) -> EmailMessage:
    """The newest email to `address` in the dev mailbox, once the worker has put it
    there."""
    mailbox = directory / "var" / "dev-mail"
    deadline = time.monotonic() + TIMEOUT
    while True:
        for path in sorted(mailbox.glob("*.eml"), reverse=True):
            message = message_from_bytes(path.read_bytes(), policy=default_policy)
            assert isinstance(message, EmailMessage)
            if address in str(message["To"]):
                return message
        assert time.monotonic() < deadline, f"no email to {address} in the dev mailbox"
        time.sleep(0.1)


def _tally(site: Site, source: str) -> tuple[int, str | None]:
    reply = request(site.proxy, "GET", f"/api/v1/letters/{SLUG}", source=source)
    assert reply.status == 200, reply.text
    data = reply.json()
    assert isinstance(data, dict)
    return int(data["signature_count"]), reply.cache


# --- public pages: from the proxy's cache ---------------------------------------------------

PUBLIC = ["/", f"/letters/{SLUG}", f"/letters/{SLUG}/signers", "/api/v1/letters",
          f"/api/v1/letters/{SLUG}"]  # fmt: skip


@pytest.mark.parametrize("path", PUBLIC)
def test_public_pages_come_from_the_proxy_cache_the_second_time(site: Site, path: str) -> None:
    # A query of its own: this test's first request cannot find an entry already there.
    url = f"{path}?proxy-test={uuid.uuid4().hex}"
    first = request(site.proxy, "GET", url, source="127.0.0.10")
    second = request(site.proxy, "GET", url, source="127.0.0.11")
    assert (first.status, first.cache) == (200, "MISS")
    assert (second.status, second.cache) == (200, "HIT")
    assert second.body == first.body
    for reply in (first, second):
        assert "Set-Cookie" not in reply.headers
        assert reply.headers["Cache-Control"].startswith("public")
        assert "stale-while-revalidate=" in reply.headers["Cache-Control"]
        assert reply.headers["ETag"]
    # A browser revalidating gets a 304 from the proxy, without the app.
    again = request(site.proxy, "GET", url, headers={"If-None-Match": first.headers["ETag"]})
    assert (again.status, again.cache, again.body) == (304, "HIT", b"")
    # Each answer carries its own request's id (a cached one too), as logged by nginx.
    ids = [reply.headers["X-Request-ID"] for reply in (first, second, again)]
    assert len(set(ids)) == 3
    for request_id in ids:
        assert site.proxy.logged(rf" {request_id} .* cache=(MISS|HIT) ")


def test_the_cache_keeps_a_gzip_and_a_plain_copy(site: Site) -> None:
    url = f"/letters/{SLUG}?proxy-test={uuid.uuid4().hex}"
    browser = {"Accept-Encoding": "gzip, deflate, br, zstd"}
    zipped = [request(site.proxy, "GET", url, headers=browser) for _ in range(2)]
    plain = [request(site.proxy, "GET", url) for _ in range(2)]
    assert [reply.cache for reply in zipped] == ["MISS", "HIT"]
    assert [reply.cache for reply in plain] == ["MISS", "HIT"]
    assert all(reply.headers["Content-Encoding"] == "gzip" for reply in zipped)
    assert all("Content-Encoding" not in reply.headers for reply in plain)
    # The same page, but for the moment its form was rendered (two renders).
    rendered = re.compile(rb'name="form_rendered" value="[^"]*"')
    assert rendered.sub(b"", gzip.decompress(zipped[1].body)) == rendered.sub(b"", plain[1].body)
    assert count_on(plain[1].text) >= 0


def test_the_cache_keeps_each_language_apart(site: Site) -> None:
    """The key holds the page's language as the app chooses it: a Spanish reader never
    gets the English page kept for someone else, and the reverse."""
    url = f"/letters/{SLUG}?proxy-test={uuid.uuid4().hex}"

    def twice(**headers: str) -> list[Reply]:
        return [request(site.proxy, "GET", url, headers=headers) for _ in range(2)]

    english = twice(**{"Accept-Language": "en-US,en;q=0.9"})
    spanish = twice(**{"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    chosen = twice(Cookie="lang=es")
    for replies, lang in ((english, "en"), (spanish, "es"), (chosen, "es")):
        assert [reply.cache for reply in replies] == ["MISS", "HIT"], lang
        for reply in replies:
            assert f'<html lang="{lang}">' in reply.text, lang
            assert reply.headers["Content-Language"] == lang
    # A header that names no Spanish is English: the English entry answers it.
    french = request(site.proxy, "GET", url, headers={"Accept-Language": "fr-FR,fr"})
    assert (french.cache, french.body) == ("HIT", english[1].body)
    # The switcher's link goes to the app (which sets the cookie), never to the cache.
    switched = request(site.proxy, "GET", f"{url}&lang=es")
    assert switched.cache == "BYPASS" and '<html lang="es">' in switched.text
    assert switched.headers["Set-Cookie"].startswith("lang=es;")


def test_static_files_are_cached_for_a_year_under_hashed_names(site: Site) -> None:
    page = request(site.proxy, "GET", f"/letters/{SLUG}").text
    match = re.search(r'href="(/static/[^"]+\.[0-9a-f]{12}\.css)"', page)
    assert match, "no hashed stylesheet on the page"
    replies = [request(site.proxy, "GET", match.group(1)) for _ in range(2)]
    assert [reply.status for reply in replies] == [200, 200]
    assert replies[1].cache == "HIT"
    assert replies[1].headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_plain_http_is_sent_to_https(site: Site) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", site.proxy.ports.http, timeout=TIMEOUT)
    connection.request("GET", f"/letters/{SLUG}?ref=x", headers={"Host": "letters.example.org"})
    response = connection.getresponse()
    assert response.status == 301
    assert response.headers["Location"] == f"https://letters.example.org/letters/{SLUG}?ref=x"
    connection.close()


# --- signing through the proxy; the count catches up ----------------------------------------


def test_a_signature_confirmed_through_the_proxy_shows_in_the_cached_count(site: Site) -> None:
    source = "127.0.0.20"
    before, _ = _tally(site, source)
    assert _tally(site, source)[1] == "HIT"  # the count is now served from the cache

    # Sign on the (cached) page's form, as a browser does: no cookie, Origin and
    # Sec-Fetch-Site. The form carries no per-visitor token.
    page = request(site.proxy, "GET", f"/letters/{SLUG}", source=source)
    assert page.status == 200
    assert "Set-Cookie" not in page.headers
    fields = hidden_fields(page.text, f"/letters/{SLUG}/sign")
    assert "csrf_token" not in fields
    address = f"proxy-{uuid.uuid4().hex[:12]}@example.org"
    signed = browser_post(
        site.proxy, f"/letters/{SLUG}/sign",
        {**fields, "name": "Proxy Tester", "email": address, "display": "public"}, source,
    )  # fmt: skip
    assert signed.status == 303, signed.text
    assert signed.headers["Location"] == f"/letters/{SLUG}/check-email"

    # The confirmation link, from the email the worker delivered.
    body = _personal_email(site.directory, address).get_body(preferencelist=("plain",))
    assert body is not None
    link = VERIFY_LINK.search(body.get_content())
    assert link, "no confirmation link in the email"
    token = link.group(1)
    verify_path = f"/verify/{token}"

    # The confirmation page is personal: never from the cache, never kept.
    pages = [request(site.proxy, "GET", verify_path, source=source) for _ in range(2)]
    for reply in pages:
        assert reply.status == 200
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.cache is None, "the confirmation page went through the cache"
    confirm_fields = hidden_fields(pages[1].text, verify_path)
    confirmed = browser_post(site.proxy, verify_path, confirm_fields, source)
    assert confirmed.status == 303, confirmed.text
    assert confirmed.headers["Location"] == f"/letters/{SLUG}#thanks"
    thanks_cookie = confirmed.headers["Set-Cookie"].split(";")[0]
    assert thanks_cookie.startswith("thanks=")

    # The "thank you" page (its answer deletes the cookie): past the cache both times,
    # and never kept for anyone else.
    for _ in range(2):
        thanks = request(
            site.proxy, "GET", f"/letters/{SLUG}", headers={"Cookie": thanks_cookie}, source=source
        )
        assert thanks.cache == "BYPASS"
        assert "Your signature is confirmed" in thanks.text
        assert "Set-Cookie" in thanks.headers
    anyone = request(site.proxy, "GET", f"/letters/{SLUG}", source="127.0.0.21")
    assert "Your signature is confirmed" not in anyone.text
    assert "Set-Cookie" not in anyone.headers

    # The count seen through the proxy catches up within the cache's lifetime and one
    # refresh; the tally page agrees.
    deadline = time.monotonic() + CATCH_UP_SECONDS
    seen: list[tuple[int, str | None]] = []
    while not seen or seen[-1][0] != before + 1:
        assert time.monotonic() < deadline, f"the count did not catch up: {seen[-5:]}"
        time.sleep(0.25)
        seen.append(_tally(site, source))
    assert {count for count, _ in seen} <= {before, before + 1}
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while (
        count_on(request(site.proxy, "GET", f"/letters/{SLUG}", source=source).text) != before + 1
    ):
        assert time.monotonic() < deadline, "the letter page's count did not catch up"
        time.sleep(0.25)

    # The access log has neither the token nor any client address.
    log = site.proxy.access_log()
    assert token not in log
    assert "/verify/[token]" in log
    assert "127.0.0." not in log


# --- personal pages: never cached ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "cookie"),
    [
        ("/dashboard", ""),
        ("/login", ""),
        (f"/letters/{SLUG}/check-email", ""),
        ("/verify/not-a-real-token", ""),
        ("/signature/not-a-real-token", ""),
        # A cacheable page, asked for by a signed-in organizer (HTTPS: the __Host- name)
        # or with a "thank you" pending: past the cache.
        (f"/letters/{SLUG}", "__Host-session=x"),
        (f"/letters/{SLUG}", "lang=en; thanks=ice-out"),
        ("/api/v1/letters", "__Host-session=x"),
    ],
)
def test_personal_requests_never_use_the_cache(site: Site, path: str, cookie: str) -> None:
    headers = {"Cookie": cookie} if cookie else {}
    replies = [request(site.proxy, "GET", path, headers=headers) for _ in range(3)]
    expected = "BYPASS" if cookie else None  # None: that location has no cache at all
    assert [reply.cache for reply in replies] == [expected] * 3
    # And nothing was kept for the next visitor without the cookie.
    if cookie:
        url = f"{path}?proxy-test={uuid.uuid4().hex}"
        request(site.proxy, "GET", url, headers=headers)
        assert request(site.proxy, "GET", url).cache == "MISS"


def test_metrics_are_not_served_through_the_proxy(site: Site) -> None:
    assert request(site.proxy, "GET", "/metrics").status == 404


# --- the client's address: from the trusted proxy only ---------------------------------------


def test_the_app_counts_clients_behind_the_proxy_by_their_own_address(site: Site) -> None:
    challenge = f"/api/v1/letters/{SLUG}/challenge"  # no-store: every request reaches the app
    first, second = "127.0.0.30", "127.0.0.31"
    statuses = [
        request(site.proxy, "GET", challenge, source=first).status for _ in range(API_LIMIT)
    ]
    assert statuses == [200] * API_LIMIT
    assert request(site.proxy, "GET", challenge, source=first).status == 429
    # Another client behind the same proxy has its own allowance...
    assert request(site.proxy, "GET", challenge, source=second).status == 200
    # ...and the first cannot escape its limit by writing its own X-Forwarded-For: the
    # proxy appends the address it saw, and the app reads from the right.
    forged = {"X-Forwarded-For": "198.51.100.7"}
    assert request(site.proxy, "GET", challenge, headers=forged, source=first).status == 429

    # Straight to the app (not a trusted proxy), X-Forwarded-For is not believed: naming
    # the limited client changes nothing, and naming a new address each time does not
    # buy a new allowance.
    port = site.app_ports[1]
    outsider = "127.0.0.32"
    as_first = {"X-Forwarded-For": first}
    assert direct(port, challenge, headers=as_first, source=outsider).status == 200
    replies = [
        direct(port, challenge, headers={"X-Forwarded-For": f"198.51.100.{n}"}, source=outsider)
        for n in range(API_LIMIT)
    ]
    assert [reply.status for reply in replies] == [200] * (API_LIMIT - 1) + [429]


# --- the cache rules, one at a time, against a stub upstream ---------------------------------


@dataclass
class Stub:
    proxy: Proxy
    hits: Counter[str] = field(default_factory=Counter)


STUB_ANSWERS: dict[str, list[tuple[str, str]]] = {
    "/letters/public": [("Cache-Control", "public, max-age=60")],
    "/letters/sets-cookie": [
        ("Cache-Control", "public, max-age=60"),
        ("Set-Cookie", "x=1; Path=/"),
    ],
    "/letters/private": [("Cache-Control", "private, max-age=60")],
    "/letters/no-store": [("Cache-Control", "no-store")],
    "/letters/no-cache": [("Cache-Control", "public, no-cache")],
    "/letters/silent": [],
    "/letters/public/changes": [("Cache-Control", "public, max-age=60")],  # not a listed path
    "/dashboard/public": [("Cache-Control", "public, max-age=60")],
}


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    """The sample in front of a stub that answers STUB_ANSWERS' headers and counts the
    requests that reach it."""
    hits: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            hits[self.path] += 1
            body = f"{self.path} #{hits[self.path]}".encode()
            self.send_response(200 if path in STUB_ANSWERS else 404)
            for name, value in STUB_ANSWERS.get(path, []):
                self.send_header(name, value)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    directory = tmp_path_factory.mktemp("proxy-stub")
    tls = make_certificate(directory / "tls")
    upstream = f"127.0.0.1:{server.server_address[1]}"
    try:
        ports = Ports(free_port(), free_port())
        with running_nginx(directory / "nginx", ports, (upstream, upstream), tls) as proxy:
            yield Stub(proxy, hits)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/letters/public", True),  # the control: the same path rules, kept
        ("/letters/sets-cookie", False),
        ("/letters/private", False),
        ("/letters/no-store", False),
        ("/letters/no-cache", False),
        ("/letters/silent", False),  # no Cache-Control: nginx is never the one to decide
        ("/letters/public/changes", False),
        ("/dashboard/public", False),
    ],
)
def test_the_proxy_keeps_only_what_the_app_calls_public(stub: Stub, path: str, kept: bool) -> None:
    url = f"{path}?n={uuid.uuid4().hex}"
    replies = [request(stub.proxy, "GET", url) for _ in range(2)]
    assert [reply.status for reply in replies] == [200, 200]
    assert stub.hits[url] == (1 if kept else 2)
    assert replies[1].body == f"{url} #1".encode() if kept else f"{url} #2".encode()
    if kept:
        assert [reply.cache for reply in replies] == ["MISS", "HIT"]
    else:
        assert replies[1].cache != "HIT"


@pytest.mark.parametrize(
    "cookie", ["session=x", "__Host-session=x", "csrf=x", "__Host-csrf=x", "a=1; thanks=ice-out"]
)
def test_a_request_with_a_personal_cookie_is_not_answered_from_nor_kept_in_the_cache(
    stub: Stub, cookie: str
) -> None:
    url = f"/letters/public?n={uuid.uuid4().hex}"
    assert request(stub.proxy, "GET", url).cache == "MISS"
    personal = request(stub.proxy, "GET", url, headers={"Cookie": cookie})
    assert personal.cache == "BYPASS"
    assert stub.hits[url] == 2
    # Not kept either: a new path asked with the cookie first, then without.
    fresh = f"/letters/public?n={uuid.uuid4().hex}"
    assert request(stub.proxy, "GET", fresh, headers={"Cookie": cookie}).cache == "BYPASS"
    assert request(stub.proxy, "GET", fresh).cache == "MISS"


def test_other_cookies_do_not_bypass_the_cache(stub: Stub) -> None:
    url = f"/letters/public?n={uuid.uuid4().hex}"
    request(stub.proxy, "GET", url)
    other = request(
        stub.proxy, "GET", url, headers={"Cookie": "lang=en; mysession=1; thanksgiving=1"}
    )
    assert other.cache == "HIT"
