"""Benchmarks for Undersigned: `make bench` or `python -m bench`.

Not part of the test suite. Every throughput is reported as a ratio to a bare FastAPI
endpoint (bench/bare.py: `GET /bare` returning a small JSON document) served by the same
uvicorn settings and the same number of worker processes, on the same machine, in the
same run, measured by the same load generator. Absolute numbers move with the machine
and whatever else runs on it; the ratios say what the app costs on top of the stack.

One run, per database configuration (PostgreSQL with two `undersigned serve --no-worker`
worker processes by default; SQLite with one process with `--db sqlite|all`):

1. A fresh database (`undersigned_bench` on PostgreSQL, dropped and re-created; a file
   under a temporary data dir for SQLite), `undersigned db upgrade`, `undersigned demo`,
   and eight more letters for the hot counter (`undersigned letter create --publish`).
2. The app and the bare app start on free loopback ports with
   `UNDERSIGNED_RATE_LIMITS=off`, a fixed `UNDERSIGNED_SECRET_KEY` and a temporary
   `UNDERSIGNED_DATA_DIR`. From then on until they stop, the resident memory (VmRSS) of
   the app's every process (the uvicorn parent and its workers) is sampled every 0.5 s
   (bench/memory.py); the highest value per process is reported (target < 150 MB each).
3. Rounds (2 by default), each running every scenario once, interleaved so that drift
   in the machine's load hits all of them alike. Each phase has a warm-up that is not
   measured, then a fixed duration:
   - bare: `GET /bare` on the bare app, 32 connections (`--concurrency`);
   - tally: `GET /api/v1/letters/ice-out` (target >= 0.70x bare);
   - page: `GET /letters/ice-out` (target >= 0.50x bare);
   - sign: `POST /api/v1/letters/ice-out/signatures` with a unique address per request
     for the phase's duration (32 connections on PostgreSQL, 64 on SQLite,
     `--sqlite-write-concurrency`);
   - confirm: the bench reads the waiting signatures' public ids from the database and
     computes their tokens with `app.tokens.issue(secret, SIGNATURE_VERIFY, public_id)`,
     as tests/support/factories.py `verify_token` does (no mail worker, no email
     parsing); `POST /api/v1/signatures/verify` then confirms each one once, the phase
     ending when all are answered. Targets, each of sign and confirm: on PostgreSQL
     >= 0.15x bare and p99 <= 250 ms; on SQLite p99 <= 500 ms; no failed request.
     The two together are shown too (sign+confirm, no target of its own);
   - the hot counter: signatures are made (unmeasured) on one letter, and as many spread
     over eight letters; the same number of confirmations is then sent to the one
     letter and, interleaved, to the eight, at 64 connections (`--hot-concurrency`),
     the order alternating between rounds. Target: one letter >= 0.80x the eight (the
     single counter row must not serialize confirmations).
4. The tally check, for every letter: its counter (as the app reads it), `count(*)` of
   its verified signatures and the API's `signature_count` must be equal.
5. The servers are stopped (also on Ctrl-C, SIGTERM or an error), the temporary data
   and the bench database are removed unless `--keep`.

The table is printed, and every figure (req/s, p50/p95/p99, errors, each ratio, each
target and whether it was met, each process's highest RSS, the tally of every letter),
the CPU count, the git commit (`+dirty` when the work tree has changes), the start time
and the arguments are written to var/bench-results.json (`--results`).

Load generator: `wrk` when it is installed (`apt-get install wrk`; one thread, so the
servers keep the cores), with the Lua scripts of bench/lua/ (POST bodies made per
request, the tokens walked from a file, per-thread answer counting, one JSON line of
figures from `done()`); the Python asyncio client (httpx2) otherwise or with
`--client python` (it spends CPU the servers need: its ratios flatter the app). An
answer outside 200-299, a connection error or a timeout counts as an error. Every
request loop is bounded by time and by count, and only loopback is ever targeted.
Percentiles over several rounds are the request-weighted means of each round's.

Exit status: 0 whatever the numbers (this is a measurement); 1 with `--strict` when a
target is missed or a tally check fails; 2 when the bench could not run at all.

Also here, each run on its own: `python -m bench.big_letters` (big letters cost the
same as small ones), `python -m bench.export` (the CSV export of 1,000,000 signatures:
rows/s and peak memory growth), `python -m bench.mail` (the mail worker's emails/s).
"""
