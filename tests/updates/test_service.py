"""Updates to signers, on SQLite and PostgreSQL: who gets them, the worker's batches and
cursor, resuming after a crash, the sent state, and unsubscribing (final, erases the
address, leaves the tally alone)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import tokens
from app.config import Settings
from app.errors import InvalidToken
from app.letters.models import Letter, LetterTally
from app.mail.models import OutboxEmail
from app.mail.service import enqueue as real_enqueue
from app.organizers.models import AuditEvent, Organizer, Role
from app.organizers.service import Actor, find_organizer
from app.signatures.models import Signature, SignatureStatus
from app.updates import service as updates
from app.updates.models import LetterUpdate, UpdateState
from app.updates.schemas import UpdateIn
from tests.support.factories import make_letter, sign_and_confirm, tampered
from tests.support.organizers import make_organizer

UPDATE = UpdateIn(subject="We delivered the letter", body="It is **done**.\n\nThank you.")


def subscriber(session: Session, letter: Letter, settings: Settings, **fields: Any) -> Signature:
    """A confirmed, public signer who asked for updates."""
    return sign_and_confirm(session, letter, settings, contact_ok=True, **fields)


def owner_of(session: Session, letter: Letter) -> Organizer:
    email = f"owner-{letter.slug}@example.org"
    found = find_organizer(session, email=email)
    return found or make_organizer(session, email, letter=letter, role=Role.OWNER)


def queue(session: Session, letter: Letter, data: UpdateIn = UPDATE) -> LetterUpdate:
    queued = updates.queue_update(
        session, letter=letter, actor=Actor(owner_of(session, letter)), data=data
    )
    assert not queued.duplicate
    return queued.update


@pytest.fixture(autouse=True)
def _outbox_start(session: Session) -> None:
    """Emails that tests which really commit left in the shared database are not ours."""
    session.info["outbox_start"] = session.scalar(select(func.max(OutboxEmail.id))) or 0


def outbox(session: Session) -> list[OutboxEmail]:
    """The update emails this test queued, oldest first."""
    return list(
        session.scalars(
            select(OutboxEmail)
            .where(OutboxEmail.kind == "update", OutboxEmail.id > session.info["outbox_start"])
            .order_by(OutboxEmail.id)
        )
    )


def unsubscribe_token(settings: Settings, signature: Signature) -> str:
    assert signature.public_id is not None
    return tokens.issue(settings.secret, tokens.Purpose.UNSUBSCRIBE, signature.public_id)


def state(letter_update: LetterUpdate) -> UpdateState:
    """Read through a call, so that mypy does not keep an earlier assert's narrowing."""
    return letter_update.state


def contact(signature: Signature) -> tuple[bool, str | None]:
    return signature.contact_ok, signature.email


def set_status(session: Session, signature: Signature, status: SignatureStatus) -> None:
    signature.status = status
    session.flush()


# --- Who gets an update ----------------------------------------------------------------


