"""The dev mailbox, mounted only when MAIL_BACKEND=dev."""

from __future__ import annotations

from email.message import EmailMessage

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.mail.backends import dev_mailbox
from app.web.deps import AppSettings
from app.web.rendering import render

router = APIRouter(include_in_schema=False)


def _text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


@router.get("/dev/mail")
def dev_mailbox_page(request: Request, settings: AppSettings) -> Response:
    messages = dev_mailbox(settings).messages()
    return render(
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
