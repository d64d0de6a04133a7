"""The signature log under concurrent confirmations (issue 12), on PostgreSQL with real
processes: two app servers (`undersigned serve --no-worker`) and two workers
(`undersigned worker`, each running the sequencer every LOG_SEQUENCE_SECONDS = 0.3 s, so
they contend for the same letter's head all the time), all signing with one key given
as UNDERSIGNED_LOG_KEY; FLOWS signers sign and confirm through the JSON API at once and
some withdraw through their manage link.

At the end (after a final pass): every entry sequenced exactly once (seq is exactly
0..size-1), one add per confirmation and one removal per withdrawal with the signer's
commitment, checkpoint sizes strictly increasing in the order they were signed, every
checkpoint signed by the key and consistent with the next one, the latest checkpoint's
count equal to the tally counter and to the verified rows.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import Database
from app.letters.service import signature_count
from app.models import import_all
from app.signatures.models import Signature, SignatureStatus
from app.signlog import keys, sequencer, service
from app.signlog.entries import leaf_bytes
from app.signlog.models import LogCheckpoint, LogEntry
from app.transparency import merkle
from app.transparency.note import Signer, open_checkpoint
from tests.support.config import PG_URL, make_settings, skip_or_fail
from tests.support.databases import scratch_postgres_database
from tests.support.factories import make_letter
from tests.support.ports import free_port
from tests.support.processes import run_in_process
from tests.support.surge import (
    App,
    Balancer,
    Inbox,
    Mailboxes,
    Process,
    cookie_header,
    csrf_input,
    smtp_doors,
    surge_env,
)

import_all()

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FLOWS = 300
WITHDRAW_EVERY = 7
SLUG = "logged"
SECRET = "log-concurrency-secret-0123456789abcdefghijklmnopqrstuvwxyz"
STALL_SECONDS = 60.0


@dataclass
class Flow:
    index: int
    address: str
    withdraws: bool
    confirmed: bool = False
    withdrawn: bool = False


@dataclass
class Deployment:
    database: Database
    letter_id: int
    apps: list[App]
    workers: list[Process]
    inbox: Inbox
    signer: Signer
    data_dir: Path
    base_url: str

    def logs(self) -> str:
        return "\n".join(process.tail() for process in [*self.apps, *self.workers])


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    signer = Signer.generate("log-concurrency.example")
    app_ports = [free_port(), free_port()]
    base_url = f"http://127.0.0.1:{app_ports[0]}"
    inbox = Inbox(base_url)
    with (
        scratch_postgres_database(PG_URL, "logconc") as url,
        smtp_doors(inbox, "w1", "w2") as doors,
    ):

        def env(door: str, pool: int) -> dict[str, str]:
            values = surge_env(database_url=url, secret_key=SECRET, base_url=base_url,
                               data_dir=tmp_path, smtp_port=doors[door], pool=pool)  # fmt: skip
            values.update(UNDERSIGNED_LOG_KEY=signer.skey(), UNDERSIGNED_LOG_SEQUENCE_SECONDS="0.3")
            return values

        migrated = run_in_process(["db", "upgrade"], cwd=tmp_path, env=env("w1", 4))
        assert migrated.returncode == 0, migrated.stderr
        database = Database(url, pool_size=4)
        with database.write() as session:
            letter_id = make_letter(session, slug=SLUG, title="Logged").id
        apps = [App(f"app{n}", port=port, env=env("w1", 12), cwd=tmp_path)
                for n, port in enumerate(app_ports, start=1)]  # fmt: skip
        workers = [Process(name, ["worker"], env=env(name, 4), cwd=tmp_path) for name in doors]
        deployed = Deployment(database, letter_id, apps, workers, inbox, signer, tmp_path,
                              base_url)  # fmt: skip
        try:
            for process in [*apps, *workers]:
                process.start()
            for app in apps:
                app.wait_healthy()
            yield deployed
        finally:
            for process in [*apps, *workers]:
                process.stop()
            database.dispose()


async def _flow(balancer: Balancer, mail: Mailboxes, flow: Flow) -> None:
    body = {"name": f"Signer {flow.index}", "email": flow.address}
    response, _ = await balancer.request(
        "POST", f"/api/v1/letters/{SLUG}/signatures", prefer=flow.index, json=body
    )
    assert response.status_code == 202, (response.status_code, response.text[:300])
    (email,) = await mail.wait(flow.address, 1, stall=STALL_SECONDS)
    assert email.verify_token and email.manage_token
    response, _ = await balancer.request(
        "POST", "/api/v1/signatures/verify", prefer=flow.index + 1,
        json={"token": email.verify_token},
    )  # fmt: skip
    assert response.status_code == 200, (response.status_code, response.text[:300])
    flow.confirmed = True
    if flow.withdraws:
        page, _ = await balancer.request("GET", f"/signature/{email.manage_token}",
                                         prefer=flow.index)  # fmt: skip
        assert page.status_code == 200, page.text[:300]
        response, _ = await balancer.request(
            "POST",
            f"/signature/{email.manage_token}/withdraw",
            prefer=flow.index + 1,
            data={"csrf_token": csrf_input(page.text)},
            headers={"cookie": cookie_header(page), "sec-fetch-site": "same-origin"},
        )
        assert response.status_code == 303, (response.status_code, response.text[:300])
        flow.withdrawn = True


async def _run(deployment: Deployment, flows: list[Flow]) -> None:
    mail = Mailboxes()
    deployment.inbox.listen(asyncio.get_running_loop(), mail.arrived)
    balancer = Balancer([app.url for app in deployment.apps], connections=32,
                        deadline_seconds=30)  # fmt: skip
    try:
        results = await asyncio.gather(
            *(_flow(balancer, mail, flow) for flow in flows), return_exceptions=True
        )
    finally:
        deployment.inbox.listen(asyncio.get_running_loop(), None)
        await balancer.aclose()
    failures = [(flow.index, result) for flow, result in zip(flows, results, strict=True) if result]
    assert not failures, f"{len(failures)} flows failed: {failures[:3]}\n{deployment.logs()}"


def test_concurrent_confirmations_are_each_logged_once(deployment: Deployment) -> None:
    flows = [Flow(n, f"log-{n}@example.org", n % WITHDRAW_EVERY == 3) for n in range(FLOWS)]
    started = time.monotonic()
    asyncio.run(_run(deployment, flows))
    elapsed = time.monotonic() - started
    database, letter_id = deployment.database, deployment.letter_id
    settings = make_settings(deployment.data_dir, database.url, base_url=deployment.base_url,
                             log_key=deployment.signer.skey())  # fmt: skip
    # The workers sequenced while the flows ran.
    with database.read() as session:
        during = session.scalar(
            select(func.count())
            .select_from(LogCheckpoint)
            .where(LogCheckpoint.letter_id == letter_id)
        )
    assert during and during > 1, "the workers signed no checkpoints while signers confirmed"
    # A final pass (the workers may be at it too: SKIP LOCKED), until nothing is queued.
    deadline = time.monotonic() + 30
    while True:
        sequencer.sequence_all(database, settings)
        with database.read() as session:
            if not service.unsequenced(session, letter_id=letter_id):
                break
        assert time.monotonic() < deadline, "entries stayed queued"
        time.sleep(0.2)

    confirmed = sum(flow.confirmed for flow in flows)
    withdrawn = sum(flow.withdrawn for flow in flows)
    expected = confirmed - withdrawn
    assert (confirmed, withdrawn) == (FLOWS, sum(flow.withdraws for flow in flows))
    with database.read() as session:
        entries = list(
            session.scalars(
                select(LogEntry).where(LogEntry.letter_id == letter_id).order_by(LogEntry.seq)
            )
        )
        checkpoints = list(
            session.scalars(
                select(LogCheckpoint)
                .where(LogCheckpoint.letter_id == letter_id)
                .order_by(LogCheckpoint.created_at, LogCheckpoint.size)
            )
        )
        tally = signature_count(session, letter_id=letter_id)
        verified = session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter_id, Signature.status == SignatureStatus.VERIFIED)
        )
        statuses = session.execute(
            select(Signature.status, Signature.receipt_commitment).where(
                Signature.letter_id == letter_id
            )
        ).all()
        latest = service.latest(session, settings, letter_id=letter_id, slug=SLUG)
        size = latest.size
        proofs = [
            service.consistency_proof(
                session, letter_id=letter_id, first=a.size, second=b.size, latest_size=size
            )
            for a, b in itertools.pairwise(checkpoints)
        ]

    # Every entry sequenced exactly once: places 0..size-1, none missing, none twice.
    assert [entry.seq for entry in entries] == list(range(size))
    assert size == confirmed + withdrawn
    # One add per confirmation and one removal per withdrawal, with the signer's
    # commitment (each signature's commitment is its own).
    adds = sorted(e.commitment for e in entries if e.event == "add")
    removes = sorted(e.commitment for e in entries if e.event == "remove")
    assert adds == sorted(commitment or "" for _, commitment in statuses)
    assert removes == sorted(
        c or "" for status, c in statuses if status == SignatureStatus.WITHDRAWN
    )
    assert {e.reason for e in entries} == {"confirmed", "withdrawn"}
    # Sizes strictly increase in the order the checkpoints were signed.
    sizes = [checkpoint.size for checkpoint in checkpoints]
    assert sizes == sorted(set(sizes)) and sizes[-1] == size
    # The count: latest checkpoint == counter == verified rows == what the flows did.
    assert (latest.count, tally, verified) == (expected, expected, expected)
    # Every checkpoint: signed by the shared key for this letter's log, its root that
    # of its first `size` leaves, and consistent with the next one.
    verifier = keys.verifier(settings)
    assert verifier.vkey() == deployment.signer.verifier.vkey()
    leaves = [merkle.leaf_hash(leaf_bytes(entry)) for entry in entries]
    frontier = merkle.Frontier()
    for checkpoint in checkpoints:
        signed = open_checkpoint(checkpoint.note, verifier, origin=keys.origin(settings, SLUG))
        assert (signed.size, signed.root_hash) == (checkpoint.size, checkpoint.root)
        frontier.extend(leaves[frontier.size : checkpoint.size])
        assert frontier.root() == checkpoint.root
        adds_so_far = sum(entry.event == "add" for entry in entries[: checkpoint.size])
        assert (checkpoint.adds, checkpoint.removes) == (adds_so_far, checkpoint.size - adds_so_far)
    for (first, second), proof in zip(itertools.pairwise(checkpoints), proofs, strict=True):
        merkle.verify_consistency(first.size, second.size, first.root, second.root, proof)
    print(f"\n{FLOWS} flows in {elapsed:.1f} s; {len(checkpoints)} checkpoints, size {size}")
