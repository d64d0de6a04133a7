"""What is measured: the demo letters and eight more, the bare/tally/page GETs, signing
and confirming, the hot counter, and the tally check at the end. See bench/__init__.py
for the why."""

from __future__ import annotations

import collections
import itertools
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

import httpx2 as httpx
from sqlalchemy import func, select

from app import tokens
from app.db import Database
from app.letters.models import Letter
from app.letters.service import signature_count
from app.models import import_all
from app.signatures.models import PendingSignature, PendingState, Signature, SignatureStatus
from bench.load import (
    Phase,
    Result,
    Send,
    get,
    python_phase,
    wrk_confirm,
    wrk_get,
    wrk_sign,
)
from bench.memory import cpu_seconds
from bench.report import progress
from bench.servers import Deployment, Server

SLUG = "ice-out"
HOT_LETTERS = tuple(f"bench-hot-{n}" for n in range(1, 9))
"""The hot-counter letters: confirmations against the first alone, then spread over all."""
MAX_REQUESTS = 200_000  # per phase; far above what 2 cores serve in a phase

import_all()  # every mapper known before the bench's own queries


@dataclass(frozen=True)
class Load:
    """How every phase is driven (from the command line)."""

    client: str  # "wrk" or "python", for every phase
    concurrency: int  # connections for the GETs
    write_concurrency: int  # connections for signing and confirming
    hot_concurrency: int  # connections for the hot-counter confirmations
    duration: int  # seconds per measured phase
    warmup: int  # seconds of unmeasured warm-up per phase


def seed(site: Deployment) -> None:
    """The demo letters (`undersigned demo`), among them SLUG, and the hot-counter
    letters, created and published with `undersigned letter create --publish`."""
    site.undersigned("demo")
    body = site.tmp / "hot-letter.md"
    body.write_text("# A letter\n\nWe ask for something reasonable.\n", encoding="utf-8")
    for slug in HOT_LETTERS:
        site.undersigned(
            "letter", "create", "--slug", slug, "--title", f"Hot counter {slug}",
            "--body-file", str(body), "--publish",
        )  # fmt: skip


# --- phases, by either client ----------------------------------------------------------


def with_cpu(server: Server, run: Callable[[], Phase]) -> Phase:
    """Runs one measured phase and notes the CPU seconds the server's processes (uvicorn's
    parent and its workers) spent during it."""
    root = server.proc.pid if server.proc is not None else None
    before = cpu_seconds(root) if root is not None else None
    phase = run()
    if root is not None and before is not None:
        phase.cpu = cpu_seconds(root) - before
    return phase


def measure_get(server: Server, path: str, load: Load) -> Phase:
    if load.client == "wrk":
        return wrk_get(
            server.url + path,
            connections=load.concurrency,
            duration=load.duration,
            max_requests=MAX_REQUESTS,
            warmup=load.warmup,
        )
    return python_phase(
        get(path),
        base_url=server.url,
        concurrency=load.concurrency,
        duration=load.duration,
        max_requests=MAX_REQUESTS,
        warmup=load.warmup,
    )


def sign(
    app: Server, prefix: str, slugs: Sequence[str], *, connections: int, seconds: float, load: Load
) -> Phase:
    """Signs unique addresses `{prefix}-...@example.org` for `seconds`, round-robin
    over `slugs`."""
    if load.client == "wrk":
        return wrk_sign(
            app.url,
            prefix=prefix,
            slugs=slugs,
            connections=connections,
            duration=seconds,
            max_requests=MAX_REQUESTS,
        )
    return python_phase(
        signer(prefix, slugs),
        base_url=app.url,
        concurrency=connections,
        duration=seconds,
        max_requests=MAX_REQUESTS,
    )


def confirm(
    app: Server, queue: Sequence[str], *, connections: int, bound: float, load: Load
) -> Phase:
    """Confirms each token of `queue` once; ends when they are all answered (or after
    `bound` seconds: then `Phase.left` says how many were not)."""
    if load.client == "wrk":
        return wrk_confirm(app.url, queue, connections=connections, bound=bound)
    todo = collections.deque(queue)
    phase = python_phase(
        verifier(todo),
        base_url=app.url,
        concurrency=connections,
        duration=bound,
        max_requests=MAX_REQUESTS,
    )
    phase.left = len(todo)
    return phase


