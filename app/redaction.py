"""Redaction for logs and stored error texts: no address, token or link that carries one.

Used by the mail worker (SMTP replies quote the recipient), the web layer (a 500's
traceback may quote a token) and the worker loop. A floor module: anything may use it.
"""

from __future__ import annotations

import logging
import re

_NOT_IN_ADDRESS = r"""\s<>()\[\]{}"',;:@"""
_ADDRESS = re.compile(rf"[^{_NOT_IN_ADDRESS}]+(?:@|%40)[^{_NOT_IN_ADDRESS}]+", re.IGNORECASE)
_TOKEN_PATH = re.compile(
    r"(/(?:verify|signature|unsubscribe|login|manage)/)[^\s'\"<>?#{}]+", re.IGNORECASE
)
_TOKEN_QUERY = re.compile(r"(\b\w*token\w*=)[^\s&'\"<>#]+", re.IGNORECASE)
_WORD = r"A-Za-z0-9_\-"
_RANDOM_LOOKING = re.compile(
    rf"(?<![{_WORD}])(?=[{_WORD}]*[0-9])(?=[{_WORD}]*[A-Za-z])[{_WORD}]{{20,}}(?![{_WORD}])"
)
"""Link tokens, ids and keys: 20 or more letters, digits, `-`, `_`, with at least one
letter and one digit (so that words such as `ConnectionRefusedError` stay readable)."""


def redact(text: str) -> str:
    """`text` without email addresses, link paths and queries that carry a token, or
    anything that looks like a token: for error texts that are stored or logged (SMTP
    replies quote the recipient; a content filter may quote a link)."""
    text = _TOKEN_PATH.sub(r"\1[token]", text)
    text = _TOKEN_QUERY.sub(r"\1[token]", text)
    text = _ADDRESS.sub("[address]", text)
    return _RANDOM_LOOKING.sub("[token]", text)


_plain = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redacts a logger's records, traceback included, before any handler sees them.
    Add one to each logger whose records may quote an address or a link."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what there is
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_plain.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


REDACT = RedactingFilter()
"""One instance, so that adding it twice to a logger adds it once."""
