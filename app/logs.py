"""How the processes log (D89): one line per event, plain text or JSON
(`UNDERSIGNED_LOG_FORMAT=json`), each with the request id of the request it belongs to,
and every record redacted (app.redaction) by the handler, whichever logger sent it.

`undersigned serve` hands `log_config(settings)` to uvicorn, which applies it in each
server process; `undersigned worker` applies it with `configure`. The request id is set
by app.web.metrics' middleware for the length of a request.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID: ContextVar[str] = ContextVar("undersigned_request_id", default="-")

_CLIENT_ID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
"""A client's X-Request-ID is kept only when it is 32 hex digits (nginx's $request_id)
or a UUID: such a value cannot carry an address, a link token or anything readable."""


def request_id_from(header: str | None) -> str:
    """The request's id: the client's (a proxy's) when it has the strict form, else a
    new random one (32 hex digits)."""
    if header is not None and _CLIENT_ID.fullmatch(header):
        return header.lower()
    return secrets.token_hex(16)


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on each record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _one_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """`2026-01-31T12:00:00.123Z INFO undersigned.mail [request id] message`, one line: a
    traceback or a multi-line message has its line breaks written as `\\n`."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
        request_id = getattr(record, "request_id", "-")
        return _one_line(
            f"{_timestamp(record)} {record.levelname} {record.name} [{request_id}] {message}"
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message, and the
    traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def log_config(*, level: str = "info", json_lines: bool = False) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the app's and uvicorn's loggers: one handler on
    standard error that redacts, adds the request id and formats. uvicorn's access log
    (off unless ACCESS_LOG) goes through it too."""
    formatter = "json" if json_lines else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            # The handler's filters see every record, whichever logger it came from.
            "redact": {"()": "app.redaction.RedactingFilter"},
            "request_id": {"()": "app.logs.RequestIdFilter"},
        },
        "formatters": {
            "text": {"()": "app.logs.TextFormatter"},
            "json": {"()": "app.logs.JsonFormatter"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["request_id", "redact"],
                "formatter": formatter,
            },
        },
        "loggers": {
            name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
            for name in ("undersigned", "uvicorn", "uvicorn.error", "uvicorn.access")
        }
        | {"sqlalchemy": {"handlers": ["default"], "level": "WARNING", "propagate": False}},
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


def configure(*, level: str = "info", json_lines: bool = False) -> None:
    logging.config.dictConfig(log_config(level=level, json_lines=json_lines))
