"""Credentials never leave the process in text a person or a file keeps.

result.json, config.yaml, log.txt (messages and tracebacks), MLflow params and everything the
CLI prints (plans with their job scripts, errors) pass through :func:`redact`, which replaces
with ``***``:

- **a URL's user info**: ``scheme://user:password@host`` becomes ``scheme://user:***@host`` and
  ``scheme://token@host`` becomes ``scheme://***@host``. As URL parsers do, the user info runs to
  the *last* ``@`` before the host ends (at ``/``, ``?``, ``#`` or whitespace), so a password that
  contains ``@`` is hidden whole;
- **secret query parameters**: the value of ``?name=`` / ``&name=`` / ``;name=`` when ``name``
  (any case) is one of :data:`SECRET_PARAMS` (``key``, ``sig``, ``auth``, ``pwd``) or contains one
  of :data:`SECRET_PARAM_WORDS` (``token``, ``secret``, ``password``, ``passwd``, ``signature``,
  ``credential``, ``api_key``/``apikey``/``api-key``: ``access_token``, ``X-Amz-Signature``,
  ``client_secret``, ...); the value runs to the next ``&``, ``#``, quote, ``<``/``>`` or
  whitespace;
- **secret variables**: the value of ``NAME=value`` (a shell assignment: ``export HF_TOKEN=...``
  in a setup line, ``--env``/``-e NAME=value`` in a container launcher) and of ``NAME: value``
  (YAML/JSON, the name optionally quoted) when the upper-case ``NAME`` is a secret variable
  (:func:`secret_name`): one of :data:`SECRET_VARIABLES` (``HF_TOKEN``, ``WANDB_API_KEY``,
  ``AWS_SECRET_ACCESS_KEY``, ...) or a name that is or ends in ``_`` and one of
  :data:`SECRET_SUFFIXES` (``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``, ``API_KEY``,
  ``APIKEY``, ``ACCESS_KEY``, ``SECRET_KEY``, ``PRIVATE_KEY``), so ``TOKENIZERS_PARALLELISM`` or
  ``AWS_ACCESS_KEY_ID`` are shown. A shell value runs to the end of its shell word (never past
  the line: quoted if it starts with a quote, else to whitespace, a quote or ``;&|<>()``); a
  YAML/JSON value to its closing quote (the quotes kept), or unquoted to ``,``, ``}``, ``]`` or
  the end of the line;
- in a nested dict (:func:`redact_values`), a string value whose key is a secret name (any case,
  ``token: ...``, ``hf_token: ...``), besides every string passed through :func:`redact`.

The job itself still receives the real values: its pickled config carries the full tracking URI,
and the submitted job script and container launcher carry the setup lines and ``env`` as written
(they are the job's input, in the matrix's submitit folder, not a record of it).

Every pass is linear in the text: each pattern is anchored on a literal (``://``, ``?&;``, ``=``
or ``:``), its repetitions are possessive (Python 3.11+: nothing matched is given back and
retried) and the names it accepts are filtered inside the pattern, so a 10 MB name costs
milliseconds and dense adversarial text about a second (the earlier pattern rescanned the rest
of the text from every offset: a 1 MB name took minutes).
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

# well-known secret variables (each also matches the suffix rule below; listed for the reader)
SECRET_VARIABLES = frozenset(
    {
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "WANDB_API_KEY",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GITHUB_TOKEN",
        "OPENAI_API_KEY",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
    }
)
# a variable named by one of these words, or ending in _<word>, is a secret
SECRET_SUFFIXES = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "SECRET_KEY",
    "PRIVATE_KEY",
)
# query parameters whose value is a credential (lower case); names containing SECRET_PARAM_WORDS too
SECRET_PARAMS = frozenset({"key", "sig", "auth", "pwd"})
SECRET_PARAM_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "api_key",
    "apikey",
    "api-key",
)


_EXACT_NAMES = SECRET_VARIABLES | frozenset(SECRET_SUFFIXES)
_NAME_ENDINGS = tuple(f"_{word}" for word in SECRET_SUFFIXES)
# every name above contains one of these: text with none of them names no secret variable
SECRET_WORDS = ("TOKEN", "SECRET", "PASSW", "KEY")


def secret_name(name: str) -> bool:
    """Whether a variable (or mapping key) of this name holds a credential, by the rule above."""
    upper = name.upper()
    return upper in _EXACT_NAMES or upper.endswith(_NAME_ENDINGS)


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, replacement) span replaced; spans ascending, disjoint."""
    if not spans:
        return text
    parts, last = [], 0
    for start, end, replacement in spans:
        parts += [text[last:start], replacement]
        last = end
    parts.append(text[last:])
    return "".join(parts)


# "://", then the authority's user info through its last "@": the authority ends at "/", "?", "#"
# or whitespace (urllib.parse.urlsplit's rule, whitespace added). Possessive: an authority with no
# "@" fails after one look at it, and what matched is never given back.
_USER_INFO = re.compile(r"://((?:[^/?#\s@]*+@)++)")


def _hide_user_info(match: re.Match[str]) -> str:
    user_info = match[1][:-1]
    user, colon, _password = user_info.partition(":")
    return f"://{user}:{MASK}@" if colon else f"://{MASK}@"  # a token alone in the user part


def _user_info(text: str) -> str:
    return _USER_INFO.sub(_hide_user_info, text) if "@" in text else text