def test_only_verified_signers_who_asked_and_kept_an_address_are_mailed(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    other_letter = make_letter(session)
    wanted = [subscriber(session, letter, settings) for _ in range(2)]
    hidden = subscriber(session, letter, settings)
    hidden.hidden = True  # hidden from the public list, still a signer
    sign_and_confirm(session, letter, settings)  # did not ask
    sign_and_confirm(session, letter, settings, contact_ok=True, display="anonymous")
    withdrawn = subscriber(session, letter, settings)
    set_status(session, withdrawn, SignatureStatus.WITHDRAWN)
    removed = subscriber(session, letter, settings)
    set_status(session, removed, SignatureStatus.REMOVED)
    subscriber(session, other_letter, settings)

    assert updates.count_recipients(session, letter_id=letter.id) == 3
    queue(session, letter)
    assert updates.fan_out_updates(session, settings=settings) == 3

    sent_to = sorted(email.to_address or "" for email in outbox(session))
    assert sent_to == sorted(s.email or "" for s in [*wanted, hidden])
    assert withdrawn.email not in sent_to and removed.email not in sent_to


def test_signers_who_confirm_after_the_update_was_written_do_not_get_it(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    early = subscriber(session, letter, settings)
    letter_update = queue(session, letter)
    late = subscriber(session, letter, settings)
    late.verified_at = letter_update.created_at + timedelta(seconds=1)
    session.flush()

    assert updates.fan_out_updates(session, settings=settings) == 1
    assert [email.to_address for email in outbox(session)] == [early.email]
    assert state(letter_update) == UpdateState.SENT


# --- Writing one -----------------------------------------------------------------------


def test_queueing_stores_the_update_and_audits_it_without_any_address(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signer = subscriber(session, letter, settings)
    owner = owner_of(session, letter)

    queued = updates.queue_update(session, letter=letter, actor=Actor(owner), data=UPDATE)

    assert (queued.recipients, queued.duplicate) == (1, False)
    stored = session.get_one(LetterUpdate, queued.update.id)
    assert (stored.subject, stored.body_markdown) == (UPDATE.subject, UPDATE.body)
    assert (stored.state, stored.next_position, stored.recipients) == (UpdateState.QUEUED, 0, 0)
    assert stored.organizer_id == owner.id and stored.sent_at is None
    assert outbox(session) == []  # the worker queues the emails, not the request
    event = session.scalars(select(AuditEvent).where(AuditEvent.letter_id == letter.id)).one()
    assert event.action == "update.send" and event.organizer_id == owner.id
    assert event.detail["update_id"] == stored.id and event.detail["recipients"] == 1
    assert signer.email and signer.email not in repr(event.detail)


def test_the_same_update_twice_in_a_row_is_stored_once(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    first = queue(session, letter)
    again = updates.queue_update(
        session, letter=letter, actor=Actor(owner_of(session, make_letter(session))), data=UPDATE
    )
    assert again.duplicate and again.update.id == first.id
    other = updates.queue_update(
        session,
        letter=letter,
        actor=Actor(None),
        data=UpdateIn(subject=UPDATE.subject, body="Something else."),
    )
    assert not other.duplicate
    assert [u.id for u in updates.list_updates(session, letter_id=letter.id)] == [
        other.update.id,
        first.id,
    ]


def test_preview_renders_sanitized_markdown() -> None:
    html = updates.preview_html(UpdateIn(subject="s", body="**Hi** <script>x()</script>"))
    assert "<strong>Hi</strong>" in html and "<script" not in html


# --- The worker: batches, cursor, sent state --------------------------------------------


def test_fan_out_goes_in_batches_in_position_order_and_marks_the_update_sent(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signers = [subscriber(session, letter, settings) for _ in range(5)]
    letter_update = queue(session, letter)

    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 2
    assert (letter_update.next_position, letter_update.recipients) == (signers[1].position, 2)
    assert state(letter_update) == UpdateState.QUEUED
    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 2
    assert state(letter_update) == UpdateState.QUEUED
    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 1
    assert state(letter_update) == UpdateState.SENT and letter_update.sent_at is not None
    assert (letter_update.next_position, letter_update.recipients) == (signers[4].position, 5)
    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 0

    assert [email.to_address for email in outbox(session)] == [s.email for s in signers]


def test_a_full_last_batch_marks_the_update_sent_at_once(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    for _ in range(4):
        subscriber(session, letter, settings)
    letter_update = queue(session, letter)
    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 2
    assert state(letter_update) == UpdateState.QUEUED
    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 2
    assert state(letter_update) == UpdateState.SENT


def test_an_update_with_nobody_to_reach_is_sent_and_the_next_one_goes_in_the_same_pass(
    session: Session, settings: Settings
) -> None:
    empty_letter = make_letter(session)
    letter = make_letter(session)
    signer = subscriber(session, letter, settings)
    nobody = queue(session, empty_letter)
    somebody = queue(session, letter)

    assert updates.fan_out_updates(session, settings=settings) == 1
    assert (nobody.state, nobody.recipients) == (UpdateState.SENT, 0)
    assert (somebody.state, somebody.recipients) == (UpdateState.SENT, 1)
    assert [email.to_address for email in outbox(session)] == [signer.email]
    assert updates.fan_out_updates(session, settings=settings) == 0


def test_updates_go_out_oldest_first(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    subscriber(session, letter, settings)
    first = queue(session, letter)
    second = queue(session, letter, UpdateIn(subject="Second", body="More news."))
    assert updates.fan_out_updates(session, settings=settings) == 1
    assert (first.state, second.state) == (UpdateState.SENT, UpdateState.QUEUED)
    assert updates.fan_out_updates(session, settings=settings) == 1
    assert second.state == UpdateState.SENT
    assert [email.subject for email in outbox(session)] == [UPDATE.subject, "Second"]


def test_a_crash_mid_batch_resumes_without_duplicates(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    letter = make_letter(session)
    signers = [subscriber(session, letter, settings) for _ in range(5)]
    letter_update = queue(session, letter)
    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 2

    # The second batch dies after its first email: its transaction rolls back.
    calls = 0

    def crashing_enqueue(*args: Any, **kwargs: Any) -> OutboxEmail:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("worker killed")
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(updates, "enqueue", crashing_enqueue)
    savepoint = session.begin_nested()
    with pytest.raises(RuntimeError):
        updates.fan_out_updates(session, settings=settings, batch_size=2)
    savepoint.rollback()
    session.expire_all()
    assert (letter_update.next_position, letter_update.recipients) == (signers[1].position, 2)
    assert len(outbox(session)) == 2

    monkeypatch.setattr(updates, "enqueue", real_enqueue)
    while updates.fan_out_updates(session, settings=settings, batch_size=2):
        pass
    assert [email.to_address for email in outbox(session)] == [s.email for s in signers]
    assert (letter_update.state, letter_update.recipients) == (UpdateState.SENT, 5)


# --- The email -------------------------------------------------------------------------


def test_each_email_has_both_parts_the_letter_a_reason_and_its_own_unsubscribe_link(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session, title="Save the river", from_name="River Friends")
    signers = [subscriber(session, letter, settings) for _ in range(2)]
    queue(session, letter)
    updates.fan_out_updates(session, settings=settings)

    emails = outbox(session)
    assert len(emails) == 2
    links = set()
    for signer, email in zip(signers, emails, strict=True):
        session.refresh(signer)
        assert signer.public_id  # given one, if confirming had not
        # The link as the email carries it (a token made now would carry another
        # second in its timestamp): this signer's, and the same in the header and parts.
        link = email.headers["List-Unsubscribe"].removeprefix("<").removesuffix(">")
        assert link.startswith("http://testserver/unsubscribe/")
        links.add(link)
        assert email.subject == UPDATE.subject
        assert email.headers == {
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        for part in (email.text_body, email.html_body):
            assert "Save the river" in part and "River Friends" in part
            assert link in part
            assert "asked to hear from its organizers" in part
            assert f"http://testserver/letters/{letter.slug}" in part
        assert "It is **done**." in email.text_body
        assert "It is <strong>done</strong>." in email.html_body
        token = link.rsplit("/", 1)[1]
        assert tokens.read(settings.secret, tokens.Purpose.UNSUBSCRIBE, token) == signer.public_id
    assert len(links) == 2


def test_a_signature_keeps_the_public_id_it_already_has(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signer = subscriber(session, letter, settings)
    signer.public_id = "a" * 32
    session.flush()
    queue(session, letter)
    updates.fan_out_updates(session, settings=settings)
    session.refresh(signer)
    assert signer.public_id == "a" * 32
    assert updates.unsubscribe_url(settings, "a" * 32) in outbox(session)[0].text_body


def test_a_signature_without_a_public_id_is_given_one(session: Session, settings: Settings) -> None:
    letter = make_letter(session)
    signer = subscriber(session, letter, settings)
    signer.public_id = None  # confirmed by a version that did not set one
    session.flush()
    queue(session, letter)
    updates.fan_out_updates(session, settings=settings)
    session.refresh(signer)
    assert signer.public_id and len(signer.public_id) <= 32
    token = unsubscribe_token(settings, signer)
    assert updates.unsubscribe_url(settings, signer.public_id) in outbox(session)[0].text_body
    assert not updates.unsubscribe(session, token=token, settings=settings).already


def test_fan_out_logs_no_address(
    session: Session, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    letter = make_letter(session)
    signer = subscriber(session, letter, settings)
    queue(session, letter)
    with caplog.at_level(logging.DEBUG):
        updates.fan_out_updates(session, settings=settings)
    assert signer.email and signer.email not in caplog.text


# --- Unsubscribing ---------------------------------------------------------------------


def tally(session: Session, letter: Letter) -> int:
    return session.scalars(
        select(LetterTally.verified_count).where(LetterTally.letter_id == letter.id)
    ).one()


def test_unsubscribing_erases_the_address_keeps_the_signature_and_is_final(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    leaving = subscriber(session, letter, settings)
    staying = subscriber(session, letter, settings)
    queue(session, letter)
    updates.fan_out_updates(session, settings=settings)
    session.refresh(leaving)
    before = tally(session, letter)
    token = unsubscribe_token(settings, leaving)

    shown = updates.read_unsubscribe(session, token=token, settings=settings)
    assert (shown.letter_title, shown.letter_slug, shown.already) == (
        letter.title,
        letter.slug,
        False,
    )
    session.refresh(leaving)
    assert contact(leaving) == (True, leaving.email) and leaving.email  # nothing changed

    done = updates.unsubscribe(session, token=token, settings=settings)
    assert (done.letter_title, done.already) == (letter.title, False)
    session.refresh(leaving)
    assert contact(leaving) == (False, None)
    assert leaving.status == SignatureStatus.VERIFIED
    assert tally(session, letter) == before
    assert updates.count_recipients(session, letter_id=letter.id) == 1

    again = updates.unsubscribe(session, token=token, settings=settings)
    assert again.already
    assert updates.read_unsubscribe(session, token=token, settings=settings).already

    # A later update never reaches them.
    queue(session, letter, UpdateIn(subject="Later", body="More."))
    assert updates.fan_out_updates(session, settings=settings) == 1
    later = [email for email in outbox(session) if email.subject == "Later"]
    assert [email.to_address for email in later] == [staying.email]


def test_an_unsubscribe_mid_fan_out_is_not_mailed_again(
    session: Session, settings: Settings
) -> None:
    letter = make_letter(session)
    signers = [subscriber(session, letter, settings) for _ in range(4)]
    queue(session, letter)
    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 2
    # The third signer unsubscribes (through an earlier update's link) between batches.
    signers[2].public_id = "b" * 32
    session.flush()
    token = tokens.issue(settings.secret, tokens.Purpose.UNSUBSCRIBE, "b" * 32)
    updates.unsubscribe(session, token=token, settings=settings)
    assert updates.fan_out_updates(session, settings=settings, batch_size=2) == 1
    assert [email.to_address for email in outbox(session)] == [
        signers[0].email,
        signers[1].email,
        signers[3].email,
    ]


@pytest.mark.parametrize(
    "make_token",
    [
        lambda settings: tampered(tokens.issue(settings.secret, tokens.Purpose.UNSUBSCRIBE, "x")),
        lambda settings: tokens.issue(settings.secret, tokens.Purpose.SIGNATURE_VERIFY, "x" * 24),
        lambda settings: tokens.issue(settings.secret, tokens.Purpose.UNSUBSCRIBE, 12345),
        lambda settings: tokens.issue(settings.secret, tokens.Purpose.UNSUBSCRIBE, "x" * 33),
        lambda settings: "not-a-token",
    ],
    ids=["tampered", "other-purpose", "not-a-string", "too-long", "garbage"],
)
def test_a_bad_token_unsubscribes_nobody(
    session: Session, settings: Settings, make_token: Any
) -> None:
    letter = make_letter(session)
    signer = subscriber(session, letter, settings)
    with pytest.raises(InvalidToken) as caught:
        updates.unsubscribe(session, token=make_token(settings), settings=settings)
    assert caught.value.reason == "invalid"
    session.refresh(signer)
    assert signer.contact_ok and signer.email


def test_a_token_for_no_signature_is_gone(session: Session, settings: Settings) -> None:
    token = tokens.issue(settings.secret, tokens.Purpose.UNSUBSCRIBE, "c" * 32)
    with pytest.raises(InvalidToken) as caught:
        updates.read_unsubscribe(session, token=token, settings=settings)
    assert caught.value.reason == "gone"
