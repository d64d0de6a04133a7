"""Verified-domain badges, "safety in numbers" and the breakdown, on both databases.

Signatures are inserted as confirming leaves them (the badge choice and the domain set
on the row), so these tests hold whatever the sign form does."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import InvalidInput, NotFound
from app.letters.models import NAME_THRESHOLDS, Letter, SignerKind
from app.organizers.models import AuditEvent
from app.organizers.service import SHELL
from app.signatures import badges, moderation
from app.signatures.breakdown import BreakdownGroup, letter_breakdown
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus
from app.signatures.service import list_public_signatures, recent_public_signers
from tests.support.factories import make_letter

PUBLIC, ANONYMOUS = SignatureDisplay.PUBLIC, SignatureDisplay.ANONYMOUS


def add(
    session: Session,
    letter: Letter,
    domain: str,
    *,
    name: str = "",
    display: SignatureDisplay = PUBLIC,
    show: bool = True,
    threshold: int | None = None,
    organization: str = "",
    hidden: bool = False,
    status: SignatureStatus = SignatureStatus.VERIFIED,
    comment: str = "",
) -> Signature:
    """One confirmed signature, newest so far on its letter."""
    position = (
        session.scalar(
            select(Signature.position)
            .where(Signature.letter_id == letter.id)
            .order_by(Signature.position.desc())
            .limit(1)
        )
        or 0
    ) + 1
    anonymous = display == ANONYMOUS
    signature = Signature(
        letter_id=letter.id,
        position=position,
        display=display,
        name="" if anonymous else (name or f"Person {position}"),
        organization="" if anonymous else organization,
        show_domain=show,
        name_threshold=threshold,
        email_hash=secrets.token_hex(32),
        email_domain=domain if (show or not anonymous) else "",
        public_id=secrets.token_urlsafe(18),
        verified_at=utcnow(),
        status=status,
        hidden=hidden,
        comment=comment,
        comment_public_ok=bool(comment),
        comment_approved=bool(comment),
    )
    session.add(signature)
    session.flush()
    return signature


def crowd(session: Session, letter: Letter, domain: str, count: int, **kwargs: Any) -> None:
    for _ in range(count):
        add(session, letter, domain, **kwargs)


@contextmanager
def statements(session: Session) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = session.get_bind()

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def listed(session: Session, letter: Letter, **kwargs: Any) -> list[Any]:
    items, _ = list_public_signatures(session, letter_id=letter.id, **kwargs)
    return items


# --- Badges ------------------------------------------------------------------------------


def test_badges_show_for_those_who_chose_them_named_or_anonymous(session: Session) -> None:
    letter = make_letter(session)
    letter.domain_names = {"google.com": "Google"}
    add(session, letter, "example.com", name="Named Badge")
    add(session, letter, "example.com", name="No Badge", show=False)
    add(session, letter, "gmail.com", name="Free Mail")
    add(session, letter, "google.com", display=ANONYMOUS)
    add(session, letter, "proton.me", display=ANONYMOUS)
    proton, google, free, plain, named = listed(session, letter)
    assert (named.name, named.verified_domain, named.verified_company) == (
        "Named Badge",
        "example.com",
        None,
    )
    assert (plain.name, plain.verified_domain) == ("No Badge", None)
    assert (free.name, free.verified_domain) == ("Free Mail", None)  # never a free-mail badge
    assert (google.name, google.verified_domain, google.verified_company) == (
        None,
        "google.com",
        "Google",
    )
    assert (proton.name, proton.verified_domain) == (None, None)


def test_recent_signers_include_anonymous_badge_holders_only(session: Session) -> None:
    letter = make_letter(session)
    add(session, letter, "example.com", name="Named")
    add(session, letter, "example.com", display=ANONYMOUS)  # with its badge
    add(session, letter, "", display=ANONYMOUS, show=False)  # nothing to show
    add(session, letter, "gmail.com", display=ANONYMOUS)  # a free-mail "badge": none
    recent = recent_public_signers(session, letter_id=letter.id)
    assert [(item.name, item.verified_domain) for item in recent] == [
        (None, "example.com"),
        ("Named", "example.com"),
    ]


# --- Safety in numbers -------------------------------------------------------------------


@pytest.mark.parametrize(("others", "shown"), [(9, False), (10, True), (11, True)])
def test_a_name_waits_for_its_threshold_reached_exactly(
    session: Session, others: int, shown: bool
) -> None:
    letter = make_letter(session)
    add(session, letter, "acme.com", name="Careful Person", organization="Acme", threshold=10)
    crowd(session, letter, "acme.com", others - 1, display=ANONYMOUS)
    # Those who do not show the badge, hidden ones, removed ones and other domains are
    # not the crowd the public can see.
    crowd(session, letter, "acme.com", 3, show=False)
    add(session, letter, "acme.com", hidden=True)
    add(session, letter, "acme.com", status=SignatureStatus.REMOVED)
    crowd(session, letter, "other.com", 5)
    add(session, letter, "acme.com")  # the last of the others, named
    careful = listed(session, letter, limit=100)[-1]  # the oldest
    if shown:
        assert (careful.name, careful.organization) == ("Careful Person", "Acme")
    else:
        assert (careful.name, careful.organization) == (None, None)
    assert careful.verified_domain == "acme.com"  # the badge shows either way


def test_the_crowd_is_the_company_across_its_domains(session: Session) -> None:
    letter = make_letter(session)
    letter.domain_names = {"google.com": "Google", "youtube.com": "Google"}
    add(session, letter, "google.com", name="Waiting", threshold=10)
    crowd(session, letter, "google.com", 4, display=ANONYMOUS)
    crowd(session, letter, "youtube.com", 5, display=ANONYMOUS)
    assert listed(session, letter, limit=100)[-1].name is None  # 9 others
    add(session, letter, "youtube.com", display=ANONYMOUS)
    first = listed(session, letter, limit=100)[-1]
    assert (first.name, first.verified_company) == ("Waiting", "Google")


@pytest.mark.parametrize(("others", "shown"), [(49, False), (50, True)])
def test_crowds_are_counted_only_as_far_as_the_highest_threshold(
    session: Session, others: int, shown: bool
) -> None:
    """A crowd is counted up to CROWD_CAP per domain (D188), so a page of a letter with a
    million signers costs what it costs with a thousand; the highest threshold is still
    decided exactly, and a company of several domains adds them up."""
    assert badges.CROWD_CAP == max(NAME_THRESHOLDS) + 1 == 51
    letter = make_letter(session)
    letter.domain_names = {"acme.com": "Acme", "acme.net": "Acme"}
    add(session, letter, "acme.com", name="Very Careful", threshold=50)
    crowd(session, letter, "acme.com", others - 5, display=ANONYMOUS)
    crowd(session, letter, "acme.net", 5, display=ANONYMOUS)
    crowd(session, letter, "big.example", badges.CROWD_CAP + 20, display=ANONYMOUS)
    assert (listed(session, letter, limit=200)[-1].name == "Very Careful") is shown
    sizes = badges.crowd_sizes(session, letter, ["acme.net", "big.example", "gmail.com"])
    assert sizes == {("company", "Acme"): others + 1, ("domain", "big.example"): 51}


def test_a_threshold_without_a_badge_keeps_the_name_waiting(session: Session) -> None:
    letter = make_letter(session)
    add(session, letter, "acme.com", name="No Badge", show=False, threshold=10)
    add(session, letter, "gmail.com", name="Free Mail", threshold=10)
    crowd(session, letter, "acme.com", 12)
    crowd(session, letter, "gmail.com", 12)
    items = listed(session, letter, limit=100)
    assert {item.name for item in items[-2:]} == {None}
    assert "No Badge" not in {item.name for item in items}


def test_a_waiting_name_is_never_found_by_search(session: Session) -> None:
    letter = make_letter(session)
    add(session, letter, "acme.com", name="Jane Smithson", organization="Acme")
    add(session, letter, "acme.com", name="John Smith", organization="Acme", threshold=50)
    # Newest first, one a page: the page is filled past the waiting one, so neither an
    # empty page nor a cursor tells that it was there.
    items, after = list_public_signatures(session, letter_id=letter.id, query="Smith", limit=1)
    assert [item.name for item in items] == ["Jane Smithson"]
    assert after is None
    items, after = list_public_signatures(session, letter_id=letter.id, query="John", limit=1)
    assert (items, after) == ([], None)
    assert [item.name for item in listed(session, letter, query="Acme")] == ["Jane Smithson"]


def test_search_pages_skip_many_waiting_names(session: Session) -> None:
    letter = make_letter(session)
    for n in range(3):
        add(session, letter, "acme.com", name=f"Match shown {n}")
        crowd(session, letter, "acme.com", 4, name=f"Match waiting {n}", threshold=50)
    seen: list[str | None] = []
    after = None
    while True:
        items, after = list_public_signatures(
            session, letter_id=letter.id, query="Match", after=after, limit=2
        )
        seen += [item.name for item in items]
        if after is None:
            break
    assert seen == [f"Match shown {n}" for n in (2, 1, 0)]


def test_a_page_of_waiting_names_costs_two_queries(session: Session) -> None:
    letter = make_letter(session)
    for domain in ("a.example", "b.example", "c.example", "d.example"):
        crowd(session, letter, domain, 5, threshold=10)
    with statements(session) as seen:
        items = listed(session, letter, limit=50)
    assert len(items) == 20 and {item.name for item in items} == {None}
    assert len([s for s in seen if "FROM signatures" in s]) == 2  # the page, the crowds


def test_approved_comments_keep_a_waiting_name_too(session: Session) -> None:
    letter = make_letter(session)
    add(session, letter, "acme.com", name="Waiting Writer", threshold=10, comment="Yes.")
    add(session, letter, "acme.com", name="Open Writer", comment="Also yes.")
    comments = moderation.public_comments(session, letter_id=letter.id)
    assert [(c.name, c.comment) for c in comments] == [("Open Writer", "Also yes."),
                                                       (None, "Yes.")]  # fmt: skip


# --- Organizations -----------------------------------------------------------------------


def test_an_organization_letter_lists_organizations_with_who_signed(session: Session) -> None:
    letter = make_letter(session)
    letter.signers = SignerKind.ORGANIZATIONS
    signature = add(session, letter, "chamber.example", name="Ana Lee", organization="Lee & Co")
    signature.title = "Owner"
    [item] = listed(session, letter)
    assert (item.organization, item.name, item.title) == ("Lee & Co", "Ana Lee", "Owner")


# --- Confirmed by the organizers ----------------------------------------------------------


def test_organizers_confirm_a_named_signature_and_it_is_audited(session: Session) -> None:
    letter = make_letter(session)
    notable = add(session, letter, "example.com", name="Famous Person")
    anonymous = add(session, letter, "example.com", display=ANONYMOUS)
    waiting = add(session, letter, "example.com", name="Waiting", threshold=10)
    kwargs: dict[str, Any] = {"actor": SHELL, "letter_id": letter.id}

    def confirm(signature: Signature | None, confirmed: bool = True) -> bool:
        position = signature.position if signature else 99
        assert position is not None
        return moderation.set_organizer_confirmed(
            session, position=position, confirmed=confirmed, **kwargs
        )

    assert confirm(notable)
    assert not confirm(notable)  # already: nothing changes
    with pytest.raises(InvalidInput):
        confirm(anonymous)
    with pytest.raises(NotFound):
        confirm(None)
    assert confirm(waiting)
    session.expire_all()
    by_name = {item.name: item for item in listed(session, letter)}
    assert by_name["Famous Person"].organizer_confirmed is True
    # A name still waiting shows no confirmation either: it would point at someone.
    assert [item.organizer_confirmed for item in listed(session, letter)] == [False, False, True]
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
    ).all()
    assert actions == ["signature.confirm", "signature.confirm"]
    assert confirm(notable, confirmed=False)
    session.expire_all()
    assert not any(item.organizer_confirmed for item in listed(session, letter))
    [row] = [r for r in moderation.list_signatures(
        session, letter_id=letter.id, found=moderation.parse_filter())[0]
        if r.position == waiting.position]  # fmt: skip
    assert row.organizer_confirmed is True  # organizers still see their own mark


# --- The breakdown -----------------------------------------------------------------------


def groups(dimension: Any) -> list[tuple[str, str, int]]:
    return [(group.kind, group.name, group.count) for group in dimension.groups]


def test_small_groups_fold_into_other_two_versus_three(session: Session) -> None:
    letter = make_letter(session)
    letter.domain_names = {"google.com": "Google", "youtube.com": "Google"}
    crowd(session, letter, "three.example", 3, display=ANONYMOUS)
    crowd(session, letter, "two.example", 2)
    add(session, letter, "one.example")
    crowd(session, letter, "google.com", 2)
    add(session, letter, "youtube.com", display=ANONYMOUS)  # Google: 3 across two domains
    crowd(session, letter, "gmail.com", 5)  # free mail: never counted
    crowd(session, letter, "hidden.example", 4, show=False)  # did not choose the badge
    crowd(session, letter, "gone.example", 3, hidden=True)  # hidden from the list
    result = letter_breakdown(session, letter=letter)
    assert groups(result.verified_domains) == [
        ("company", "Google", 3),
        ("domain", "three.example", 3),
    ]
    assert (result.verified_domains.other, result.verified_domains.total) == (3, 9)
    assert result.min_group_size == 3


def test_organizations_group_ignoring_case_and_fold_small_ones(session: Session) -> None:
    letter = make_letter(session)
    for spelling in ("Acme Corp", "ACME  corp", "Acme Corp"):
        add(session, letter, "", show=False, organization=spelling)
    crowd(session, letter, "", 2, show=False, organization="Tiny Shop")
    crowd(session, letter, "", 3, display=ANONYMOUS, show=False)  # keep no organization
    # Waiting for their threshold: not listed with their details, not counted here.
    crowd(session, letter, "waiting.example", 3, organization="Waiting Inc", threshold=50)
    result = letter_breakdown(session, letter=letter).organizations
    assert result.groups == [BreakdownGroup(name="Acme Corp", kind="organization", count=3)]
    assert (result.other, result.total) == (2, 5)


def test_waiting_names_count_by_organization_once_their_crowd_is_there(
    session: Session,
) -> None:
    letter = make_letter(session)
    crowd(session, letter, "big.example", 3, organization="Big Co", threshold=10)
    crowd(session, letter, "big.example", 7, display=ANONYMOUS)
    assert letter_breakdown(session, letter=letter).organizations.total == 0  # 9 others
    add(session, letter, "big.example", display=ANONYMOUS)
    result = letter_breakdown(session, letter=letter)
    assert groups(result.organizations) == [("organization", "Big Co", 3)]
    assert groups(result.verified_domains) == [("domain", "big.example", 11)]


def test_the_breakdown_is_one_query_per_dimension(session: Session) -> None:
    letter = make_letter(session)
    for n in range(30):
        add(session, letter, f"d{n % 6}.example", organization=f"Org {n % 4}",
            threshold=10 if n % 3 == 0 else None)  # fmt: skip
    with statements(session) as seen:
        letter_breakdown(session, letter=letter)
    assert len([s for s in seen if "FROM signatures" in s]) == 2
