"""A letter's text in other languages (`LetterTranslation`), and the text each reader sees.

A letter is written in the site's default language (`app.i18n.DEFAULT_LOCALE`, English):
there is no column for a letter's own language (D115). A translation gives its title,
summary and body in one of the other `LOCALES`; readers whose language has one see it,
everyone else sees the letter's own text. They all sign the same letter: one tally, and
each signature's `locale` says which language its signer read.

Editing a translation follows the spirit of the versioning rule (`versions.save_text`):
the letter's own text is the one versioned and signed; a translation is a rendering of
it. Every change of a translation goes into the audit log, and one made after people
signed says so and keeps a digest of the text it replaced (D116).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from app.errors import InvalidInput
from app.i18n import DEFAULT_LOCALE, LOCALES, current_locale
from app.i18n import gettext as _
from app.letters.models import Letter, LetterTranslation
from app.letters.schemas import (
    BODY_MAX,
    SUMMARY_MAX,
    TITLE_MAX,
    Line,
    Markdown,
    RequiredLine,
    parse,
)
from app.letters.service import render_markdown, signature_count
from app.organizers.service import Actor, record

OWN_LOCALE = DEFAULT_LOCALE
"""The language every letter is written in (its text in `letters`)."""


def translation_locales() -> tuple[str, ...]:
    """The languages a letter may be translated into: every one but its own."""
    return tuple(locale for locale in LOCALES if locale != OWN_LOCALE)


class TranslationFields(BaseModel):
    """A translation as an organizer gives it: the same rules as the letter's own text."""

    model_config = ConfigDict(extra="ignore")

    title: RequiredLine = Field(max_length=TITLE_MAX)
    summary: Line = Field(default="", max_length=SUMMARY_MAX)
    body_markdown: Markdown = Field(max_length=BODY_MAX)


@dataclass(frozen=True, slots=True)
class LetterText:
    """The text a reader sees: the letter's own, or its translation in their language."""

    locale: str
    """The language the text is in (the `lang` of the letter's article)."""
    title: str
    summary: str
    body_html: str
    locales: tuple[str, ...]
    """Every language the letter can be read in, its own first (the hreflang links)."""

    @property
    def translated(self) -> bool:
        return self.locale != OWN_LOCALE


@dataclass(frozen=True, slots=True)
class ShortText:
    """A letter's title and summary in a reader's language (lists)."""

    locale: str
    title: str
    summary: str


def _known(locale: str | None) -> str:
    return locale if locale in LOCALES else current_locale()


def localized(session: Session, *, letter: Letter, locale: str | None = None) -> LetterText:
    """The letter's text in `locale` (default: the request's language) when it has a
    translation in it, else its own text. One query (the letter's translations, with
    their rendered bodies; the Markdown sources stay in the database)."""
    wanted = _known(locale)
    rows = session.scalars(
        select(LetterTranslation)
        .where(LetterTranslation.letter_id == letter.id)
        .options(defer(LetterTranslation.body_markdown, raiseload=True))
        .order_by(LetterTranslation.locale)
    ).all()
    locales = (OWN_LOCALE, *(row.locale for row in rows if row.locale != OWN_LOCALE))
    for row in rows:
        if row.locale == wanted and wanted != OWN_LOCALE:
            return LetterText(row.locale, row.title, row.summary, row.body_html, locales)
    return LetterText(OWN_LOCALE, letter.title, letter.summary, letter.body_html, locales)


def localized_short(
    session: Session, *, letters: Sequence[Letter], locale: str | None = None
) -> dict[int, ShortText]:
    """Each letter's title and summary in `locale` (default: the request's language),
    by letter id, in one query for the whole list (no body is loaded)."""
    wanted = _known(locale)
    texts = {letter.id: ShortText(OWN_LOCALE, letter.title, letter.summary) for letter in letters}
    if wanted == OWN_LOCALE or not texts:
        return texts
    rows = session.execute(
        select(
            LetterTranslation.letter_id, LetterTranslation.title, LetterTranslation.summary
        ).where(LetterTranslation.letter_id.in_(texts), LetterTranslation.locale == wanted)
    ).all()
    for letter_id, title, summary in rows:
        texts[letter_id] = ShortText(wanted, title, summary)
    return texts


