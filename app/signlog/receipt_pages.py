"""`/receipt`: where a signer checks their receipt, in the browser.

The page is the same for everyone and cacheable: the receipt code travels in the URL's
fragment (`/receipt#<slug>:<secret>`), which a browser never sends, and the check runs
in `static/receipt.js`, which asks the public log API only for what many receipts share
(a checkpoint, a bucket of entries by a short commitment prefix, and the inclusion
proofs of a random group of that bucket's entries, the reader's among them). The server
renders no receipt, ever. The log's public key is written into the page so the script
checks the checkpoint's signature with the key this site publishes rather than with one
an API answer names."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.signlog import keys
from app.web.cache import public
from app.web.deps import AppSettings
from app.web.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/receipt")
def receipt(request: Request, settings: AppSettings) -> Response:
    response = render(request, "signlog/receipt.html", {"log_key": keys.verifier(settings).vkey()})
    return public(response, settings)
