"""Which email domains may sign a letter (app/abuse/domains.py): throwaway-address
domains, a letter's forbidden and required domains, subdomains, IDNA forms, and the
messages people read. On letters that were never in a database: the check needs none."""

from __future__ import annotations

import pytest
from email_validator import validate_email

from app.abuse.domains import DISPOSABLE, check_email_domain
from app.errors import InvalidInput
from app.letters.models import Letter

THROWAWAY = "mailinator.com"


def letter(*, forbidden: list[str] | None = None, required: list[str] | None = None) -> Letter:
    """A letter in memory only (no session): the check may not query anything."""
    return Letter(
        slug="a-letter", forbidden_domains=forbidden or [], required_domains=required or []
    )


def refusal(letter: Letter, address: str) -> str:
    """The message for the email field; fails if the address is accepted."""
    with pytest.raises(InvalidInput) as caught:
        check_email_domain(letter, address)
    assert caught.value.status_code == 422
    assert set(caught.value.fields) == {"email"}
    assert caught.value.detail == caught.value.fields["email"]
    return caught.value.fields["email"]


def accepted(letter: Letter, address: str) -> bool:
    check_email_domain(letter, address)  # raises if refused
    return True


def test_the_list_is_the_maintained_package_s() -> None:
    assert len(DISPOSABLE) > 1000
    assert THROWAWAY in DISPOSABLE
    assert all(domain == domain.lower() for domain in DISPOSABLE)


@pytest.mark.parametrize(
    "address",
    [
        f"someone@{THROWAWAY}",
        f"Someone@{THROWAWAY.upper()}",  # the domain is compared lower-cased
        f"someone@inbox.{THROWAWAY}",  # a subdomain of a listed domain
        "someone@a.b.yopmail.com",
    ],
)
def test_throwaway_addresses_are_refused_with_a_clear_message(address: str) -> None:
    domain = address.rpartition("@")[2].lower()
    assert refusal(letter(), address) == (
        f"Addresses at {domain} are throwaway addresses; use your usual address."
    )


def test_only_whole_labels_match() -> None:
    lookalikes = ["someone@x" + THROWAWAY, f"someone@{THROWAWAY}.example.org"]
    assert "x" + THROWAWAY not in DISPOSABLE
    for address in lookalikes:
        assert accepted(letter(), address)
    assert accepted(letter(), "someone@example.org")
    assert accepted(letter(forbidden=["bad.example"]), "someone@notbad.example")


def test_an_internationalized_throwaway_domain_is_refused_in_either_form() -> None:
    ascii_form = sorted(domain for domain in DISPOSABLE if domain.startswith("xn--"))[0]
    unicode_form = validate_email(f"a@{ascii_form}", check_deliverability=False).domain
    assert unicode_form != ascii_form
    for domain in (ascii_form, unicode_form):
        assert "throwaway" in refusal(letter(), f"someone@{domain}")


def test_forbidden_domains_and_their_subdomains_are_refused() -> None:
    forbidding = letter(forbidden=["rival.example", "spam.test.example"])
    for address in ("a@rival.example", "a@RIVAL.example", "a@mail.rival.example",
                    "a@spam.test.example", "a@x.spam.test.example"):  # fmt: skip
        domain = address.rpartition("@")[2].lower()
        assert refusal(forbidding, address) == f"This letter does not accept addresses at {domain}."
    for address in ("a@example.org", "a@test.example", "a@other-rival.example"):
        assert accepted(forbidding, address)


def test_required_domains_let_only_their_addresses_sign() -> None:
    employees = letter(required=["example.com", "example.org"])
    for address in ("a@example.com", "a@EXAMPLE.ORG", "a@staff.example.com"):
        assert accepted(employees, address)
    only = "Only addresses at example.com, example.org can sign this letter."
    for address in ("a@example.net", "a@notexample.com", "a@example.com.evil.example",
                    f"a@{THROWAWAY}"):  # fmt: skip
        assert refusal(employees, address) == only


def test_a_required_domain_is_vouched_for_even_if_listed_as_throwaway() -> None:
    """The organizers name the domain themselves: the list's rare false positive must
    not lock an organization out of its own letter."""
    assert accepted(letter(required=[THROWAWAY]), f"a@{THROWAWAY}")
    assert accepted(letter(required=[THROWAWAY]), f"a@sub.{THROWAWAY}")
    assert "throwaway" in refusal(letter(forbidden=["example.net"]), f"a@{THROWAWAY}")


def test_forbidden_and_required_together() -> None:
    """The employees of example.com, but not its contractors' subdomain."""
    staff = letter(required=["example.com"], forbidden=["contractors.example.com"])
    assert accepted(staff, "a@example.com")
    assert accepted(staff, "a@hq.example.com")
    assert refusal(staff, "a@contractors.example.com") == (
        "This letter does not accept addresses at contractors.example.com."
    )
    assert refusal(staff, "a@x.contractors.example.com").startswith("This letter does not")
    assert refusal(staff, "a@example.org").startswith("Only addresses at example.com ")


def test_internationalized_required_domains_match_either_form() -> None:
    munich = letter(required=["münchen.de"])
    for address in ("a@münchen.de", "a@MÜNCHEN.DE", "a@xn--mnchen-3ya.de", "a@rat.münchen.de"):
        assert accepted(munich, address)
    assert refusal(munich, "a@munchen.de") == "Only addresses at münchen.de can sign this letter."
    assert refusal(letter(forbidden=["xn--mnchen-3ya.de"]), "a@münchen.de").startswith(
        "This letter does not accept"
    )


def test_a_long_required_list_is_named_in_part() -> None:
    many = letter(required=[f"d{number}.example" for number in range(25)])
    message = refusal(many, "a@example.org")
    assert message.startswith("Only addresses at d0.example, d1.example, ")
    assert "d9.example (or one of 15 other domains) can sign this letter." in message
    assert "d10.example" not in message
    assert accepted(many, "a@d24.example")


def test_a_letter_without_lists_refuses_only_throwaway_addresses() -> None:
    plain = Letter(slug="fresh")  # lists not set yet (None before a flush)
    assert accepted(plain, "a@example.org")
    assert "throwaway" in refusal(plain, f"a@{THROWAWAY}")


def test_the_answer_depends_only_on_the_letter_and_the_address() -> None:
    """Asked twice, or after other addresses, the same answer: nothing is remembered
    (signing's no-enumeration property)."""
    staff = letter(required=["example.com"])
    first = [_outcome(staff, f"p{n}@example.{tld}") for n in range(3) for tld in ("com", "net")]
    again = [_outcome(staff, f"p{n}@example.{tld}") for n in range(3) for tld in ("com", "net")]
    assert first == again == ["ok", "refused"] * 3


def _outcome(letter: Letter, address: str) -> str:
    try:
        check_email_domain(letter, address)
    except InvalidInput:
        return "refused"
    return "ok"
