"""`python -m bench.big_letters`: do big letters cost the same as small ones?

On PostgreSQL, two letters are seeded with `undersigned dev seed` (1,000 and 1,000,000
confirmed signatures by default; the seeding time is reported), published, and served by
one live `undersigned serve --no-worker` process on loopback, with its in-process cache
of public answers off (`PUBLIC_CACHE_SECONDS=0`: every answer is computed from the
database, as a cache miss is). One client then asks, one request at a time (latency,
not throughput), for:

- the tally API (`GET /api/v1/letters/SLUG`),
- the letter page (`GET /letters/SLUG`),
- the first page of the signer list (`GET /api/v1/letters/SLUG/signatures`),
- a deep page (a cursor half-way down the list),
- the signer list's HTML page (`GET /letters/SLUG/signers`),

each on both letters, interleaved, and prints each median and the ratio big/small (the
target: at most 1.5), then searches by name on the big letter (the target: p50 under
50 ms). Targets missed are flagged; `--strict` exits 1 then.

The database (`undersigned_bench_big` on `--pg`) is kept between runs: a second run
finds the seeded letters and skips seeding (`--reseed` starts again). Loopback only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
from sqlalchemy import make_url, select

from app import tokens
from app.db import Database
from app.letters.models import Letter, LetterTally
from bench.servers import DEFAULT_PG, HOST, ROOT, SECRET_KEY, Server, pg_server_url
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.ports import free_port

DATABASE = "undersigned_bench_big"
SEARCHES = ("Okafor", "Priya", "Chen", "Søren Jensen", "Ada Lovelace", "Northwind", "zqx")
"""Names (a common surname, a first name, one that is both, a full name, one nobody has,
an organization, nothing at all)."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.big_letters", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--pg", default=os.environ.get("UNDERSIGNED_BENCH_PG", DEFAULT_PG))
    p.add_argument("--small", type=int, default=1_000, help="signatures on the small letter")
    p.add_argument("--big", type=int, default=1_000_000, help="signatures on the big letter")
    p.add_argument("--requests", type=int, default=200, help="requests per measurement")
    p.add_argument("--reseed", action="store_true", help="drop the database and seed again")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p.parse_args(argv)


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSIGNED_")}
    env.update(
        UNDERSIGNED_DATABASE_URL=database_url,
        UNDERSIGNED_SECRET_KEY=SECRET_KEY,
        UNDERSIGNED_DATA_DIR=str(data_dir),
        UNDERSIGNED_RATE_LIMITS="off",
        UNDERSIGNED_LOG_LEVEL="warning",
    )
    return env


