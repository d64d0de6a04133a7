"""The machinery of tests/test_surge.py: real `undersigned` processes (app servers and
mail workers) that can be SIGKILLed and restarted, a recording SMTP server with one
port ("door") per worker, and a client that spreads requests over the app processes and
fails over to another one when a connection fails, as a load balancer would.

Nothing here judges the end state: the test decides what the records must say.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import itertools
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, Literal

import httpx2 as httpx
from aiosmtpd.controller import Controller

from tests.support.ports import free_port
from tests.support.processes import clean_env, console_script, healthy

HOST = "127.0.0.1"

# --- The SMTP server ---------------------------------------------------------------------

Kind = Literal["verify", "already_signed"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message the server accepted (answered 250 to)."""

    door: str
    """The port (named after the worker sending through it) it arrived on."""
    message_id: str
    to: str
    kind: Kind
    verify_token: str | None
    manage_token: str | None


@dataclass
class Tripwire:
    """Kills a worker from inside the DATA handler, before the server answers: the
    message is then not delivered (no 250), by SMTP's rules."""

    door: str
    after: int
    """Fires on the first DATA at `door` once that door has accepted this many."""
    action: Callable[[], None]
    """Blocks until the worker is dead."""
    fired: threading.Event = field(default_factory=threading.Event)
    refused_message_id: str = ""


class Inbox:
    """What a loopback SMTP server accepted, across several doors (ports), parsed: the
    recipient, the Message-ID and the links a signer would follow. A listener on an
    asyncio loop hears about each delivery as it is accepted."""

    def __init__(self, base_url: str) -> None:
        self._lock = threading.Lock()
        self.deliveries: list[Delivery] = []
        self._accepted_at: Counter[str] = Counter()
        self._tripwires: list[Tripwire] = []
        self._listener: tuple[asyncio.AbstractEventLoop, Callable[[Delivery], None]] | None = None
        self._verify = re.compile(re.escape(base_url) + r"/verify/([A-Za-z0-9_.\-]+)")
        self._manage = re.compile(re.escape(base_url) + r"/signature/([A-Za-z0-9_.\-]+)")
        self._parser = BytesParser(policy=policy.default)

    def listen(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[[Delivery], None] | None
    ) -> None:
        """`callback(delivery)` runs on `loop` for every delivery from now on (None: stop)."""
        with self._lock:
            self._listener = (loop, callback) if callback is not None else None

    def trip(self, tripwire: Tripwire) -> Tripwire:
        with self._lock:
            self._tripwires.append(tripwire)
        return tripwire

    def at(self, door: str) -> list[Delivery]:
        with self._lock:
            return [delivery for delivery in self.deliveries if delivery.door == door]

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def accept(self, door: str, content: bytes) -> str:
        """The reply to the end of DATA (on the door's event-loop thread)."""
        delivery = self._parse(door, content)
        with self._lock:
            due = [t for t in self._tripwires if t.door == door and not t.fired.is_set()]
            tripwire = next((t for t in due if self._accepted_at[door] >= t.after), None)
        if tripwire is not None:
            tripwire.refused_message_id = delivery.message_id
            tripwire.action()  # the sending worker dies before any reply
            tripwire.fired.set()
            return "451 4.3.0 Not accepted"  # to a client that is gone: nobody reads it
        with self._lock:
            self.deliveries.append(delivery)
            self._accepted_at[door] += 1
            listener = self._listener
        if listener is not None:
            loop, callback = listener
            with contextlib.suppress(RuntimeError):  # a closed loop: the record stays
                loop.call_soon_threadsafe(callback, delivery)
        return "250 Message accepted for delivery"

    def _parse(self, door: str, content: bytes) -> Delivery:
        """The header fields and links, read straight from the bytes (parsing the
        whole MIME message costs a few milliseconds a message, more than all the rest
        of the server's work); the full parse when the text is not quoted-printable."""
        head = content.partition(b"\r\n\r\n")[0]
        to, message_id = _TO.search(head), _MESSAGE_ID.search(head)
        assert to and message_id, "a message without To or Message-ID"
        text = binascii.a2b_qp(content).decode("utf-8", "replace")
        verify, manage = self._verify.search(text), self._manage.search(text)
        if manage is None:  # every email here carries a manage link: decode it properly
            message = self._parser.parsebytes(content)
            assert isinstance(message, EmailMessage)
            body = message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            verify, manage = self._verify.search(text), self._manage.search(text)
        return Delivery(
            door=door,
            message_id=message_id.group(1).decode(),
            to=to.group(1).decode().strip(),
            kind="verify" if verify else "already_signed",
            verify_token=verify.group(1) if verify else None,
            manage_token=manage.group(1) if manage else None,
        )