def signer(prefix: str, slugs: Sequence[str]) -> Send:
    """The Python client's signer: a unique signature per call, `{prefix}-n{n}@...`."""
    counter = itertools.count(1)

    def send(client: httpx.AsyncClient) -> Awaitable[int]:
        n = next(counter)
        slug = slugs[(n - 1) % len(slugs)]
        body = {
            "name": f"Bench Signer n{n}",
            "email": f"{prefix}-n{n}@example.org",
            "title": "Engineer",
            "organization": "Loopback Labs",
            "city": "127.0.0.1",
            "display": "anonymous" if n % 4 == 0 else "public",
            "contact_ok": n % 3 == 0,
        }

        async def go() -> int:
            response = await client.post(f"/api/v1/letters/{slug}/signatures", json=body)
            return response.status_code

        return go()

    return send


def verifier(queue: collections.deque[str]) -> Send:
    """Confirms each token of `queue` once; None (out of work) when it is empty."""

    def send(client: httpx.AsyncClient) -> Awaitable[int] | None:
        if not queue:
            return None
        token = queue.popleft()

        async def go() -> int:
            response = await client.post("/api/v1/signatures/verify", json={"token": token})
            return response.status_code

        return go()

    return send


def confirmation_tokens(database: Database, secret_key: str, prefix: str) -> list[str]:
    """The tokens of the waiting signatures whose address starts with `prefix-`,
    computed from their public ids as tests/support/factories.py `verify_token` does
    (no mail worker, no email parsing), taking the letters in turn (round-robin) so
    that consecutive confirmations hit different letters when there are several."""
    with database.read() as session:
        rows = session.execute(
            select(PendingSignature.letter_id, PendingSignature.public_id)
            .where(
                PendingSignature.state == PendingState.WAITING,
                PendingSignature.email.like(prefix + "-%"),
            )
            .order_by(PendingSignature.id)
        ).all()
    by_letter: dict[int, list[str]] = collections.defaultdict(list)
    for letter_id, public_id in rows:
        by_letter[letter_id].append(
            tokens.issue(secret_key, tokens.Purpose.SIGNATURE_VERIFY, public_id)
        )
    turns = itertools.zip_longest(*by_letter.values())
    return [token for turn in turns for token in turn if token is not None]


# --- the scenarios -----------------------------------------------------------------------


def sign_and_confirm(site: Deployment, app: Server, prefix: str, load: Load) -> tuple[Phase, Phase]:
    """Signs unique addresses for the warm-up then for `duration` (measured); computes
    the tokens from the database; confirms the warm-up's (unmeasured), then each
    measured one once, bounded by count and time."""
    connections = load.write_concurrency
    if load.warmup:
        sign(app, f"{prefix}-w", [SLUG], connections=connections, seconds=load.warmup, load=load)
    signed = with_cpu(
        app,
        lambda: sign(
            app, f"{prefix}-m", [SLUG], connections=connections, seconds=load.duration, load=load
        ),
    )
    warm = confirmation_tokens(site.database, site.secret_key, f"{prefix}-w")
    measured = confirmation_tokens(site.database, site.secret_key, f"{prefix}-m")
    if warm:
        confirm(
            app, warm, connections=connections, bound=max(load.warmup, 2 * load.duration), load=load
        )
    confirmed = with_cpu(
        app,
        lambda: confirm(
            app, measured, connections=connections, bound=max(3 * load.duration, 30), load=load
        ),
    )
    if confirmed.left:
        progress(f"  note: {confirmed.left} of {len(measured)} tokens not confirmed in time")
    return signed, confirmed


def hot_counter(
    site: Deployment, app: Server, prefix: str, load: Load, *, one_first: bool
) -> tuple[Phase, Phase, int]:
    """Confirmations against ONE letter vs the same number spread over eight, at
    `hot_concurrency` connections: signs for `duration` on HOT_LETTERS[0] and for
    `duration` over all eight (unmeasured), keeps the same number of tokens of each,
    then confirms both sets (in the order `one_first` says; rounds alternate it).
    Returns (one letter, eight letters, confirmations each)."""
    connections = load.hot_concurrency
    sign(
        app,
        f"{prefix}-one",
        HOT_LETTERS[:1],
        connections=connections,
        seconds=load.duration,
        load=load,
    )
    sign(
        app, f"{prefix}-all", HOT_LETTERS, connections=connections, seconds=load.duration, load=load
    )
    one = confirmation_tokens(site.database, site.secret_key, f"{prefix}-one")
    spread = confirmation_tokens(site.database, site.secret_key, f"{prefix}-all")
    n = min(len(one), len(spread))
    bound = max(3 * load.duration, 30)
    phases: dict[str, Phase] = {}
    order = [("one", one[:n]), ("all", spread[:n])]
    for key, queue in order if one_first else order[::-1]:
        phases[key] = with_cpu(
            app, partial(confirm, app, queue, connections=connections, bound=bound, load=load)
        )
        if phases[key].left:
            progress(
                f"  note: hot counter ({key}): {phases[key].left} of {n} not confirmed in time"
            )
    return phases["one"], phases["all"], n


