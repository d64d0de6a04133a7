"""The app's Prometheus metrics (D88): defined once here, a floor module, so that any
layer may count into them; `/metrics` (app.web.metrics) serves them.

Labels hold nothing personal: a route's template (`/verify/{token}`, never the path),
an HTTP method and status, a letter's slug (public), a rate limit's name. Never an
address, a token, an IP or a name.

Under several server processes (`undersigned serve --workers N`), prometheus-client's
multi-process mode: PROMETHEUS_MULTIPROC_DIR must be set before this module is first
imported (`prepare_multiprocess_dir`, called by `serve`); each process then writes its
samples to files there and a scrape sums them. Values read from the database at scrape
time (the outbox, the worker's queue) are not kept here: see app.web.metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "undersigned_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "undersigned_http_request_duration_seconds",
    "Time to answer an HTTP request (until the response has been sent), by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SIGNATURES = Counter(
    "undersigned_signatures",
    "Submissions of the sign form or API stored (committed), by letter slug.",
    ["letter"],
)
CONFIRMATIONS = Counter(
    "undersigned_confirmations",
    "Signatures confirmed by their link (committed; a second click is not counted), "
    "by letter slug.",
    ["letter"],
)
RATE_LIMITED = Counter(
    "undersigned_rate_limited",
    "Requests refused by a rate limit, by the limit's name.",
    ["limit"],
)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()))


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """For several server processes: PROMETHEUS_MULTIPROC_DIR (the operator's, or
    DATA_DIR/metrics), created, emptied of the last run's sample files, and set in the
    environment that the server processes inherit. Call it before anything imports
    prometheus_client's metrics in this process."""
    given = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    directory = Path(given) if given else data_dir / "metrics"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # only the client's own files
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


_PENDING = "undersigned.metrics.after_commit"


def count_after_commit(session: Session, counter: Counter, *labels: str) -> None:
    """Counts one into `counter` when `session`'s transaction commits (nothing on a
    rollback): for a service, which never commits itself."""
    pending: list[Callable[[], None]] = session.info.setdefault(_PENDING, [])
    pending.append(counter.labels(*labels).inc)


@event.listens_for(Session, "after_commit")
def _counted(session: Session) -> None:
    for inc in session.info.pop(_PENDING, ()):
        inc()


@event.listens_for(Session, "after_rollback")
def _dropped(session: Session) -> None:
    session.info.pop(_PENDING, None)
