"""/.well-known/undersigned-log-key: the key that signs every letter's log checkpoints.

One line, the verifier key in Go's note format (`name+keyid+base64`), which
`golang.org/x/mod/sumdb/note`, C2SP verifiers and `undersigned log verify` read. It is
the same for every letter (each letter's log has its own origin) and changes only if
the operator replaces the key, so it is public and cached for an hour."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import PlainTextResponse

from app.signlog import keys
from app.signlog.schemas import KEY_EXAMPLE
from app.web.deps import AppSettings

KEY_PATH = "/.well-known/undersigned-log-key"
KEY_CACHE = "public, max-age=3600"

router = APIRouter(tags=["signature log"])


@router.get(
    KEY_PATH,
    response_class=PlainTextResponse,
    response_description="The verifier key and a newline (`text/plain; charset=utf-8`).",
    responses={200: {"content": {"text/plain": {"example": KEY_EXAMPLE + "\n"}}}},
)
def log_key(settings: AppSettings) -> PlainTextResponse:
    """The signature log's verifier key: every letter's checkpoint `note` is signed by
    it. The same line is each checkpoint's `key`. Cached for an hour."""
    return PlainTextResponse(
        keys.verifier(settings).vkey() + "\n",
        headers={"cache-control": KEY_CACHE, "vary": "Accept-Encoding"},
    )