_PARAM_NAMES = "|".join(sorted(SECRET_PARAMS))
_PARAM_WORDS = "|".join(re.escape(word) for word in SECRET_PARAM_WORDS)
# a name that is, or contains, a secret word (a lookahead: no other name ever reaches Python)
_PARAM = re.compile(rf"[?&;](?=(?i:{_PARAM_NAMES})=|[\w.\-]*?(?i:{_PARAM_WORDS}))([\w.\-]++)=")
_PARAM_VALUE = re.compile(r"[^&#\s\"'<>]*+")


def _query_params(text: str) -> str:
    if "=" not in text:
        return text
    spans: list[tuple[int, int, str]] = []
    match = _PARAM.search(text)
    while match is not None:
        end = _PARAM_VALUE.match(text, match.end()).end()  # type: ignore[union-attr]
        if end > match.end():
            spans.append((match.end(), end, MASK))
        # on after the value: a "?token=" inside it is hidden already
        match = _PARAM.search(text, end)
    return _splice(text, spans)


# an upper-case name, then '=' (shell) or ':' (YAML/JSON, the name perhaps quoted)
# secret_name as lookbehinds: the name ends in _<suffix>, or is a suffix or a secret variable
_SECRET_END = "|".join(
    [f"(?<=_{word})" for word in SECRET_SUFFIXES]
    + [rf"(?<=(?<![\w$]){name})" for name in sorted(_EXACT_NAMES) if not name.endswith(_NAME_ENDINGS)]
)
_ASSIGNMENT = re.compile(rf"(?<![\w$])([A-Z_][A-Z0-9_]*+)(?:{_SECRET_END})(=|[\"']?:[ \t]*+)")
# the value of a shell assignment, never past the line (possessive: no backtracking). A value that
# starts with a quote is a whole shell word ("a b"c); one that does not stops at a quote too, which
# then most likely closes the string the assignment is quoted in (an error's 'export HF_TOKEN=x')
_DOUBLE_INSIDE = r'(?:[^"\\\r\n]++|\\[^\r\n])*+"?'
_SINGLE_INSIDE = r"[^'\r\n]*+'?"
_PLAIN = r"""[^\s;&|<>()'"\\]++|\\[^\r\n]?"""
_QUOTED = rf"""'{_SINGLE_INSIDE}|"{_DOUBLE_INSIDE}"""
_SHELL_WORD = re.compile(rf"(?:{_PLAIN}|{_QUOTED})*+")
_SHELL_PLAIN = re.compile(rf"(?:{_PLAIN})*+")
# 'HF_TOKEN=a b' (shlex.quote's form, the word opened before the name): the rest of that quote,
# then any quoted pieces glued to it ('a'"'"'b')
_INSIDE = {"'": re.compile(rf"{_SINGLE_INSIDE}(?:{_QUOTED})*+"), '"': re.compile(rf"{_DOUBLE_INSIDE}(?:{_QUOTED})*+")}
# a YAML/JSON value: quoted (YAML doubles a single quote, JSON escapes a double one), or plain
_MAPPING_VALUE = re.compile(r"""'(?:[^'\r\n]++|'')*+'?|"(?:[^"\\\r\n]++|\\[^\r\n])*+"?|[^,}\]\r\n]*+""")


def _value_end(text: str, match: re.Match[str]) -> int:
    """Where the value assigned by ``match`` (a secret name and its '=' or ':') ends."""
    begin = match.end()
    if match[2] != "=":
        return _MAPPING_VALUE.match(text, begin).end()  # type: ignore[union-attr]
    opening = text[match.start() - 1] if match.start() else ""
    if opening in _INSIDE:
        pattern = _INSIDE[opening]
    else:
        pattern = _SHELL_WORD if text[begin : begin + 1] in ("'", '"') else _SHELL_PLAIN
    return pattern.match(text, begin).end()  # type: ignore[union-attr]


def _variables(text: str) -> str:
    if not any(word in text for word in SECRET_WORDS):  # a quick look first: most text names none
        return text
    spans: list[tuple[int, int, str]] = []
    match = _ASSIGNMENT.search(text)
    while match is not None:
        begin, end = match.end(), _value_end(text, match)
        if match[2] == "=":
            opening = text[match.start() - 1] if match.start() else ""
            closing = opening if opening in _INSIDE and end > begin and text[end - 1] == opening else ""
            if end > begin:
                spans.append((begin, end, MASK + closing))
        else:
            value = text[begin:end]
            if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
                begin, end = begin + 1, end - 1  # keep the quotes: printed JSON stays JSON
            if end > begin or value[:1] in ("'", '"'):
                spans.append((begin, end, MASK))
        match = _ASSIGNMENT.search(text, max(end, match.end()))
    return _splice(text, spans)


def redact(text: str) -> str:
    """``text`` with every credential the module docstring lists replaced by ``***``."""
    if not text:
        return text
    return _variables(_query_params(_user_info(text)))


def redact_values(data: Any) -> Any:
    """A copy of nested dicts/lists with every string passed through :func:`redact`, and the
    string value of a key that names a secret (:func:`secret_name`) replaced whole."""
    if isinstance(data, dict):
        return {
            key: MASK if isinstance(value, str) and isinstance(key, str) and secret_name(key) else redact_values(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [redact_values(value) for value in data]
    return redact(data) if isinstance(data, str) else data


class RedactingFilter(logging.Filter):
    """A log handler filter: the formatted message, and a traceback logged with it, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # the handler's formatter would format it later, unredacted: format it here once
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