_TO = re.compile(rb"^To:\s*(.+?)\r?$", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class _Door:
    """aiosmtpd's handler for one port: RCPT as aiosmtpd does by default, DATA to the
    inbox."""

    def __init__(self, inbox: Inbox, name: str) -> None:
        self.inbox, self.name = inbox, name

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self.inbox.accept(self.name, bytes(envelope.content))


@contextmanager
def smtp_doors(inbox: Inbox, *names: str) -> Iterator[dict[str, int]]:
    """One SMTP server per name, on its own loopback port, all recording into `inbox`;
    yields name -> port."""
    controllers: list[Controller] = []
    ports: dict[str, int] = {}
    try:
        for name in names:
            ports[name] = free_port()
            controller = Controller(_Door(inbox, name), hostname=HOST, port=ports[name])
            controller.start()
            controllers.append(controller)
        yield ports
    finally:
        for controller in controllers:
            controller.stop()


# --- Processes ---------------------------------------------------------------------------


class Process:
    """One `undersigned` process of the test's own (its own session: a signal sent to
    it reaches nothing else); output appended to `log` across restarts."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], cwd: Path) -> None:
        self.name, self.args, self.env, self.cwd = name, args, env, cwd
        self.log = cwd / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []
        """Exit statuses of earlier runs (a SIGKILL is -9)."""

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [console_script(), *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """CPU time used by the running process so far (0 once it has stopped)."""
        return cpu_seconds(self.pid) if self.alive() else 0.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        assert self.proc is not None and self.alive(), f"{self.name} is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.exits.append(self.proc.wait(timeout=30))

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL if it does not stop within 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.exits.append(self.proc.returncode)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").splitlines()
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text[-lines:])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class App(Process):
    def __init__(self, name: str, *, port: int, env: dict[str, str], cwd: Path) -> None:
        args = ["serve", "--no-worker", "--host", HOST, "--port", str(port)]
        super().__init__(name, args, env=env, cwd=cwd)
        self.url = f"http://{HOST}:{port}"

    def wait_healthy(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not healthy(self.url):
            assert self.alive(), f"{self.name} stopped:\n{self.tail()}"
            assert time.monotonic() < deadline, f"{self.name} did not start:\n{self.tail()}"
            time.sleep(0.1)


def surge_env(
    *, database_url: str, secret_key: str, base_url: str, data_dir: Path, smtp_port: int, pool: int
) -> dict[str, str]:
    """The settings every process of a surge shares (each worker its own SMTP door).

    Without coverage tracing: it would double the CPU of five processes, and every path
    they run is covered by the other tests. The public cache is off: the counts read at
    the end must be exact at once, not up to PUBLIC_CACHE_SECONDS old."""
    return clean_env(
        drop=NO_COVERAGE,
        database_url=database_url,
        secret_key=secret_key,
        base_url=base_url,
        data_dir=str(data_dir),
        mail_backend="smtp",
        smtp_host=HOST,
        smtp_port=str(smtp_port),
        smtp_timeout_seconds="10",
        rate_limits="off",
        proof_of_work="off",
        database_pool_size=str(pool),
        log_level="warning",
        public_cache_seconds="0",
    )


NO_COVERAGE = (
    "COVERAGE_PROCESS_START",
    "COVERAGE_PROCESS_CONFIG",
    "COV_CORE_SOURCE",
    "COV_CORE_CONFIG",
    "COV_CORE_DATAFILE",
    "COV_CORE_BRANCH",
    "COV_CORE_CONTEXT",
)


# --- The client ----------------------------------------------------------------------------


class NoCookies(DefaultCookiePolicy):
    """Thousands of signers share one client here: each keeps its own cookie by hand."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False


@dataclass
class Traffic:
    """What the balancer saw."""

    requests: int = 0
    failed_over: int = 0
    """Attempts whose connection failed, retried on another process."""
    maybe_processed: int = 0
    """Of those, the ones that failed after the request was sent (it may have been done)."""
    busy: int = 0
    """503 answers (the process's database pool was full), retried."""


class Balancer:
    """Spreads requests over the app processes (`prefer` picks one); a request whose
    connection fails goes to the next process, as a load balancer would retry it. A 503
    (no database connection free within 5 s: nothing was done) is retried too. Returns
    the response and whether an earlier attempt may have been processed."""

    def __init__(self, urls: list[str], *, connections: int, deadline_seconds: float) -> None:
        per = max(1, connections // len(urls))
        limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        self.clients = [
            httpx.AsyncClient(
                base_url=url,
                limits=limits,
                timeout=httpx.Timeout(60.0, pool=None),
                cookies=CookieJar(NoCookies()),
                trust_env=False,  # loopback only: no proxy from the environment
            )
            for url in urls
        ]
        # Requests queue here, not in httpx's pool (which rescans its whole queue each
        # time a connection frees up: thousands of waiting requests cost seconds).
        self.slots = [asyncio.Semaphore(per) for _ in urls]
        self.deadline_seconds = deadline_seconds
        self.traffic = Traffic()

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def request(
        self, method: str, path: str, *, prefer: int, **kwargs: Any
    ) -> tuple[httpx.Response, bool]:
        deadline: float | None = None  # retries stop this long after the first failure
        maybe_done = False
        for attempt in itertools.count():
            which = (prefer + attempt) % len(self.clients)
            self.traffic.requests += 1
            try:
                async with self.slots[which]:
                    response = await self.clients[which].request(method, path, **kwargs)
            except httpx.TransportError as exc:
                self.traffic.failed_over += 1
                if not isinstance(exc, httpx.ConnectError):
                    maybe_done = True  # sent, then the connection broke
                    self.traffic.maybe_processed += 1
                deadline = deadline or time.monotonic() + self.deadline_seconds
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05 * min(attempt, 10))
                continue
            if response.status_code == 503:
                self.traffic.busy += 1
                deadline = deadline or time.monotonic() + self.deadline_seconds
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    continue
            return response, maybe_done
        raise AssertionError("unreachable")


_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def cookie_header(response: httpx.Response) -> str:
    """The cookies a response sets, as a `Cookie` header to send back."""
    pairs = [value.split(";", 1)[0] for value in response.headers.get_list("set-cookie")]
    return "; ".join(pairs)


def csrf_input(html: str) -> str:
    """The page's CSRF token, if it renders one (a browser's `Sec-Fetch-Site` is
    enough where it does not)."""
    match = _CSRF_INPUT.search(html)
    return match.group(1) if match else ""


class Mailboxes:
    """Each address's deliveries as they arrive, on the asyncio loop: a signer waits for
    the n-th email to their address."""

    def __init__(self) -> None:
        self.by_address: dict[str, list[Delivery]] = {}
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self.last_arrival = time.monotonic()

    def arrived(self, delivery: Delivery) -> None:
        self.last_arrival = time.monotonic()
        box = self.by_address.setdefault(delivery.to, [])
        box.append(delivery)
        waiting = self._waiters.get(delivery.to, [])
        for count, future in list(waiting):
            if len(box) >= count and not future.done():
                future.set_result(None)
                waiting.remove((count, future))

    async def wait(self, address: str, count: int, *, stall: float) -> list[Delivery]:
        """The address's first `count` (or more) deliveries, once they have arrived.
        However long the queue ahead is, it must move: AssertionError once no email at
        all has arrived for `stall` seconds."""
        box = self.by_address.setdefault(address, [])
        if len(box) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(address, []).append((count, future))
            while not future.done():
                await asyncio.wait({future}, timeout=5)
                quiet = time.monotonic() - self.last_arrival
                if not future.done() and quiet > stall:
                    raise AssertionError(
                        f"{len(box)} of {count} emails to one signer, and no email at all "
                        f"for {quiet:.0f} s"
                    )
        return list(box)
