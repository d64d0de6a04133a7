"""Which email domains may sign a letter. (Stub: filled in by the email-domains work.)"""

from __future__ import annotations

from app.letters.models import Letter


def check_email_domain(letter: Letter, address: str) -> None:
    """Raises InvalidInput(fields={"email": …}) when this address may not sign `letter`:
    a disposable-address domain, a domain the letter forbids, or (for an employees-only
    letter) a domain it does not list. Depends on the letter and the address only."""
