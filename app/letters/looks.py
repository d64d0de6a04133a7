"""How a letter looks and reads: its accent colour and header image (public: the theme
stylesheet and the image itself; the dashboard: setting them), and its translations
(the dashboard's page for each language).

Editors and owners change these; any role sees nothing more here than on the
overview (404 without a role, /login signed out)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from app.errors import InvalidInput, NotFound
from app.i18n import LANGUAGE_NAMES
from app.i18n import gettext as _
from app.letters import accent, images, translations
from app.letters import service as letters
from app.letters.models import Letter
from app.letters.schemas import BODY_MAX
from app.organizers.models import Role
from app.organizers.service import Actor
from app.organizers.web import render_dashboard, signed_in
from app.web.deps import PublicReadSession, ReadSession, WriteSession
from app.web.security import check_csrf

router = APIRouter(include_in_schema=False)

IMMUTABLE = "public, max-age=31536000, immutable"
"""An answer whose address changes whenever its content does."""
UPLOAD_PREFIX = "/dashboard/header-images/"
"""Where uploads go: the one dashboard path with a larger body limit (app/main.py)."""
NOTICES = ("accent", "accent_unchanged", "image", "image_removed", "image_unchanged", "translation",
           "translation_unchanged", "translation_removed")  # fmt: skip
_COLOR = re.compile(r"[0-9a-f]{6}")
_IMAGE_NAME = re.compile(r"([0-9a-f]{64})\.(\w+)")


# --- public -----------------------------------------------------------------------------


@router.get("/theme/accent-{color}.css")
def theme(color: str) -> Response:
    """The stylesheet that gives a letter's page its accent colour (app/letters/accent.py)."""
    if not _COLOR.fullmatch(color):
        raise NotFound()
    return Response(
        accent.theme_css(color),
        media_type="text/css",
        headers={"cache-control": IMMUTABLE},
    )


@router.get("/letters/{slug}/header/{name}")
def header_image(session: PublicReadSession, slug: str, name: str) -> Response:
    """A letter's header image, at an address naming its digest: kept for a year."""
    match = _IMAGE_NAME.fullmatch(name)
    if match is None or match.group(2) != images.EXTENSION or not letters.is_slug(slug):
        raise NotFound()
    image = images.served_image(session, slug=slug, digest=match.group(1))
    return Response(
        image.data,
        media_type=image.content_type,
        headers={"cache-control": IMMUTABLE, "etag": f'"{image.digest}"'},
    )


# --- the dashboard ----------------------------------------------------------------------


def _editable(request: Request, session: ReadSession, slug: str) -> tuple[Letter, Role, Actor]:
    organizer = signed_in(request, session)
    letter, role = letters.get_letter_for_organizer(
        session, slug=slug, organizer=organizer, needed=Role.EDITOR
    )
    return letter, role, Actor(organizer)


def _looks_page(
    request: Request,
    session: ReadSession,
    letter: Letter,
    role: Role,
    *,
    notice: str = "",
    errors: dict[str, str] | None = None,
    accent_value: str | None = None,
    status_code: int = 200,
) -> Response:
    existing = {
        row.locale: row for row in translations.all_translations(session, letter_id=letter.id)
    }
    return render_dashboard(
        request,
        "dashboard/letters/looks.html",
        {
            "letter": letter,
            "role": role,
            "notice": notice if notice in NOTICES else "",
            "errors": errors or {},
            "accent_value": (letter.accent_color or "") if accent_value is None else accent_value,
            "image": images.header_of(session, letter_id=letter.id),
            "upload_action": f"{UPLOAD_PREFIX}{letter.slug}",
            "max_upload_mb": images.MAX_UPLOAD_BYTES // (1024 * 1024),
            "languages": [
                (locale, LANGUAGE_NAMES.get(locale, locale), existing.get(locale))
                for locale in translations.translation_locales()
            ],
        },
        status_code=status_code,
    )


def _back(letter: Letter, notice: str) -> Response:
    return RedirectResponse(f"/dashboard/letters/{letter.slug}/looks?notice={notice}", 303)


@router.get("/dashboard/letters/{slug}/looks")
def looks(
    request: Request, session: ReadSession, slug: str, notice: Annotated[str, Query()] = ""
) -> Response:
    letter, role, _actor = _editable(request, session, slug)
    return _looks_page(request, session, letter, role, notice=notice)


