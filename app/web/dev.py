"""The dev mailbox, mounted only when MAIL_BACKEND=dev, and only for this machine.

It shows every email with its live confirmation link, so a client that is not on
loopback (another machine, or anyone at all once the server listens on 0.0.0.0) gets
exactly the 404 of an address that does not exist: the route does not even match. A
request that came through a proxy (it carries a forwarding header) is refused too,
even from loopback: a reverse proxy on the same machine makes every visitor look local.
With TRUSTED_PROXIES set, uvicorn has already replaced the client address with the
one from X-Forwarded-For.
"""

from __future__ import annotations

import ipaddress
from email.message import EmailMessage

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from app.mail.backends import dev_mailbox
from app.web.deps import AppSettings
from app.web.rendering import render

FORWARDING_HEADERS = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
     b"x-real-ip", b"via"}
)  # fmt: skip


def from_this_machine(scope: Scope) -> bool:
    """True for a loopback client that did not come through a proxy."""
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:  # not an address at all (a name from a forwarding header)
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_loopback:
        return False
    return not any(name.lower() in FORWARDING_HEADERS for name, _ in scope.get("headers", ()))


class LoopbackOnlyRoute(APIRoute):
    """A route that does not exist for clients other than this machine."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not from_this_machine(scope):
            return Match.NONE, {}
        return super().matches(scope)


router = APIRouter(include_in_schema=False, route_class=LoopbackOnlyRoute)


def _text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


@router.get("/dev/mail")
def dev_mailbox_page(request: Request, settings: AppSettings) -> Response:
    messages = dev_mailbox(settings).messages()
    response = render(
        request,
        "dev/mailbox.html",
        {
            "messages": [
                {
                    "to": message["To"],
                    "subject": message["Subject"],
                    "date": message["Date"],
                    "body": _text_part(message),
                }
                for message in messages
            ]
        },
    )
    response.headers["cache-control"] = "no-store"  # live links: never in a cache
    return response
