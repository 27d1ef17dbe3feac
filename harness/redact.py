"""Credentials never leave the process in text a person or a file keeps.

A tracking URI may carry them (``http://user:password@host``); result.json, config.yaml,
log.txt, MLflow params and everything printed show ``http://user:***@host`` instead. The
job itself still receives the real URI (in its pickled config), since it must log in.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# scheme://user:secret@  ->  scheme://user:***@   (and scheme://token@ -> scheme://***@)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/@:]*)(?P<secret>:[^\s/@]*)?@")


def redact(text: str) -> str:
    """``text`` with the password (or a lone token) of every URL's user info replaced by ``***``."""

    def hide(match: re.Match[str]) -> str:
        user, secret = match["user"], match["secret"]
        if secret is None:  # a token alone in the user part
            return f"{match['scheme']}***@"
        return f"{match['scheme']}{user}:***@"

    return _USERINFO.sub(hide, text)


def redact_values(data: Any) -> Any:
    """A copy of nested dicts/lists with every string passed through :func:`redact`."""
    if isinstance(data, dict):
        return {key: redact_values(value) for key, value in data.items()}
    if isinstance(data, list):
        return [redact_values(value) for value in data]
    return redact(data) if isinstance(data, str) else data


class RedactingFilter(logging.Filter):
    """A log handler filter: the formatted message, credentials redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
