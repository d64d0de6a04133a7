"""Domain errors. Services raise these; app/web/errors.py renders them.

A `detail` is English, marked for the catalog (`N_`, or `gettext` where it is made at
request time); app/web/errors.py translates it into the request's language when it is
sent, on a page or in a JSON error (D111)."""

from __future__ import annotations

from typing import Any

from app.i18n import N_


class DomainError(Exception):
    """A failure the user can understand. `code` is stable; `status_code` is for HTTP."""

    status_code = 400
    code = "bad_request"
    default_detail = N_("The request could not be processed.")

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def extra(self) -> dict[str, Any]:
        """More machine-readable facts for the JSON error body."""
        return {}


class NotFound(DomainError):
    status_code = 404
    code = "not_found"
    default_detail = N_("There is nothing at this address.")


class LetterNotFound(NotFound):
    code = "letter_not_found"
    default_detail = N_("There is no letter at this address.")


class LetterNotOpen(DomainError):
    status_code = 409
    code = "letter_not_open"
    default_detail = N_("This letter is not open for signatures.")


class LetterClosedBeforeVerification(LetterNotOpen):
    default_detail = N_("This letter closed before your signature was confirmed.")

    def extra(self) -> dict[str, Any]:
        return {"reason": "closed_before_verification"}


class InvalidToken(DomainError):
    """A link that was tampered with (`reason` "invalid"), has expired ("expired"), or
    points at a signature that is gone ("gone")."""

    status_code = 400
    code = "invalid_token"
    default_detail = N_("This link is not valid.")

    def __init__(self, detail: str | None = None, *, reason: str = "invalid") -> None:
        self.reason = reason
        super().__init__(detail)

    @property
    def expired(self) -> bool:
        return self.reason == "expired"

    def extra(self) -> dict[str, Any]:
        return {"expired": self.expired, "reason": self.reason}


class NotSignedIn(DomainError):
    """A dashboard page without a valid session: pages send the browser to /login."""

    status_code = 401
    code = "not_signed_in"
    default_detail = N_("Sign in to see this page.")


class Forbidden(DomainError):
    """Signed in, but this organizer's role does not allow it."""

    status_code = 403
    code = "forbidden"
    default_detail = N_("Your role on this letter does not allow this.")


class CSRFError(DomainError):
    status_code = 403
    code = "csrf_failed"
    default_detail = N_("This form has expired. Go back, reload the page and try again.")


class InvalidInput(DomainError):
    """Input rejected by a service after the schema accepted it."""

    status_code = 422
    code = "invalid_input"

    def __init__(self, detail: str | None = None, *, fields: dict[str, str] | None = None):
        self.fields = fields or {}
        super().__init__(detail)

    def extra(self) -> dict[str, Any]:
        return {"fields": self.fields}
