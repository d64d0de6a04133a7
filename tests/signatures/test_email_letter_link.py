"""The emails a signer gets carry the link to the letter in both parts."""

from __future__ import annotations

import re

import pytest

from app.templating import render_blocks

LETTER_URL = "https://letters.example.org/letters/ice-out"
CONTEXT = {
    "letter": {"title": "Cancel the contracts"},
    "letter_url": LETTER_URL,
    "verify_url": "https://letters.example.org/verify/abc.def",
    "max_age_days": 7,
}


@pytest.mark.parametrize("template", ["emails/verify.jinja", "emails/already_signed.jinja"])
def test_both_parts_link_to_the_letter(template: str) -> None:
    parts = render_blocks(template, CONTEXT)

    assert LETTER_URL in parts["text"]
    links = re.findall(r'<a href="([^"]+)"', parts["html"])
    assert LETTER_URL in links, parts["html"]


def test_the_verify_email_still_leads_with_the_confirm_link() -> None:
    parts = render_blocks("emails/verify.jinja", CONTEXT)
    links = re.findall(r'<a href="([^"]+)"', parts["html"])
    assert links == [CONTEXT["verify_url"], LETTER_URL]
