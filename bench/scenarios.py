"""What is measured: the demo letters, the bare/tally/page GETs, signing + confirming,
and the tally check at the end. See bench/__init__.py for the why."""

from __future__ import annotations

import collections
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass

import httpx2 as httpx
from sqlalchemy import func, select

from app import tokens
from app.db import Database
from app.letters.models import Letter, LetterTally
from app.models import import_all
from app.signatures.models import PendingSignature, PendingState, Signature, SignatureStatus
from bench.load import Phase, Result, Send, get, python_phase, wrk_phase
from bench.report import progress
from bench.servers import Deployment, Server

SLUG = "ice-out"
MAX_REQUESTS = 200_000  # per phase; far above what 2 cores serve in a phase

import_all()  # every mapper known before the bench's own queries


@dataclass(frozen=True)
class Load:
    """How every phase is driven (from the command line)."""

    concurrency: int
    duration: int  # seconds per measured phase
    warmup: int  # seconds of unmeasured warm-up per phase


def seed(site: Deployment) -> None:
    """The demo letters (`undersigned demo`), among them the measured one, SLUG."""
    site.undersigned("demo")


# --- GET scenarios ---------------------------------------------------------------


def measure_get(server: Server, path: str, client: str, load: Load) -> Phase:
    if client == "wrk":
        return wrk_phase(
            server.url + path,
            concurrency=load.concurrency,
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


# --- sign + confirm ----------------------------------------------------------------


def signer(prefix: str, kind: str) -> Send:
    """POSTs a unique signature per call: `{prefix}-{kind}{n}@example.org`."""
    counter = iter(range(10**9))

    def send(client: httpx.AsyncClient) -> Awaitable[int]:
        n = next(counter)
        body = {
            "name": f"Bench Signer {kind}{n}",
            "email": f"{prefix}-{kind}{n}@example.org",
            "title": "Engineer",
            "organization": "Loopback Labs",
            "city": "127.0.0.1",
            "display": "public" if n % 4 else "anonymous",
            "contact_ok": n % 3 == 0,
        }

        async def go() -> int:
            response = await client.post(f"/api/v1/letters/{SLUG}/signatures", json=body)
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


def confirmation_tokens(
    database: Database, secret_key: str, prefix: str
) -> dict[str, collections.deque[str]]:
    """The tokens of the pending signatures whose address starts with `prefix`, by kind
    ("w" warm-up, "m" measured), computed from their public ids as
    tests/support/factories.py `verify_token` does (no mail worker, no email parsing)."""
    with database.read() as session:
        rows = session.execute(
            select(PendingSignature.email, PendingSignature.public_id).where(
                PendingSignature.state == PendingState.WAITING,
                PendingSignature.email.like(prefix + "-%"),
            )
        ).all()
    queues: dict[str, collections.deque[str]] = {
        "w": collections.deque(),
        "m": collections.deque(),
    }
    for email, public_id in rows:
        assert email is not None  # no worker runs here: waiting submissions keep it
        kind = email[len(prefix) + 1]
        queues[kind].append(tokens.issue(secret_key, tokens.Purpose.SIGNATURE_VERIFY, public_id))
    return queues


def sign_and_confirm(site: Deployment, app: Server, prefix: str, load: Load) -> tuple[Phase, Phase]:
    """Phase 1 signs unique addresses for `duration`; the tokens are then computed from
    the pending signatures' public ids; phase 2 confirms each of them once, bounded by
    count and time."""
    sign = python_phase(
        signer(prefix, "m"),
        warmup_send=signer(prefix, "w"),
        expect=202,
        base_url=app.url,
        concurrency=load.concurrency,
        duration=load.duration,
        max_requests=MAX_REQUESTS,
        warmup=load.warmup,
    )
    queues = confirmation_tokens(site.database, site.secret_key, prefix)
    measured = len(queues["m"])
    # The warm-up confirms the warm-up signatures (until they run out), unmeasured.
    verify = python_phase(
        verifier(queues["m"]),
        warmup_send=verifier(queues["w"]),
        base_url=app.url,
        concurrency=load.concurrency,
        duration=max(3 * load.duration, 30),
        max_requests=MAX_REQUESTS,
        warmup=max(load.warmup, 2 * load.duration) if queues["w"] else 0,
    )
    if queues["m"]:
        progress(f"  note: {len(queues['m'])} of {measured} tokens not confirmed in time")
    return sign, verify


# --- the rounds ----------------------------------------------------------------------


def measure(
    site: Deployment, app: Server, bare: Server, *, get_client: str, rounds: int, load: Load
) -> dict[str, Result]:
    """Every scenario once per round, interleaved, so that drift in the machine's load
    hits all of them alike. Keys: bare, tally, page, bare-python (when the GETs use
    wrk), sign, verify, sign+confirm."""
    run_id = secrets.token_hex(3)
    results: dict[str, Result] = collections.defaultdict(Result)
    for round_no in range(1, rounds + 1):
        line = [f"  round {round_no}/{rounds}:"]
        for key, server, path in (
            ("bare", bare, "/bare"),
            ("tally", app, f"/api/v1/letters/{SLUG}"),
            ("page", app, f"/letters/{SLUG}"),
        ):
            phase = measure_get(server, path, get_client, load)
            results[key].phases.append(phase)
            line.append(f"{key} {phase.rps:.0f}/s")
        if get_client != "python":
            phase = measure_get(bare, "/bare", "python", load)
            results["bare-python"].phases.append(phase)
            line.append(f"bare(python) {phase.rps:.0f}/s")
        sign, verify = sign_and_confirm(site, app, f"bench-{run_id}-r{round_no}", load)
        results["sign"].phases.append(sign)
        results["verify"].phases.append(verify)
        results["sign+confirm"].phases.extend([sign, verify])
        line.append(f"sign {sign.rps:.0f}/s verify {verify.rps:.0f}/s")
        progress(" ".join(line))
    return results


# --- the tally check -------------------------------------------------------------------


@dataclass(frozen=True)
class TallyCheck:
    tally: int  # the letter's counter row
    verified: int  # count(*) of its verified signatures
    api: int  # the API's signature_count
    pending: int  # pending signatures left (all letters)

    @property
    def ok(self) -> bool:
        return self.tally == self.verified == self.api

    def __str__(self) -> str:
        return (
            f"tally row {self.tally}, verified signatures in the DB {self.verified}, API "
            f"signature_count {self.api}, still pending {self.pending}: "
            f"{'OK, equal' if self.ok else 'MISMATCH'}"
        )


def check_tally(site: Deployment, app: Server) -> TallyCheck:
    with site.database.read() as session:
        tally = session.execute(
            select(LetterTally.verified_count)
            .join(Letter, Letter.id == LetterTally.letter_id)
            .where(Letter.slug == SLUG)
        ).scalar_one()
        verified = session.execute(
            select(func.count())
            .select_from(Signature)
            .join(Letter, Letter.id == Signature.letter_id)
            .where(Letter.slug == SLUG, Signature.status == SignatureStatus.VERIFIED)
        ).scalar_one()
        pending = session.execute(
            select(func.count())
            .select_from(PendingSignature)
            .where(PendingSignature.state != PendingState.CONFIRMED)
        ).scalar_one()
    api = httpx.get(f"{app.url}/api/v1/letters/{SLUG}", timeout=10).json()["signature_count"]
    return TallyCheck(tally=tally, verified=verified, api=int(api), pending=pending)
