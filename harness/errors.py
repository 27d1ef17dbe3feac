"""Errors every layer raises, defined below all of them (no harness imports), so a registry can
raise ``ConfigError`` without importing the configuration that validates names against it.

A refusal is one line of bounded length: :func:`shorten` quotes a user's value inside a message
(a 300 KB method name is not echoed whole), :func:`one_line` is what the CLI prints and what a
result keeps (:func:`error_line`)."""

from __future__ import annotations

import unicodedata

# the longest refusal the CLI prints, and a quoted value's share of a message: a message names
# the problem and the valid choices, which fit; a longer one is the user's own input echoed back
MAX_MESSAGE = 500
MAX_QUOTED = 60
ELLIPSIS = "\u2026"


class ConfigError(ValueError):
    """A configuration problem, reported as one line that names it (the CLI exits 2)."""


def shorten(value: object, limit: int = MAX_QUOTED) -> str:
    """``repr(value)`` for a message, at most about ``limit`` characters: a longer one is cut with
    "…" and its length, ``'aaaa'… (300,000 characters)``. A long string's head only is converted."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}{ELLIPSIS} ({len(value):,} characters)"
    return clip(repr(value), limit)


def clip(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` cut to ``limit`` characters with "…" and its length (a key shown unquoted)."""
    return text if len(text) <= limit else f"{text[:limit]}{ELLIPSIS} ({len(text):,} characters)"


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line of at most ``limit`` characters (then "…"): line breaks and
    tabs become spaces, other control characters, invisible format characters (bidi overrides,
    zero-width ones) and lone surrogates their escapes (``\\x1b``, ``\\u202e``)."""
    head = text[: limit + 1]
    if not all(char.isprintable() for char in head):
        head = "".join(_printable(char) for char in head)
    return head if len(head) <= limit and len(text) <= limit else head[:limit] + ELLIPSIS


_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})  # spaces (Zs) stay as they are


def _printable(char: str) -> str:
    if char.isprintable():
        return char
    if char in "\n\r\t\v\f\u2028\u2029\x85":
        return " "
    # controls, and what a terminal would not show as it is: a bidi override (U+202E) reorders the
    # line, a zero-width character hides, a lone surrogate cannot be written to a UTF-8 stdout
    return repr(char)[1:-1] if unicodedata.category(char) in _ESCAPED else char


def error_line(error: BaseException) -> str:
    """``Type: first line of the message`` (at most :data:`MAX_MESSAGE` characters): how a result,
    a log line or a report names a failure."""
    text = str(error)
    return one_line(f"{type(error).__name__}: {text.splitlines()[0] if text else ''}")
