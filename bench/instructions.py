"""`python -m bench.instructions`: what one confirmation costs, in CPU instructions.

Requests per second on a shared 2-core machine move by tens of percent from one run to
the next; the instructions a process executes do not (callgrind counts them, the same
for the same code, inputs and environment, whatever else the machine does). So a change
to the confirm path is judged here, and `make bench` says where throughput stands.

On PostgreSQL (`--db postgresql`, a database `undersigned_bench_instr` made and dropped
on `--pg`) or SQLite (`--db sqlite`): the demo letters, then `--waiting` submissions to
ice-out through the signing service. For each path, two copies of that database; one
child process confirms `--few` submissions, the other `--few + --more`, both under
`valgrind --tool=callgrind`; the difference divided by `--more` is the cost of one
confirmation, start-up and warm-up excluded. Paths:

- `service`: a write session, `signatures.service.verify_signature`, the commit;
- `stack`: `POST /api/v1/signatures/verify` through the whole app, in process (httpx's
  ASGI transport: the client's share is included, the same for every version).

valgrind must be installed (`apt-get install valgrind`); a run takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import big_letters
from bench.servers import DEFAULT_PG, ROOT, SECRET_KEY, pg_server_url
from tests.support.databases import (
    copy_postgres_database,
    create_postgres_database,
    drop_postgres_database,
)

DATABASE = "undersigned_bench_instr"
SLUG = "ice-out"
PREFIX = "instr"
"""The submissions' addresses start with it (`scenarios.confirmation_tokens` finds them)."""
_COLLECTED = re.compile(r"Collected : (\d+)")


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    """bench/big_letters.py's environment, with a base URL and the dev mailbox."""
    env = big_letters._env(database_url, data_dir)
    env.update(UNDERSIGNED_BASE_URL="http://127.0.0.1:9", UNDERSIGNED_MAIL_BACKEND="dev")
    return env


def _sign(database_url: str, count: int) -> None:
    """`count` submissions to SLUG through the signing service, one transaction each."""
    from app.config import Settings
    from app.db import Database
    from app.models import import_all
    from app.signatures.schemas import SignatureIn
    from app.signatures.service import sign_letter

    import_all()
    settings = Settings()
    database = Database(database_url)
    for n in range(count):
        data = SignatureIn(name=f"Signer {n}", email=f"{PREFIX}-{n}@example.org")
        with database.write() as session:
            sign_letter(session, slug=SLUG, data=data, settings=settings, source_hash="bench")
    database.dispose()


def _confirm(path: str, database_url: str, count: int) -> None:
    """The child: `count` confirmations of the oldest waiting submissions."""
    from app.db import Database
    from bench.scenarios import confirmation_tokens

    database = Database(database_url)
    confirmations = confirmation_tokens(database, SECRET_KEY, PREFIX)[:count]
    database.dispose()
    if len(confirmations) < count:
        raise SystemExit(f"only {len(confirmations)} submissions wait, {count} asked for")
    if path == "service":
        from app.config import Settings
        from app.signatures.service import verify_signature

        settings = Settings()
        database = Database(database_url)
        for token in confirmations:
            with database.write() as session:
                verify_signature(session, token=token, settings=settings)
        return

    import httpx2 as httpx

    from app.main import create_app_from_env

    app = create_app_from_env()

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9")
        async with app.router.lifespan_context(app), client:
            for token in confirmations:
                answer = await client.post("/api/v1/signatures/verify", json={"token": token})
                if answer.status_code != 200:
                    raise SystemExit(f"confirm: {answer.status_code} {answer.text[:200]}")

    asyncio.run(run())


def _copy(args: argparse.Namespace, template: str, name: str, tmp: Path) -> str:
    """A fresh copy of the prepared database; its URL."""
    if args.db == "sqlite":
        target = tmp / f"{name}.sqlite"
        shutil.copyfile(tmp / "template.sqlite", target)
        return f"sqlite:///{target}"
    return copy_postgres_database(pg_server_url(args.pg), template, name)


def _instructions(args: argparse.Namespace, path: str, url: str, count: int, tmp: Path) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "bench.instructions", "--child", path, "--child-url", url,
        "--child-count", str(count),
    ]  # fmt: skip
    done = subprocess.run(
        command, env=_env(url, tmp), cwd=ROOT, capture_output=True, text=True, check=False
    )
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return int(found[-1])


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    p.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--pg", default=os.environ.get("UNDERSIGNED_BENCH_PG", DEFAULT_PG))
    p.add_argument("--paths", default="service,stack", help="comma-separated: service,stack")
    p.add_argument("--few", type=int, default=60, help="confirmations in the short run")
    p.add_argument("--more", type=int, default=200, help="more confirmations in the long run")
    p.add_argument("--child", choices=("service", "stack"), help=argparse.SUPPRESS)
    p.add_argument("--child-url", help=argparse.SUPPRESS)
    p.add_argument("--child-count", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        _confirm(args.child, args.child_url, args.child_count)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    paths = [path for path in args.paths.split(",") if path]
    script = str(Path(sys.executable).with_name("undersigned"))
    with tempfile.TemporaryDirectory(prefix="bench-instr-") as name:
        tmp = Path(name)
        if args.db == "sqlite":
            template_url = f"sqlite:///{tmp / 'template.sqlite'}"
        else:
            template_url = create_postgres_database(pg_server_url(args.pg), DATABASE)
        env = _env(template_url, tmp)
        for command in (["db", "upgrade"], ["demo"]):
            subprocess.run([script, *command], env=env, cwd=ROOT, check=True, capture_output=True)
        waiting = args.few + args.more
        os.environ.update(env)
        _sign(template_url, waiting)
        print(
            f"{args.db}: {waiting} submissions to {SLUG} wait; callgrind, "
            f"{args.few} then {args.few + args.more} confirmations per path",
            flush=True,
        )
        try:
            for path in paths:
                counts = []
                for count in (args.few, args.few + args.more):
                    url = _copy(args, DATABASE, f"{DATABASE}_{path}_{count}", tmp)
                    counts.append(_instructions(args, path, url, count, tmp))
                    if args.db == "postgresql":
                        drop_postgres_database(pg_server_url(args.pg), f"{DATABASE}_{path}_{count}")
                per = (counts[1] - counts[0]) / args.more
                print(f"  {path:<8} {per / 1e6:6.2f} M instructions per confirmation "
                      f"({counts[0]:,} and {counts[1]:,} in all)", flush=True)  # fmt: skip
        finally:
            if args.db == "postgresql":
                drop_postgres_database(pg_server_url(args.pg), DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
