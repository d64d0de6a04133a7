"""`/privacy`: what this site keeps about signers, how long, and who sees it, read from
the running configuration and the retention constants in the code (never a number typed
into the page), so the page cannot drift from what the code does (D81).

It sits at the top of the layers, beside `app.main`, because the retention rules it
quotes live in every layer, up to `app.jobs` (abuse events)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app import jobs
from app.abuse import proof
from app.config import MailBackend, ProofOfWork, Settings
from app.letters import models as letter_models
from app.mail import service as mail_service
from app.organizers import logins
from app.signatures import pages as signature_pages
from app.web.rendering import render

router = APIRouter()


@dataclass(frozen=True)
class PrivacyFacts:
    """Every number and switch the privacy page states."""

    verify_max_age_days: int
    sent_retention_days: int
    dev_mailbox: bool
    abuse_event_retention_days: int
    contact_retention_days: int
    name_thresholds: tuple[int, ...]
    purge_every_hours: int
    rate_limits: bool
    rate_limit_storage: str
    """`memory` or `redis`: never the URL (it may hold a password)."""
    rate_limit_emails: str
    proof_of_work: ProofOfWork
    proof_of_work_above: str
    challenge_minutes: int
    access_log: bool
    login_link_minutes: int
    organizer_session_days: int
    flash_minutes: int
    sqlite: bool


def _days(period: timedelta) -> int:
    return int(period.total_seconds() // 86400)


def _minutes(period: timedelta) -> int:
    return int(period.total_seconds() // 60)


def privacy_facts(settings: Settings) -> PrivacyFacts:
    """Read at each request (not at import): a test that changes a constant or a setting
    sees the page change."""
    storage = settings.rate_limit_storage.split(":", 1)[0].lower()
    return PrivacyFacts(
        verify_max_age_days=settings.verify_max_age_days,
        sent_retention_days=_days(mail_service.SENT_RETENTION),
        dev_mailbox=settings.mail_backend == MailBackend.DEV,
        abuse_event_retention_days=_days(jobs.ABUSE_EVENT_RETENTION),
        contact_retention_days=letter_models.DEFAULT_CONTACT_RETENTION_DAYS,
        name_thresholds=tuple(letter_models.NAME_THRESHOLDS),
        purge_every_hours=max(1, int(jobs.PURGE_EVERY.total_seconds() // 3600)),
        rate_limits=settings.rate_limits,
        rate_limit_storage="redis" if storage in {"redis", "rediss", "valkey"} else "memory",
        rate_limit_emails=settings.rate_limit_emails,
        proof_of_work=settings.proof_of_work,
        proof_of_work_above=settings.proof_of_work_above,
        challenge_minutes=_minutes(proof.CHALLENGE_LIFETIME),
        access_log=settings.access_log,
        login_link_minutes=_minutes(logins.LINK_LIFETIME),
        organizer_session_days=settings.organizer_session_days,
        flash_minutes=signature_pages.FLASH_SECONDS // 60,
        sqlite=settings.is_sqlite,
    )


@router.get("/privacy")
def privacy(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    context: dict[str, Any] = {"facts": privacy_facts(settings)}
    return render(request, "privacy.html", context)
