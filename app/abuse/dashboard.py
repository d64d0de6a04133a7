"""The organizers' view of an attack: a letter's signing activity (any role on the
letter). Owners get links into bulk invalidation, which only they may use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.abuse import stats
from app.letters.service import get_letter_for_organizer
from app.organizers.models import Role
from app.organizers.web import render_dashboard, signed_in
from app.web.deps import AppSettings, ReadSession

router = APIRouter(include_in_schema=False)


@router.get("/dashboard/letters/{slug}/activity")
def activity_page(
    request: Request,
    session: ReadSession,
    settings: AppSettings,
    slug: str,
    window: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    organizer = signed_in(request, session)
    letter, role = get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.VIEWER
    )
    activity = stats.activity(session, letter_id=letter.id, window=stats.parse_window(window))
    return render_dashboard(
        request,
        "dashboard/abuse/activity.html",
        {
            "letter": letter,
            "role": role,
            "activity": activity,
            "can_invalidate": role.allows(Role.OWNER),
            "link_days": settings.verify_max_age_days,
        },
    )
