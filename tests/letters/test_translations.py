"""Letter translations (app/letters/translations.py): saved rendered and sanitized like
the letter's own text, read in the reader's language, audit-logged (after signatures:
with the replaced text's digest), and the demo letter ships in Spanish."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.i18n import use_locale
from app.letters.demo import create_demo_letters
from app.letters.models import Letter, LetterTranslation
from app.letters.service import add_to_tally
from app.letters.translations import (
    OWN_LOCALE,
    localized,
    localized_short,
    remove_translation,
    set_translation,
    translation_locales,
)
from app.organizers.models import AuditEvent
from app.organizers.service import SHELL
from tests.support.factories import make_letter

SPANISH = {
    "title": "Una carta",
    "summary": "En pocas palabras.",
    "body_markdown": "Pedimos **una cosa**.<script>alert(1)</script>",
}


def _events(session: Session, letter: Letter) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
        )
    )


def test_letters_are_written_in_the_default_language_and_translated_into_the_others() -> None:
    assert OWN_LOCALE == "en"
    assert translation_locales() == ("es",)


def test_a_translation_is_rendered_and_sanitized_like_the_letter(session: Session) -> None:
    letter = make_letter(session)
    saved = set_translation(session, letter=letter, locale="es", values=SPANISH, actor=SHELL)
    assert saved.created and saved.changed == ["title", "summary", "body_markdown"]
    row = session.scalars(select(LetterTranslation)).one()
    assert row.body_html == "<p>Pedimos <strong>una cosa</strong>.</p>\n"
    assert [event.action for event in _events(session, letter)] == ["letter.translation.add"]


def test_readers_see_their_language_and_others_the_letter_s_own(session: Session) -> None:
    letter = make_letter(session)
    set_translation(session, letter=letter, locale="es", values=SPANISH, actor=SHELL)
    spanish = localized(session, letter=letter, locale="es")
    assert (spanish.locale, spanish.title, spanish.summary) == (
        "es",
        "Una carta",
        "En pocas palabras.",
    )
    assert "una cosa" in spanish.body_html
    assert spanish.locales == ("en", "es") and spanish.translated
    english = localized(session, letter=letter, locale="en")
    assert (english.locale, english.title, english.body_html) == (
        "en",
        letter.title,
        letter.body_html,
    )
    with use_locale("es"):  # the request's language by default
        assert localized(session, letter=letter).title == "Una carta"
        other = make_letter(session)
        untranslated = localized(session, letter=other)
        assert (untranslated.locale, untranslated.title) == ("en", other.title)
        assert untranslated.locales == ("en",)
        short = localized_short(session, letters=[letter, other])
    assert short[letter.id].title == "Una carta" and short[letter.id].locale == "es"
    assert short[other.id].title == other.title and short[other.id].locale == "en"


def test_only_the_other_languages_and_valid_fields(session: Session) -> None:
    letter = make_letter(session)
    for locale in ("en", "fr", ""):
        with pytest.raises(InvalidInput) as refused:
            set_translation(session, letter=letter, locale=locale, values=SPANISH, actor=SHELL)
        assert "locale" in refused.value.fields
    with pytest.raises(InvalidInput) as refused:
        set_translation(session, letter=letter, locale="es",
                        values={"title": " ", "summary": "x" * 501, "body_markdown": ""},
                        actor=SHELL)  # fmt: skip
    assert set(refused.value.fields) == {"title", "summary", "body"}  # as the form names it
    assert session.scalars(select(LetterTranslation)).all() == []


def test_an_edit_after_signatures_is_logged_with_what_it_replaced(session: Session) -> None:
    letter = make_letter(session)
    set_translation(session, letter=letter, locale="es", values=SPANISH, actor=SHELL)
    unchanged = set_translation(session, letter=letter, locale="es", values=SPANISH, actor=SHELL)
    assert unchanged.changed == [] and not unchanged.created
    before = set_translation(session, letter=letter, locale="es",
                             values={**SPANISH, "summary": "Otra."}, actor=SHELL)  # fmt: skip
    assert before.changed == ["summary"] and not before.after_signatures
    add_to_tally(session, letter_id=letter.id, delta=3)  # three people signed
    after = set_translation(session, letter=letter, locale="es",
                            values={**SPANISH, "summary": "Otra.", "title": "Otra carta"},
                            actor=SHELL)  # fmt: skip
    assert after.after_signatures and after.changed == ["title"]
    events = _events(session, letter)
    assert [event.action for event in events] == [
        "letter.translation.add", "letter.translation.edit", "letter.translation.edit",
    ]  # fmt: skip
    assert "after_signatures" not in events[1].detail
    assert events[2].detail["after_signatures"] is True and events[2].detail["signed"] == 3
    assert len(events[2].detail["replaced_digest"]) == 64
    assert localized(session, letter=letter, locale="es").title == "Otra carta"


def test_removing_a_translation_gives_readers_the_own_text_back(session: Session) -> None:
    letter = make_letter(session)
    assert remove_translation(session, letter=letter, locale="es", actor=SHELL) is False
    set_translation(session, letter=letter, locale="es", values=SPANISH, actor=SHELL)
    assert remove_translation(session, letter=letter, locale="es", actor=SHELL) is True
    assert localized(session, letter=letter, locale="es").title == letter.title
    assert _events(session, letter)[-1].action == "letter.translation.remove"


def test_the_demo_letter_ships_in_spanish(session: Session) -> None:
    create_demo_letters(session)
    letter = session.scalars(select(Letter).where(Letter.slug == "ice-out")).one()
    spanish = localized(session, letter=letter, locale="es")
    assert spanish.title.startswith("ICE fuera")
    assert "Cancelen todos los contratos" in spanish.body_html
    assert "<strong>" in spanish.body_html and "<ol>" in spanish.body_html
    # Run again (an earlier demo without the translation gets it; nothing doubles).
    session.execute(delete(LetterTranslation))
    assert create_demo_letters(session) == []
    assert len(session.scalars(select(LetterTranslation)).all()) == 1