# --- the rounds ----------------------------------------------------------------------


def measure(
    site: Deployment, app: Server, bare: Server, *, rounds: int, load: Load
) -> dict[str, Result]:
    """Every scenario once per round, interleaved, so that drift in the machine's load
    hits all of them alike. Keys: bare, tally, page, sign, confirm, sign+confirm,
    hot-one, hot-all."""
    run_id = secrets.token_hex(3)
    results: dict[str, Result] = collections.defaultdict(Result)
    for round_no in range(1, rounds + 1):
        line = [f"  round {round_no}/{rounds}:"]
        for key, server, path in (
            ("bare", bare, "/bare"),
            ("tally", app, f"/api/v1/letters/{SLUG}"),
            ("page", app, f"/letters/{SLUG}"),
        ):
            phase = with_cpu(server, partial(measure_get, server, path, load))
            results[key].phases.append(phase)
            line.append(f"{key} {phase.rps:.0f}/s")
        signed, confirmed = sign_and_confirm(site, app, f"bench-{run_id}-r{round_no}", load)
        results["sign"].phases.append(signed)
        results["confirm"].phases.append(confirmed)
        results["sign+confirm"].phases.extend([signed, confirmed])
        line.append(f"sign {signed.rps:.0f}/s confirm {confirmed.rps:.0f}/s")
        one, spread, n = hot_counter(
            site, app, f"bench-{run_id}-h{round_no}", load, one_first=round_no % 2 == 1
        )
        results["hot-one"].phases.append(one)
        results["hot-all"].phases.append(spread)
        line.append(f"hot: 1 letter {one.rps:.0f}/s, 8 letters {spread.rps:.0f}/s ({n} each)")
        progress(" ".join(line))
    return results


# --- the tally check -------------------------------------------------------------------


@dataclass(frozen=True)
class LetterTally:
    slug: str
    counter: int  # the app's count (the letter's counter)
    verified: int  # count(*) of its verified signatures
    api: int | None  # the API's signature_count (None: not public, e.g. a draft)

    @property
    def ok(self) -> bool:
        return self.counter == self.verified and self.api in (None, self.counter)


@dataclass(frozen=True)
class TallyCheck:
    letters: list[LetterTally]
    pending: int  # pending signatures left (all letters)

    @property
    def ok(self) -> bool:
        return bool(self.letters) and all(t.ok for t in self.letters)

    def __str__(self) -> str:
        wrong = [t for t in self.letters if not t.ok]
        total = sum(t.counter for t in self.letters)
        head = (
            f"{len(self.letters)} letters, counters {total} in all = verified rows = API "
            f"signature_count on each"
            if not wrong
            else "MISMATCH: "
            + "; ".join(
                f"{t.slug}: counter {t.counter}, rows {t.verified}, API {t.api}" for t in wrong
            )
        )
        return f"{head}; still pending {self.pending}: {'OK, equal' if self.ok else 'MISMATCH'}"


def check_tally(site: Deployment, app: Server) -> TallyCheck:
    """For every letter: its counter (as the app reads it), count(*) of its verified
    signatures and the API's signature_count must be equal."""
    with site.database.read() as session:
        letters = session.execute(select(Letter.id, Letter.slug).order_by(Letter.id)).all()
        counts = {
            letter_id: (
                signature_count(session, letter_id=letter_id),
                session.execute(
                    select(func.count())
                    .select_from(Signature)
                    .where(
                        Signature.letter_id == letter_id,
                        Signature.status == SignatureStatus.VERIFIED,
                    )
                ).scalar_one(),
            )
            for letter_id, _ in letters
        }
        pending = session.execute(
            select(func.count())
            .select_from(PendingSignature)
            .where(PendingSignature.state != PendingState.CONFIRMED)
        ).scalar_one()
    checked = []
    # A query of its own: the app's public cache (keyed by path and query) holds no
    # answer for it, so the API says what it reads now.
    fresh = f"?tally-check={secrets.token_hex(4)}"
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for letter_id, slug in letters:
            response = client.get(f"/api/v1/letters/{slug}{fresh}")
            api = int(response.json()["signature_count"]) if response.status_code == 200 else None
            counter, verified = counts[letter_id]
            checked.append(LetterTally(slug, counter, int(verified), api))
    return TallyCheck(letters=checked, pending=int(pending))