def all_translations(session: Session, *, letter_id: int) -> Sequence[LetterTranslation]:
    """The letter's translations (for the dashboard and the API), by language, without
    their Markdown sources."""
    return session.scalars(
        select(LetterTranslation)
        .where(LetterTranslation.letter_id == letter_id)
        .options(defer(LetterTranslation.body_markdown, raiseload=True))
        .order_by(LetterTranslation.locale)
    ).all()


def get_translation(session: Session, *, letter_id: int, locale: str) -> LetterTranslation | None:
    return session.scalar(
        select(LetterTranslation).where(
            LetterTranslation.letter_id == letter_id, LetterTranslation.locale == locale
        )
    )


def _check_locale(locale: str) -> str:
    if locale not in translation_locales():
        message = _("Choose one of the languages offered.")
        raise InvalidInput(_("A letter cannot be translated into this language."),
                           fields={"locale": message})  # fmt: skip
    return locale


def _digest(title: str, summary: str, body_markdown: str) -> str:
    text = "\n\n".join((title, summary, body_markdown))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TranslationSaved:
    created: bool
    changed: list[str]
    """The fields that changed ("title", "summary", "body_markdown"); all on creation."""
    after_signatures: bool
    """Whether people had signed the letter when its translation changed."""


def set_translation(
    session: Session,
    *,
    letter: Letter,
    locale: str,
    values: dict[str, str],
    actor: Actor | None,
) -> TranslationSaved:
    """Creates or edits the letter's translation into `locale` (InvalidInput, with a
    message for each wrong field, otherwise). The body is rendered and sanitized as the
    letter's own (`render_markdown`). Recorded in the audit log (see the module); without
    an actor (the demo, tests) it is not, as `create_letter`."""
    _check_locale(locale)
    data = parse(TranslationFields, values)
    existing = get_translation(session, letter_id=letter.id, locale=locale)
    names = ("title", "summary", "body_markdown")
    if existing is None:
        changed = list(names)
        previous = None
        existing = LetterTranslation(letter_id=letter.id, locale=locale)
        session.add(existing)
    else:
        changed = [name for name in names if getattr(existing, name) != getattr(data, name)]
        previous = _digest(existing.title, existing.summary, existing.body_markdown)
        if not changed:
            return TranslationSaved(created=False, changed=[], after_signatures=False)
    created = previous is None
    existing.title = data.title
    existing.summary = data.summary
    if "body_markdown" in changed:
        existing.body_markdown = data.body_markdown
        existing.body_html = render_markdown(data.body_markdown)
    signed = signature_count(session, letter_id=letter.id)
    detail: dict[str, object] = {"locale": locale, "fields": changed, "version": letter.version}
    if signed and not created:
        detail |= {"after_signatures": True, "signed": signed, "replaced_digest": previous}
    action = "letter.translation.add" if created else "letter.translation.edit"
    if actor is not None:
        record(session, actor=actor, letter_id=letter.id, action=action, **detail)
    session.flush()
    return TranslationSaved(created=created, changed=changed, after_signatures=bool(signed))


def remove_translation(session: Session, *, letter: Letter, locale: str, actor: Actor) -> bool:
    """Removes the letter's translation into `locale`; False when it had none. Its
    readers then see the letter's own text. Recorded in the audit log."""
    _check_locale(locale)
    existing = get_translation(session, letter_id=letter.id, locale=locale)
    if existing is None:
        return False
    digest = _digest(existing.title, existing.summary, existing.body_markdown)
    session.delete(existing)
    record(session, actor=actor, letter_id=letter.id, action="letter.translation.remove",
           locale=locale, replaced_digest=digest)  # fmt: skip
    session.flush()
    return True
