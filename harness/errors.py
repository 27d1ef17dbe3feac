"""Errors every layer raises, defined below all of them (no imports), so a registry can raise
``ConfigError`` without importing the configuration that validates names against it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, reported as one line that names it (the CLI exits 2)."""


def error_line(error: BaseException) -> str:
    """``Type: first line of the message``: how a result, a log line or a report names a failure."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
