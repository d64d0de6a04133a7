"""Benchmarks for Undersigned: `make bench` or `python -m bench`.

Not part of the test suite. Every number is reported as a ratio to a bare FastAPI
endpoint (bench/bare.py: `GET /bare` returning a small JSON document) served by the same
uvicorn settings and the same number of worker processes, on the same machine, in the
same run, measured by the same load generator. Absolute numbers move with the machine
and whatever else runs on it; the ratios say what the app costs on top of the stack.

One run, per database configuration (PostgreSQL with two `undersigned serve --no-worker`
worker processes by default; SQLite with one process with `--db sqlite|all`):

1. A fresh database (`undersigned_bench` on PostgreSQL, dropped and re-created; a file
   under a temporary data dir for SQLite), `undersigned db upgrade`, `undersigned demo`.
2. The app and the bare app start on free loopback ports with
   `UNDERSIGNED_RATE_LIMITS=off`, a fixed `UNDERSIGNED_SECRET_KEY` and a temporary
   `UNDERSIGNED_DATA_DIR`.
3. Rounds (2 by default), each running every scenario once, interleaved so that drift
   in the machine's load hits all of them alike. Each phase has a warm-up that is not
   measured, then a fixed duration, at a fixed concurrency (32 keep-alive connections):
   - bare: `GET /bare` on the bare app;
   - tally: `GET /api/v1/letters/ice-out` (target >= 0.70x bare);
   - page: `GET /letters/ice-out` (target >= 0.50x bare);
   - sign+confirm (target >= 0.25x bare): `POST /api/v1/letters/ice-out/signatures`
     with a unique address per request for the phase's duration; then the bench reads
     the pending signatures' public ids from the database and computes their tokens
     with `app.tokens.issue(secret, SIGNATURE_VERIFY, public_id)`, exactly as
     tests/support/factories.py `verify_token` does (no mail worker, no email parsing), and
     `POST /api/v1/signatures/verify` confirms each one once. The scenario's req/s is
     (signs + confirms) / (sign time + confirm time); both halves are also shown alone.
4. The tally check: the letter's counter row, `count(*)` of verified signatures and the
   API's `signature_count` must be equal.
5. The servers are stopped (also on Ctrl-C, SIGTERM or an error), the temporary data
   and the bench database are removed unless `--keep`.

Load generators: GET scenarios use `wrk` when it is installed (`apt-get install wrk`;
one thread, so the servers keep the cores) and the Python asyncio client (httpx2)
otherwise or with `--client python`. Signing always uses the Python client, and its
ratio is taken against a bare run by the Python client in the same round. Every request
loop is bounded by time and by count, and only loopback is ever targeted.

Exit status: 0 whatever the numbers (this is a measurement); 1 with `--strict` when a
target is missed or the tally check fails; 2 when the bench could not run at all.
"""
