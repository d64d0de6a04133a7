"""Signed, URL-safe tokens (itsdangerous). One salt per purpose.

itsdangerous signs but does not encrypt, so a payload only ever holds opaque random
ids, never an email address or a name.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.errors import InvalidToken
from app.i18n import N_


class Purpose(StrEnum):
    SIGNATURE_VERIFY = "signature-verify"
    SIGNATURE_MANAGE = "signature-manage"
    ORGANIZER_LOGIN = "organizer-login"
    ORGANIZER_SESSION = "organizer-session"
    UNSUBSCRIBE = "unsubscribe"
    LIST_CURSOR = "list-cursor"
    CSRF = "csrf"
    FORM_RENDERED = "form-rendered"
    """The sign form's render time (milliseconds), to tell a bot's instant post."""


@lru_cache(maxsize=32)
def _serializer(secret_key: str, purpose: Purpose) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=purpose.value)


def issue(secret_key: str, purpose: Purpose, payload: Any) -> str:
    return str(_serializer(secret_key, purpose).dumps(payload))


def read(secret_key: str, purpose: Purpose, token: str, *, max_age: int | None = None) -> Any:
    """The payload, or InvalidToken (expired=True when only the age is wrong)."""
    try:
        return _serializer(secret_key, purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise InvalidToken(N_("This link has expired."), reason="expired") from exc
    except BadSignature as exc:
        raise InvalidToken(N_("This link is not valid. It may have been cut short.")) from exc