def _undersigned(env: dict[str, str], *args: str) -> str:
    script = str(Path(sys.executable).with_name("undersigned"))
    done = subprocess.run(
        [script, *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"undersigned {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def _counts(database_url: str) -> dict[str, int]:
    database = Database(database_url)
    try:
        with database.read() as session:
            rows = session.execute(
                select(Letter.slug, LetterTally.verified_count).join(LetterTally)
            ).all()
    except Exception:  # not migrated yet
        return {}
    finally:
        database.dispose()
    return {slug: int(count) for slug, count in rows}


def prepare(args: argparse.Namespace, env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """The two letters' slugs, seeded and published (seeding only what is missing)."""
    server = pg_server_url(args.pg)
    wanted = {f"bench-{args.small}": args.small, f"bench-{args.big}": args.big}
    database_url = env["UNDERSIGNED_DATABASE_URL"]
    if args.reseed:
        drop_postgres_database(server, DATABASE)
    counts = _counts(database_url)
    if not counts and not args.reseed:
        drop_postgres_database(server, DATABASE)
    if not counts:
        create_postgres_database(server, DATABASE)
    _undersigned(env, "db", "upgrade")
    body = data_dir / "body.md"
    body.write_text("# A letter\n\nWe ask for something reasonable.\n", encoding="utf-8")
    counts = _counts(database_url)
    for slug, size in wanted.items():
        if counts.get(slug) == size:
            print(f"{slug}: {size:,} signatures already there", flush=True)
            continue
        if slug in counts:
            raise SystemExit(f"{slug} has {counts[slug]:,} signatures, not {size:,}: --reseed")
        _undersigned(env, "letter", "create", "--slug", slug, "--title", f"{size:,} signers",
                     "--body-file", str(body), "--signer-comment", "optional")  # fmt: skip
        print(
            _undersigned(env, "dev", "seed", "--letter", slug, "--signatures", str(size)),
            flush=True,
        )
        _undersigned(env, "letter", "publish", slug)
    print(_undersigned(env, "check").splitlines()[0], flush=True)
    return {"small": f"bench-{args.small}", "big": f"bench-{args.big}"}


def _median_ms(client: httpx.Client, path: str, count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: {response.status_code}\n{response.text[:500]}")
    return statistics.median(times) * 1000


def measure(args: argparse.Namespace, url: str, slugs: dict[str, str]) -> bool:
    sizes = {"small": args.small, "big": args.big}
    cursors = {
        name: tokens.issue(SECRET_KEY, tokens.Purpose.LIST_CURSOR, size // 2)
        for name, size in sizes.items()
    }
    paths = {
        "tally API": "/api/v1/letters/{slug}",
        "letter page": "/letters/{slug}",
        "signers, first page": "/api/v1/letters/{slug}/signatures?limit=50",
        "signers, deep page": "/api/v1/letters/{slug}/signatures?limit=50&cursor={cursor}",
        "signers HTML page": "/letters/{slug}/signers",
    }
    ok = True
    with httpx.Client(base_url=url, timeout=60) as client:
        for name in sizes:  # warm both letters' pages into the caches
            for template in paths.values():
                _median_ms(client, template.format(slug=slugs[name], cursor=cursors[name]), 5)
        print(f"\n{'':<22}{sizes['small']:>10,}{sizes['big']:>12,}   ratio (target <= 1.5)")
        for label, template in paths.items():
            medians = {name: 0.0 for name in sizes}
            for _ in range(4):  # interleaved rounds: noise hits both alike
                for name in sizes:
                    path = template.format(slug=slugs[name], cursor=cursors[name])
                    medians[name] += _median_ms(client, path, max(args.requests // 4, 1)) / 4
            ratio = medians["big"] / medians["small"]
            flag = "" if ratio <= 1.5 else "   MISSED"
            ok &= ratio <= 1.5
            print(f"{label:<22}{medians['small']:>8.2f}ms{medians['big']:>10.2f}ms   "
                  f"{ratio:.2f}{flag}")  # fmt: skip
        print(f"\nsearch by name on {sizes['big']:,} signatures, p50 (target < 50 ms)")
        all_times: list[float] = []
        for query in SEARCHES:
            path = f"/api/v1/letters/{slugs['big']}/signatures?limit=50&q={query}"
            median = _median_ms(client, path, max(args.requests // 10, 5))
            all_times.append(median)
            found = len(client.get(path).json()["items"])
            print(f"  {query!r:<16}{median:>8.2f}ms  ({found} on the first page)")
        p50 = statistics.median(all_times)
        ok &= p50 < 50
        print(f"  {'p50 of these':<16}{p50:>8.2f}ms{'' if p50 < 50 else '   MISSED'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    database_url = make_url(args.pg).set(database=DATABASE).render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
        data_dir = Path(tmp)
        env = _env(database_url, data_dir)
        slugs = prepare(args, env, data_dir)
        port = free_port()
        script = str(Path(sys.executable).with_name("undersigned"))
        command = [script, "serve", "--host", HOST, "--port", str(port), "--no-worker"]
        # No in-process cache of public answers (app/web/cache.py): every request does its
        # database work, which is what a big letter could make slower. Through the cache,
        # both letters answer from memory and the ratios say nothing.
        uncached = {**env, "UNDERSIGNED_PUBLIC_CACHE_SECONDS": "0"}
        server = Server("app", command, env=uncached, cwd=ROOT, log=data_dir / "serve.log",
                        port=port)  # fmt: skip
        server.start()
        try:
            server.wait_ready("/healthz")
            ok = measure(args, server.url, slugs)
        finally:
            server.stop()
    if not ok:
        print("\nA target was missed.")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
