"""The moderation pages, bulk invalidation and the CSV export over HTTP: every route
for every role, CSRF, bad filters, and what the pages show (and never show)."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, update

from app.letters.models import Letter, LetterTally
from app.organizers.models import AuditEvent, Role
from app.signatures import export
from app.signatures.models import RemovalReason, Signature, SignatureDisplay, SignatureStatus
from tests.support.organizers import post_form, sign_in_as
from tests.web.flows import add_letter, add_verified_signers, tally_on

ADA = {
    "name": "Ada Lovelace",
    "email": "ada@engines.example",
    "organization": "Analytical Engines",
    "contact_ok": True,
}


# --- helpers -------------------------------------------------------------------------


def base(letter: Letter) -> str:
    return f"/dashboard/letters/{letter.slug}/signatures"


def state(app: FastAPI, letter: Letter) -> dict[int, tuple[SignatureStatus, bool, bool]]:
    """position -> (status, hidden, comment approved)."""
    with app.state.database.read() as session:
        rows = session.execute(
            select(
                Signature.position,
                Signature.status,
                Signature.hidden,
                Signature.comment_approved,
            ).where(Signature.letter_id == letter.id)
        ).all()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def stored_tally(app: FastAPI, letter: Letter) -> int:
    with app.state.database.read() as session:
        counter = session.scalar(
            select(LetterTally.verified_count).where(LetterTally.letter_id == letter.id)
        )
        verified = session.scalar(
            select(func.count())
            .select_from(Signature)
            .where(Signature.letter_id == letter.id, Signature.status == SignatureStatus.VERIFIED)
        )
    assert counter == verified, "the tally must equal the verified rows"
    return int(counter or 0)


def audit(app: FastAPI, letter: Letter) -> list[tuple[str, dict[str, Any]]]:
    with app.state.database.read() as session:
        return [
            (item.action, item.detail)
            for item in session.scalars(
                select(AuditEvent).where(AuditEvent.letter_id == letter.id).order_by(AuditEvent.id)
            )
        ]


def set_fields(app: FastAPI, letter: Letter, **values: Any) -> None:
    with app.state.database.write() as session:
        session.execute(update(Signature).where(Signature.letter_id == letter.id).values(**values))


def letter_with_signers(app: FastAPI, count: int = 2, **letter_fields: Any) -> Letter:
    letter = add_letter(app, **letter_fields)
    people = [ADA] + [{"email": f"signer{n}@example.org"} for n in range(count - 1)]
    add_verified_signers(app, letter, *people[:count])
    return letter


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = app.state.database.engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


ACTIONS = ["hide", "unhide", "remove", "restore", "comment/approve", "comment/unapprove"]


BULK = {"domain": "example.org", "as_of": "2030-01-01T00:00:00+00:00", "expected": "9",
        "reason": "bot"}  # fmt: skip


def action_data(action: str) -> dict[str, str]:
    return {"reason": "bot"} if action == "remove" else BULK if action == "bulk" else {}


# --- Who may see and do what ---------------------------------------------------------------


def test_signed_out_organizers_are_sent_to_login(app: FastAPI, client: TestClient) -> None:
    letter = letter_with_signers(app)
    for path in (
        base(letter),
        f"{base(letter)}/bulk",
        f"/dashboard/letters/{letter.slug}/export.csv",
    ):
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    for action in [*ACTIONS, "bulk"]:
        path = f"{base(letter)}/bulk" if action == "bulk" else f"{base(letter)}/1/{action}"
        response = post_form(client, path, action_data(action))
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    assert audit(app, letter) == []


def test_an_organizer_without_a_role_finds_nothing(app: FastAPI, client: TestClient) -> None:
    letter = letter_with_signers(app)
    mine = add_letter(app)
    sign_in_as(client, app, "editor@example.org", letter_slug=mine.slug, role=Role.OWNER)
    for path in (
        base(letter),
        f"{base(letter)}/bulk",
        f"/dashboard/letters/{letter.slug}/export.csv",
    ):
        assert client.get(path).status_code == 404, path
    for action in ACTIONS:
        response = post_form(client, f"{base(letter)}/1/{action}", action_data(action))
        assert response.status_code == 404, action
    assert post_form(client, f"{base(letter)}/bulk", BULK).status_code == 404
    assert client.get("/dashboard/letters/no-such-letter/signatures").status_code == 404
    assert all(status == SignatureStatus.VERIFIED for status, _, _ in state(app, letter).values())
    assert stored_tally(app, letter) == 2


def test_a_viewer_sees_the_list_and_changes_nothing(app: FastAPI, client: TestClient) -> None:
    letter = letter_with_signers(app)
    sign_in_as(client, app, "viewer@example.org", letter_slug=letter.slug, role=Role.VIEWER)
    page = client.get(base(letter))
    assert page.status_code == 200
    assert "Ada Lovelace" in page.text
    assert "/remove" not in page.text and "/hide" not in page.text
    assert "export.csv" not in page.text
    for action in ACTIONS:
        response = post_form(client, f"{base(letter)}/1/{action}", action_data(action))
        assert response.status_code == 403, action
    assert client.get(f"{base(letter)}/bulk?domain=example.org").status_code == 403
    assert post_form(client, f"{base(letter)}/bulk", BULK).status_code == 403
    assert client.get(f"/dashboard/letters/{letter.slug}/export.csv").status_code == 403
    assert stored_tally(app, letter) == 2
    assert audit(app, letter) == []


def test_an_editor_moderates_but_cannot_bulk_export_or_approve(
    app: FastAPI, client: TestClient
) -> None:
    letter = letter_with_signers(app, 3)
    set_fields(app, letter, comment="Because.", comment_public_ok=True)
    sign_in_as(client, app, "editor@example.org", letter_slug=letter.slug, role=Role.EDITOR)
    page = client.get(base(letter))
    assert "/1/remove" in page.text and "/1/hide" in page.text
    assert "comment/approve" not in page.text and "export.csv" not in page.text

    response = post_form(client, f"{base(letter)}/1/hide", {})
    assert response.status_code == 303
    assert response.headers["location"] == f"{base(letter)}?done=hidden&n=1#sig-1"
    assert response.headers["cache-control"] == "no-store"
    assert state(app, letter)[1] == (SignatureStatus.VERIFIED, True, False)
    assert post_form(client, f"{base(letter)}/1/unhide", {}).status_code == 303
    assert state(app, letter)[1][1] is False

    assert post_form(client, f"{base(letter)}/2/remove", {"reason": "duplicate"}).status_code == 303
    assert state(app, letter)[2][0] == SignatureStatus.REMOVED
    assert stored_tally(app, letter) == 2
    again = post_form(client, f"{base(letter)}/2/remove", {"reason": "bot"})
    assert "done=unchanged" in again.headers["location"]
    assert stored_tally(app, letter) == 2
    assert post_form(client, f"{base(letter)}/2/restore", {}).status_code == 303
    assert stored_tally(app, letter) == 3

    assert post_form(client, f"{base(letter)}/1/comment/approve", {}).status_code == 403
    assert client.get(f"{base(letter)}/bulk").status_code == 403
    assert client.get(f"/dashboard/letters/{letter.slug}/export.csv").status_code == 403
    assert [action for action, _ in audit(app, letter)] == [
        "signature.hide",
        "signature.unhide",
        "signature.remove",
        "signature.restore",
    ]


def test_an_editor_of_one_letter_cannot_touch_another(app: FastAPI, client: TestClient) -> None:
    mine = letter_with_signers(app, 1)
    theirs = letter_with_signers(app, 1)
    sign_in_as(client, app, "editor@example.org", letter_slug=mine.slug, role=Role.EDITOR)
    assert post_form(client, f"{base(theirs)}/1/remove", {"reason": "bot"}).status_code == 404
    assert state(app, theirs)[1][0] == SignatureStatus.VERIFIED


def test_an_admin_acts_as_owner(app: FastAPI, client: TestClient) -> None:
    letter = letter_with_signers(app, 1)
    sign_in_as(client, app, "admin@example.org", is_admin=True)
    assert client.get(base(letter)).status_code == 200
    assert client.get(f"/dashboard/letters/{letter.slug}/export.csv").status_code == 200


def test_every_form_needs_its_csrf_token(app: FastAPI, client: TestClient) -> None:
    letter = letter_with_signers(app)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    client.get(base(letter))  # the page sets the CSRF cookie
    for action in ACTIONS:
        for token in ("", "forged-token-that-does-not-match-the-cookie-value"):
            response = client.post(
                f"{base(letter)}/1/{action}",
                data={**action_data(action), "csrf_token": token},
                follow_redirects=False,
            )
            assert response.status_code == 403, action
            assert "This form has expired" in response.text
    response = client.post(f"{base(letter)}/bulk", data=BULK, follow_redirects=False)
    assert response.status_code == 403
    assert stored_tally(app, letter) == 2
    assert all(not hidden for _, hidden, _ in state(app, letter).values())
    assert audit(app, letter) == []


# --- The list ------------------------------------------------------------------------------


def test_the_list_shows_signatures_but_never_an_address(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    add_verified_signers(
        app,
        letter,
        {**ADA, "title": "Analyst", "city": "London"},
        {"email": "hidden-person@anon.example", "display": SignatureDisplay.ANONYMOUS},
    )
    set_fields(app, letter, comment="<script>alert(1)</script> & more", comment_public_ok=True,
               version=2)  # fmt: skip
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    page = client.get(base(letter))
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    shown = ["Ada Lovelace", "Analyst", "Analytical Engines", "London", "engines.example",
             "Anonymous", "2 counted signatures", "The signer agreed it may be shown"]  # fmt: skip
    for words in shown:
        assert words in text, words
    assert "ada@engines.example" not in text
    assert "hidden-person" not in text and "anon.example" not in text
    # Comments are text, never markup.
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in text
    assert "Version signed: 2<" in text
    # Newest first.
    assert text.index('id="sig-2"') < text.index('id="sig-1"')


def test_the_list_filters_and_pages(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    add_verified_signers(
        app,
        letter,
        *[{"email": f"p{n}@bots.example", "organization": "Bot Farm"} for n in range(3)],
        {"email": "real@people.example", "organization": "People Inc"},
    )
    sign_in_as(client, app, "viewer@example.org", letter_slug=letter.slug, role=Role.VIEWER)
    page = client.get(base(letter), params={"domain": "BOTS.example"})
    assert page.status_code == 200
    assert "3 matching" in page.text
    assert 'id="sig-4"' not in page.text
    page = client.get(base(letter), params={"organization": "people", "status": "verified"})
    assert "1 matching" in page.text and 'id="sig-4"' in page.text
    assert client.get(base(letter), params={"status": "removed"}).text.count('id="sig-') == 0
    assert "Older" not in page.text  # one page


def test_pages_follow_the_cursor(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    letter = add_letter(app)
    add_verified_signers(app, letter, *[{"email": f"s{n}@example.org"} for n in range(5)])
    from app.signatures import moderation

    real = moderation.list_signatures

    def small(*args: Any, **kwargs: Any) -> Any:
        return real(*args, **{**kwargs, "limit": 2})

    monkeypatch.setattr(moderation, "list_signatures", small)
    sign_in_as(client, app, "viewer@example.org", letter_slug=letter.slug, role=Role.VIEWER)
    seen: list[str] = []
    page = client.get(base(letter), params={"domain": "example.org"})
    while True:
        seen += re.findall(r'id="sig-(\d+)"', page.text)
        match = re.search(r'href="([^"]+)">Older<', page.text)
        if not match:
            break
        next_url = html.unescape(match.group(1))
        assert "domain=example.org" in next_url  # the filter rides along
        assert "position" not in next_url
        page = client.get(next_url)
    assert seen == ["5", "4", "3", "2", "1"]
    assert client.get(base(letter), params={"after": "not-a-cursor"}).status_code == 422


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "yesterday"}, "YYYY-MM-DD"),
        ({"to": "2026-13-01"}, "YYYY-MM-DD"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "before its start"),
        ({"domain": "no spaces.example"}, "Enter a domain like example.org"),
        ({"organization": "ab"}, "at least 3 characters"),
        ({"status": "gone"}, "Choose one of the options"),
    ],
)
def test_a_bad_filter_is_a_clear_422(
    app: FastAPI, client: TestClient, params: dict[str, str], message: str
) -> None:
    letter = letter_with_signers(app, 1)
    sign_in_as(client, app, "viewer@example.org", letter_slug=letter.slug, role=Role.VIEWER)
    page = client.get(base(letter), params=params)
    assert page.status_code == 422
    assert message in page.text
    assert "The filter is not valid" in page.text
    assert 'aria-invalid="true"' in page.text
    assert "Error:" in page.text.split("</title>")[0]
    # What was typed is given back, escaped.
    for value in params.values():
        assert f'value="{html.escape(value)}"' in page.text or value in ("gone",)


def test_the_list_makes_the_same_queries_for_3_or_30_rows(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    add_verified_signers(app, letter, *[{"email": f"q{n}@example.org"} for n in range(3)])
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    with statements(app) as few:
        assert client.get(base(letter)).status_code == 200
    add_verified_signers(app, letter, *[{"email": f"r{n}@example.org"} for n in range(27)])
    with statements(app) as many:
        page = client.get(base(letter))
    assert page.text.count('id="sig-') == 30
    assert len(many) == len(few) <= 8


def test_actions_return_to_the_filter_they_came_from(app: FastAPI, client: TestClient) -> None:
    letter = letter_with_signers(app, 2)
    sign_in_as(client, app, "editor@example.org", letter_slug=letter.slug, role=Role.EDITOR)
    back = "domain=example.org&status=verified&evil=https%3A%2F%2Fexample.net&next=//x"
    response = post_form(client, f"{base(letter)}/2/hide", {"back": back})
    location = response.headers["location"]
    assert location.startswith(f"{base(letter)}?")
    assert "domain=example.org" in location and "status=verified" in location
    assert "evil" not in location and "next" not in location
    page = client.get(location.split("#")[0])
    assert "Signature #2 is hidden from the public list" in page.text


def test_a_missing_signature_is_404_and_a_bad_position_422(
    app: FastAPI, client: TestClient
) -> None:
    letter = letter_with_signers(app, 1)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    assert post_form(client, f"{base(letter)}/99/hide", {}).status_code == 404
    assert post_form(client, f"{base(letter)}/0/hide", {}).status_code == 422
    assert post_form(client, f"{base(letter)}/{2**40}/hide", {}).status_code == 422
    assert post_form(client, f"{base(letter)}/1/remove", {"reason": "spite"}).status_code == 422
    assert stored_tally(app, letter) == 1


# --- Comments ------------------------------------------------------------------------------


def test_an_owner_approves_a_comment_and_the_public_page_shows_it(
    app: FastAPI, client: TestClient
) -> None:
    letter = letter_with_signers(app, 2)
    public_page = client.get(f"/letters/{letter.slug}")
    assert "Why people signed" not in public_page.text  # nothing when empty
    with app.state.database.write() as session:
        session.execute(
            update(Signature)
            .where(Signature.letter_id == letter.id, Signature.position == 1)
            .values(comment="Line one <b>bold</b>\nLine two", comment_public_ok=True)
        )
        session.execute(
            update(Signature)
            .where(Signature.letter_id == letter.id, Signature.position == 2)
            .values(comment="Keep this private", comment_public_ok=False)
        )
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    page = client.get(base(letter))
    assert f"{base(letter)}/1/comment/approve" in page.text
    assert f"{base(letter)}/2/comment/approve" not in page.text  # not agreed: no button
    assert "Keep this private" in page.text  # organizers read it all
    assert post_form(client, f"{base(letter)}/1/comment/approve", {}).status_code == 303
    refused = post_form(client, f"{base(letter)}/2/comment/approve", {})
    assert refused.status_code == 422
    assert state(app, letter)[1][2] is True and state(app, letter)[2][2] is False

    public_page = client.get(f"/letters/{letter.slug}")
    assert "Why people signed" in public_page.text
    assert "<p>Line one &lt;b&gt;bold&lt;/b&gt;</p><p>Line two</p>" in public_page.text
    assert re.search(r"Ada Lovelace, <time datetime=\"\d{4}-\d\d-\d\d\">", public_page.text)
    assert "Keep this private" not in public_page.text

    assert post_form(client, f"{base(letter)}/1/comment/unapprove", {}).status_code == 303
    assert "Why people signed" not in client.get(f"/letters/{letter.slug}").text
    assert [action for action, _ in audit(app, letter)] == ["comment.approve", "comment.unapprove"]


def test_a_hidden_or_removed_signature_takes_its_comment_off_the_public_page(
    app: FastAPI, client: TestClient
) -> None:
    letter = letter_with_signers(app, 1)
    set_fields(app, letter, comment="Approved words", comment_public_ok=True, comment_approved=True)
    assert "Approved words" in client.get(f"/letters/{letter.slug}").text
    sign_in_as(client, app, "editor@example.org", letter_slug=letter.slug, role=Role.EDITOR)
    post_form(client, f"{base(letter)}/1/hide", {})
    assert "Approved words" not in client.get(f"/letters/{letter.slug}").text
    post_form(client, f"{base(letter)}/1/unhide", {})
    post_form(client, f"{base(letter)}/1/remove", {"reason": "invalid"})
    assert "Approved words" not in client.get(f"/letters/{letter.slug}").text


# --- Bulk invalidation ---------------------------------------------------------------------


def bulk_form(page: str) -> dict[str, str]:
    """The hidden fields of the confirm form on a preview page."""
    form = page[page.index('class="bulk-confirm"') :]
    form = form[: form.index("</form>")]
    fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))
    fields.pop("csrf_token")
    return {key: html.unescape(value) for key, value in fields.items()}


def test_an_owner_previews_then_applies_a_bulk_invalidation(
    app: FastAPI, client: TestClient
) -> None:
    letter = add_letter(app)
    add_verified_signers(
        app,
        letter,
        *[{"email": f"b{n}@bots.example", "name": f"Bot {n}"} for n in range(4)],
        {"email": "real@people.example"},
    )
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    empty = client.get(f"{base(letter)}/bulk")
    assert empty.status_code == 200 and "bulk-confirm" not in empty.text
    preview = client.get(f"{base(letter)}/bulk", params={"domain": "Bots.Example"})
    assert preview.status_code == 200
    assert "This will remove 4 counted signatures" in preview.text
    assert "Bot 3" in preview.text and "real@" not in preview.text
    fields = bulk_form(preview.text)
    assert fields["domain"] == "bots.example" and fields["expected"] == "4"
    assert stored_tally(app, letter) == 5  # a preview changes nothing

    response = post_form(client, f"{base(letter)}/bulk", {**fields, "reason": "bot"})
    assert response.status_code == 303
    assert response.headers["location"] == f"{base(letter)}?done=bulk&removed=4&previewed=4"
    assert stored_tally(app, letter) == 1
    page = client.get(response.headers["location"])
    assert "4 signatures removed." in page.text
    assert tally_on(client.get(f"/letters/{letter.slug}").text) == 1
    (action, detail), = audit(app, letter)  # fmt: skip
    assert action == "signatures.bulk_remove"
    assert detail["filter"]["domain"] == "bots.example"
    assert (detail["removed"], detail["previewed"], detail["reason"]) == (4, 4, "bot")


def test_bulk_says_when_fewer_were_removed_than_previewed(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    add_verified_signers(app, letter, *[{"email": f"b{n}@bots.example"} for n in range(3)])
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    fields = bulk_form(client.get(f"{base(letter)}/bulk", params={"domain": "bots.example"}).text)
    post_form(client, f"{base(letter)}/1/remove", {"reason": "duplicate"})
    response = post_form(client, f"{base(letter)}/bulk", {**fields, "reason": "bot"})
    assert "removed=2&previewed=3" in response.headers["location"]
    page = client.get(response.headers["location"])
    assert "2 signatures removed." in page.text
    assert "The preview counted 3: 1 had left the count in the meantime." in page.text
    assert stored_tally(app, letter) == 0


def test_bulk_refuses_more_than_previewed(app: FastAPI, client: TestClient) -> None:
    letter = add_letter(app)
    add_verified_signers(app, letter, *[{"email": f"b{n}@bots.example"} for n in range(3)])
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    post_form(client, f"{base(letter)}/1/remove", {"reason": "bot"})
    fields = bulk_form(client.get(f"{base(letter)}/bulk", params={"domain": "bots.example"}).text)
    assert fields["expected"] == "2"
    post_form(client, f"{base(letter)}/1/restore", {})
    response = post_form(client, f"{base(letter)}/bulk", {**fields, "reason": "bot"})
    assert response.status_code == 409
    assert "Nothing was removed" in response.text
    assert "This will remove 3 counted signatures" in response.text  # the new preview
    assert stored_tally(app, letter) == 3
    assert bulk_form(response.text)["expected"] == "3"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "Choose an email domain, an organization or a time window"),
        ({"from": "last week"}, "YYYY-MM-DD"),
        ({"domain": "bots.example", "as_of": "whenever"}, "preview the filter again"),
    ],
)
def test_bulk_with_a_bad_filter_is_a_clear_422(
    app: FastAPI, client: TestClient, fields: dict[str, str], message: str
) -> None:
    letter = letter_with_signers(app, 1)
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    data = {"as_of": "2030-01-01T00:00:00+00:00", "expected": "1", "reason": "bot", **fields}
    response = post_form(client, f"{base(letter)}/bulk", data)
    assert response.status_code == 422
    assert message in response.text
    assert stored_tally(app, letter) == 1
    if "from" in fields:
        page = client.get(f"{base(letter)}/bulk", params=fields)
        assert page.status_code == 422 and message in page.text


# --- Export --------------------------------------------------------------------------------


def test_an_owner_exports_a_streamed_csv(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    letter = add_letter(app)
    add_verified_signers(
        app,
        letter,
        ADA,
        {"email": "quiet@example.org", "name": '=HYPERLINK("x")'},
        *[{"email": f"m{n}@example.org"} for n in range(9)],
    )
    post = {"reason": RemovalReason.BOT.value}
    sign_in_as(client, app, "owner@example.org", letter_slug=letter.slug, role=Role.OWNER)
    post_form(client, f"{base(letter)}/3/remove", post)
    monkeypatch.setattr(export, "BATCH_SIZE", 2)
    with statements(app) as seen:
        response = client.get(f"/dashboard/letters/{letter.slug}/export.csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{letter.slug}-signatures.csv"'
    )
    assert response.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(row["position"]) for row in rows] == [1, 2, *range(4, 12)]
    assert rows[0]["email"] == "ada@engines.example"  # agreed to be contacted
    assert rows[1]["email"] == "" and rows[1]["name"] == '\'=HYPERLINK("x")'
    batches = [s for s in seen if "FROM signatures" in s and "ORDER BY signatures.position" in s]
    assert len(batches) == 6  # 10 rows, 2 at a time, and the empty read that ends it
    assert audit(app, letter)[-1] == ("signatures.export", {})