@router.post("/dashboard/letters/{slug}/looks")
def set_accent(
    request: Request,
    session: WriteSession,
    slug: str,
    csrf_token: Annotated[str, Form()] = "",
    accent_color: Annotated[str, Form(max_length=50)] = "",
    action: Annotated[str, Form()] = "save",
) -> Response:
    """The accent colour (`action`: save or clear), or the header image's removal
    (`remove_image`)."""
    check_csrf(request, csrf_token)
    letter, role, actor = _editable(request, session, slug)
    if action == "remove_image":
        removed = images.remove_header_image(session, letter=letter, actor=actor)
        return _back(letter, "image_removed" if removed else "image_unchanged")
    value = "" if action == "clear" else accent_color
    try:
        changed = accent.set_accent_color(session, letter=letter, value=value, actor=actor)
    except InvalidInput as exc:
        return _looks_page(request, session, letter, role, errors=exc.fields,
                           accent_value=accent_color, status_code=422)  # fmt: skip
    return _back(letter, "accent" if changed else "accent_unchanged")


@router.post(UPLOAD_PREFIX + "{slug}")
def upload_header_image(
    request: Request,
    session: WriteSession,
    slug: str,
    csrf_token: Annotated[str, Form()] = "",
    image: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    letter, role, actor = _editable(request, session, slug)
    # No file is no image (after the CSRF and role checks, as every dashboard form).
    data = image.file.read(images.MAX_UPLOAD_BYTES + 1) if image is not None else b""
    try:
        images.set_header_image(session, letter=letter, data=data, actor=actor)
    except InvalidInput as exc:
        return _looks_page(request, session, letter, role, errors=exc.fields, status_code=422)
    return _back(letter, "image")


# --- translations -----------------------------------------------------------------------


class TranslationForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    csrf_token: str = ""
    action: str = "save"
    title: str = ""
    summary: str = ""
    body: str = ""

    def values(self) -> dict[str, str]:
        return {"title": self.title, "summary": self.summary, "body_markdown": self.body}


def _translation_page(
    request: Request,
    letter: Letter,
    role: Role,
    locale: str,
    *,
    form: dict[str, str],
    exists: bool,
    errors: dict[str, str] | None = None,
    preview: str | None = None,
    status_code: int = 200,
) -> Response:
    return render_dashboard(
        request,
        "dashboard/letters/translation.html",
        {
            "letter": letter,
            "role": role,
            "locale": locale,
            "language": LANGUAGE_NAMES.get(locale, locale),
            "form": form,
            "exists": exists,
            "errors": {
                ("body" if k == "body_markdown" else k): v for k, v in (errors or {}).items()
            },
            "preview": preview,
            "body_max": BODY_MAX,
        },
        status_code=status_code,
    )


def _translatable(locale: str) -> str:
    if locale not in translations.translation_locales():
        raise NotFound()
    return locale


@router.get("/dashboard/letters/{slug}/translations/{locale}")
def translation_form(request: Request, session: ReadSession, slug: str, locale: str) -> Response:
    letter, role, _actor = _editable(request, session, slug)
    _translatable(locale)
    found = translations.get_translation(session, letter_id=letter.id, locale=locale)
    form = (
        {"title": found.title, "summary": found.summary, "body": found.body_markdown}
        if found
        else {"title": "", "summary": "", "body": ""}
    )
    return _translation_page(request, letter, role, locale, form=form, exists=found is not None)


@router.post("/dashboard/letters/{slug}/translations/{locale}")
def save_translation(
    request: Request,
    session: WriteSession,
    slug: str,
    locale: str,
    form: Annotated[TranslationForm, Form()],
) -> Response:
    check_csrf(request, form.csrf_token)
    letter, role, actor = _editable(request, session, slug)
    _translatable(locale)
    shown = {"title": form.title, "summary": form.summary, "body": form.body}
    if form.action == "remove":
        removed = translations.remove_translation(
            session, letter=letter, locale=locale, actor=actor
        )
        return _back(letter, "translation_removed" if removed else "translation_unchanged")
    exists = translations.get_translation(session, letter_id=letter.id, locale=locale) is not None
    if form.action == "preview":
        too_long = len(form.body) > BODY_MAX
        errors = {"body": _("Use at most %(n)s characters.") % {"n": BODY_MAX}} if too_long else {}
        preview = None if too_long else letters.render_markdown(form.body)
        return _translation_page(request, letter, role, locale, form=shown, exists=exists,
                                 errors=errors, preview=preview,
                                 status_code=422 if errors else 200)  # fmt: skip
    try:
        saved = translations.set_translation(
            session, letter=letter, locale=locale, values=form.values(), actor=actor
        )
    except InvalidInput as exc:
        return _translation_page(request, letter, role, locale, form=shown, exists=exists,
                                 errors=exc.fields, status_code=422)  # fmt: skip
    return _back(letter, "translation" if saved.changed else "translation_unchanged")
