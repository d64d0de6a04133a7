"""The home page: published letters with their tallies. (A letter's own page, with
its sign form and signers, belongs to the signing loop: app/signatures/pages.py.)"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.letters import service as letters
from app.web.deps import ReadSession
from app.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request, session: ReadSession) -> Response:
    return render(request, "home.html", {"letters": letters.list_public_letters(session)})
