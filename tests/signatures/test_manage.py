"""Self-service through the private manage link, at the service level, on SQLite and
PostgreSQL: what the token holds, reading, changing how a signature is shown, stopping
updates, withdrawing (the tally moves once, the data goes at once), signing again, the
links in the emails, and withdrawals racing each other."""

from __future__ import annotations

import base64
import threading

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import tokens
from app.config import Settings
from app.db import Database
from app.errors import InvalidInput, InvalidToken
from app.letters.models import Letter, LetterTally
from app.mail.models import OutboxEmail, OutboxStatus
from app.organizers.service import SHELL
from app.signatures import manage
from app.signatures.models import (
    PendingSignature,
    RemovalReason,
    Signature,
    SignatureDisplay,
    SignatureStatus,
)
from app.signatures.moderation import remove_signature
from app.signatures.service import notify_pending, verify_signature
from tests.support.factories import (
    make_letter,
    sign,
    sign_and_confirm,
    tampered,
    verify_token,
)

NAME = "Zebulon Quirkfield"
EMAIL = "zebulon.quirk@acme-widgets.example"


def tally(session: Session, letter: Letter) -> int:
    return int(
        session.scalar(select(LetterTally.verified_count).where(LetterTally.letter_id == letter.id))
        or 0
    )


def counted(session: Session, letter: Letter) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter.id, Signature.status == SignatureStatus.VERIFIED)
        )
        or 0
    )


def confirmed(
    session: Session, letter: Letter, settings: Settings, **overrides: object
) -> tuple[Signature, str]:
    values: dict[str, object] = {"name": NAME, "email": EMAIL, "contact_ok": True}
    values.update(overrides)
    signature = sign_and_confirm(session, letter, settings, **values)
    assert signature.public_id
    return signature, manage.manage_token(settings, signature.public_id)


def fresh(session: Session, signature: Signature) -> Signature:
    session.expire_all()
    return session.get_one(Signature, signature.id)


# --- The token --------------------------------------------------------------------------


def test_the_token_holds_a_random_id_and_nothing_personal(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings)
    payload = tokens.read(settings.secret, tokens.Purpose.SIGNATURE_MANAGE, token)
    assert payload == signature.public_id
    assert payload != str(signature.id) and len(payload) >= 20  # random, not a row id
    body = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    for secret in (EMAIL, "zebulon", "acme-widgets", NAME, "Zebulon"):
        assert secret.encode() not in decoded
        assert secret.lower() not in token.lower()


def test_a_tampered_or_foreign_token_is_invalid(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings)
    for bad in (
        tampered(token),
        token[:-3],
        # The right id under another purpose's salt (the verify link's) is not a manage link.
        tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, signature.public_id),
        tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_MANAGE, 12345),
    ):
        with pytest.raises(InvalidToken) as caught:
            manage.read_signature(session, token=bad, settings=settings)
        assert caught.value.reason == "invalid"


def test_a_submission_never_confirmed_says_so(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings, email=EMAIL)
    notify_pending(session, settings=settings)
    token = manage.manage_token(settings, pending.public_id)
    with pytest.raises(manage.NotConfirmed) as caught:
        manage.read_signature(session, token=token, settings=settings)
    assert caught.value.reason == "not_confirmed"
    # Nothing at all behind an id: gone.
    with pytest.raises(InvalidToken) as gone:
        manage.read_signature(
            session, token=manage.manage_token(settings, "x" * 24), settings=settings
        )
    assert gone.value.reason == "gone"


def test_reading_shows_the_signature_and_changes_nothing(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings, title="Welder")
    found = manage.read_signature(session, token=token, settings=settings)
    assert (found.name, found.title, found.letter_slug) == (NAME, "Welder", letter.slug)
    assert found.counted and not found.anonymous and found.contacted
    assert found.email_domain == "acme-widgets.example" and found.can_show_domain
    assert fresh(session, signature).status == SignatureStatus.VERIFIED
    assert tally(session, letter) == 1


# --- Withdrawing ---------------------------------------------------------------------------


def test_withdrawing_drops_the_tally_once_and_erases_at_once(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    confirmed(session, letter, settings, email="other@example.org", name="Other Person")
    signature, token = confirmed(session, letter, settings, comment="I mean it")
    hashed = signature.email_hash
    assert tally(session, letter) == 2

    assert manage.withdraw(session, token=token, settings=settings) is True
    assert tally(session, letter) == 1 == counted(session, letter)
    row = fresh(session, signature)
    assert row.status == SignatureStatus.WITHDRAWN
    assert (row.name, row.title, row.organization, row.city, row.comment) == ("",) * 5
    assert row.email is None and row.email_domain == "" and not row.contact_ok
    assert not row.show_domain and row.name_threshold is None
    assert row.email_hash == hashed and row.letter_id == letter.id  # can sign again

    # Twice (a double click, a second tab): nothing more moves.
    assert manage.withdraw(session, token=token, settings=settings) is False
    assert tally(session, letter) == 1 == counted(session, letter)
    assert manage.read_signature(session, token=token, settings=settings).status == (
        SignatureStatus.WITHDRAWN
    )
    with pytest.raises(InvalidInput):
        manage.change_display(
            session, token=token, settings=settings, anonymous=True, show_domain=False,
            name_threshold=None,
        )  # fmt: skip


def test_a_withdrawn_signer_signs_again_and_the_old_link_lets_go(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature, old_token = confirmed(session, letter, settings)
    old_id = signature.public_id
    manage.withdraw(session, token=old_token, settings=settings)
    assert tally(session, letter) == 0

    again = sign(session, letter, settings, name="Zeb Q", email=EMAIL)
    notify_pending(session, settings=settings)
    verify_signature(session, token=verify_token(settings, again), settings=settings)
    revived = fresh(session, signature)  # the same row, counted again
    assert revived.status == SignatureStatus.VERIFIED and revived.name == "Zeb Q"
    assert revived.public_id == again.public_id != old_id
    assert tally(session, letter) == 1 == counted(session, letter)

    with pytest.raises(InvalidToken) as caught:  # the old email's link controls nothing
        manage.withdraw(session, token=old_token, settings=settings)
    assert caught.value.reason == "gone"
    assert tally(session, letter) == 1
    new_token = manage.manage_token(settings, again.public_id)
    assert manage.read_signature(session, token=new_token, settings=settings).name == "Zeb Q"


def test_withdrawing_a_removed_signature_erases_it_and_leaves_the_tally(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings)
    assert signature.position is not None
    remove_signature(session, actor=SHELL, letter_id=letter.id, position=signature.position,
                     reason=RemovalReason.BOT)  # fmt: skip
    assert tally(session, letter) == 0
    assert manage.withdraw(session, token=token, settings=settings) is False
    row = fresh(session, signature)
    assert row.status == SignatureStatus.REMOVED  # still cannot sign again
    assert row.name == "" and row.email is None and row.email_domain == ""
    assert tally(session, letter) == 0


def test_withdrawing_drops_an_unsent_update_to_the_kept_address(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    _, token = confirmed(session, letter, settings)
    for kind, to in (("update", EMAIL), ("update", "someone.else@example.org")):
        session.add(OutboxEmail(kind=kind, to_address=to, subject="News", text_body="x",
                                html_body="x", message_id="<m@x>", fairness_key="x"))  # fmt: skip
    session.flush()
    manage.withdraw(session, token=token, settings=settings)
    left = session.scalars(
        select(OutboxEmail.to_address).where(
            OutboxEmail.status == OutboxStatus.PENDING, OutboxEmail.kind == "update"
        )
    ).all()
    assert EMAIL not in left and "someone.else@example.org" in left


# --- Display and updates ---------------------------------------------------------------------


def test_going_anonymous_erases_the_identity_and_cannot_be_undone(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings, organization="Acme", city="Oslo")
    changed = manage.change_display(
        session, token=token, settings=settings, anonymous=True, show_domain=False,
        name_threshold=10,
    )  # fmt: skip
    assert changed is True
    row = fresh(session, signature)
    assert row.display == SignatureDisplay.ANONYMOUS
    assert (row.name, row.title, row.organization, row.city) == ("",) * 4
    assert row.email is None and not row.contact_ok and row.email_domain == ""
    assert row.name_threshold is None  # an anonymous signature is never named
    assert tally(session, letter) == 1  # still counted

    with pytest.raises(InvalidInput) as caught:
        manage.change_display(
            session, token=token, settings=settings, anonymous=False, show_domain=False,
            name_threshold=None,
        )  # fmt: skip
    assert "display" in caught.value.fields
    again = manage.change_display(
        session, token=token, settings=settings, anonymous=True, show_domain=False,
        name_threshold=None,
    )  # fmt: skip
    assert again is False


def test_the_badge_and_the_name_threshold(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings)
    assert manage.change_display(
        session, token=token, settings=settings, anonymous=False, show_domain=True,
        name_threshold=50,
    )  # fmt: skip
    row = fresh(session, signature)
    assert row.show_domain and row.name_threshold == 50 and row.name == NAME
    with pytest.raises(InvalidInput) as caught:
        manage.change_display(
            session, token=token, settings=settings, anonymous=False, show_domain=True,
            name_threshold=7,
        )  # fmt: skip
    assert "name_threshold" in caught.value.fields
    assert fresh(session, signature).name_threshold == 50
    # Going anonymous with the badge: the domain stays (it is shown), the name goes.
    manage.change_display(
        session, token=token, settings=settings, anonymous=True, show_domain=True,
        name_threshold=50,
    )  # fmt: skip
    row = fresh(session, signature)
    assert row.show_domain and row.email_domain == "acme-widgets.example"
    assert row.name == "" and row.name_threshold is None
    # Turning the badge off on an anonymous signature erases the domain for good.
    manage.change_display(
        session, token=token, settings=settings, anonymous=True, show_domain=False,
        name_threshold=None,
    )  # fmt: skip
    row = fresh(session, signature)
    assert not row.show_domain and row.email_domain == ""
    with pytest.raises(InvalidInput):
        manage.change_display(
            session, token=token, settings=settings, anonymous=True, show_domain=True,
            name_threshold=None,
        )  # fmt: skip


def test_a_free_mail_address_never_earns_the_badge(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings, email="zeb.q@gmail.com")
    assert not manage.read_signature(session, token=token, settings=settings).can_show_domain
    with pytest.raises(InvalidInput) as caught:
        manage.change_display(
            session, token=token, settings=settings, anonymous=False, show_domain=True,
            name_threshold=None,
        )  # fmt: skip
    assert "show_domain" in caught.value.fields
    assert not fresh(session, signature).show_domain


def test_stopping_updates_erases_the_address_and_keeps_the_signature(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings)
    assert fresh(session, signature).email == EMAIL
    assert manage.stop_updates(session, token=token, settings=settings) is True
    row = fresh(session, signature)
    assert row.email is None and not row.contact_ok and row.status == SignatureStatus.VERIFIED
    assert row.name == NAME and tally(session, letter) == 1
    assert manage.stop_updates(session, token=token, settings=settings) is False


# --- The links in the emails ------------------------------------------------------------------


def _manage_token_in(session: Session, to: str) -> str:
    body = session.scalars(
        select(OutboxEmail.text_body)
        .where(OutboxEmail.to_address == to)
        .order_by(OutboxEmail.id.desc())
    ).first()
    assert body is not None
    marker = "/signature/"
    assert marker in body, body
    return body.split(marker, 1)[1].split()[0]


def test_the_confirmation_email_and_the_already_signed_note_carry_the_manage_link(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    pending = sign(session, letter, settings, email=EMAIL, name=NAME)
    notify_pending(session, settings=settings)
    first = _manage_token_in(session, EMAIL)
    assert tokens.read(settings.secret, tokens.Purpose.SIGNATURE_MANAGE, first) == (
        pending.public_id
    )
    verify_signature(session, token=verify_token(settings, pending), settings=settings)
    assert manage.read_signature(session, token=first, settings=settings).name == NAME

    # Signing again: the "already signed" note links to the existing signature.
    sign(session, letter, settings, email=EMAIL, name="Someone Else Entirely")
    notify_pending(session, settings=settings)
    note = _manage_token_in(session, EMAIL)
    assert (
        note != first
        or tokens.read(settings.secret, tokens.Purpose.SIGNATURE_MANAGE, note) == pending.public_id
    )
    assert manage.read_signature(session, token=note, settings=settings).name == NAME
    assert (
        session.scalar(
            select(func.count())
            .select_from(PendingSignature)
            .where(PendingSignature.email == EMAIL)
        )
        == 0
    )  # the note's submission kept no address


# --- Racing withdrawals -------------------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_withdrawals_count_once(postgres: Database, tmp_path: object) -> None:
    """Threads withdraw the same signatures at once (and others sign meanwhile): the
    counter equals COUNT(*) of counted signatures at the end."""
    from pathlib import Path

    from tests.support.config import make_settings
    from tests.support.databases import truncate

    truncate(postgres)
    settings = make_settings(Path(str(tmp_path)), postgres.url)
    with postgres.write() as session:
        letter = make_letter(session)
        letter_id = letter.id
        links = []
        for number in range(8):
            signature = sign_and_confirm(session, letter, settings, email=f"w{number}@race.example")
            assert signature.public_id
            links.append(manage.manage_token(settings, signature.public_id))
    start = threading.Barrier(len(links) * 3)
    errors: list[BaseException] = []

    def click(token: str) -> None:
        try:
            start.wait(timeout=10)
            with postgres.write() as session:
                manage.withdraw(session, token=token, settings=settings)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=click, args=(t,)) for t in links * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with postgres.read() as session:
        stored = session.scalar(
            select(LetterTally.verified_count).where(LetterTally.letter_id == letter_id)
        )
        rows = session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter_id, Signature.status == SignatureStatus.VERIFIED)
        )
        withdrawn = session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter_id, Signature.status == SignatureStatus.WITHDRAWN)
        )
    assert stored == rows == 0
    assert withdrawn == 8


def test_a_signature_anonymous_from_the_start_can_only_be_withdrawn_or_badged(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signature, token = confirmed(session, letter, settings, display="anonymous")
    session.execute(update(Signature).where(Signature.id == signature.id).values(
        show_domain=True, email_domain="acme-widgets.example"))  # fmt: skip
    found = manage.read_signature(session, token=token, settings=settings)
    assert found.anonymous and found.name == "" and found.show_domain
    assert manage.withdraw(session, token=token, settings=settings)
    assert tally(session, letter) == 0
