"""YAML for matrix and cell files, with the limits that make hostile input cheap to refuse.

PyYAML's ``safe_load`` builds no objects, but it still expands aliases: a few hundred
bytes of nested anchors ("billion laughs") become billions of nodes once something
walks the result (hashing a cell id, validating a model). Matrix and cell files are
written by hand, so the limits below cost a real user nothing:

- **no aliases** (``*name``, and so no ``<<: *name`` merge keys): anchors alone are harmless;
- **no duplicate keys** in a mapping (PyYAML keeps the last one silently);
- **at most** :data:`MAX_BYTES` per file (its size checked before a byte is read:
  :func:`read_bounded`) and :data:`MAX_DEPTH` levels of nesting;
- **UTF-8** text only.

Every refusal is a :class:`YamlRefused` with a one-line message; ``harness.config``
turns it into a ``ConfigError`` that names the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: the thesis grid is 7 KB
MAX_DEPTH = 64


class YamlRefused(ValueError):
    """The text is not a YAML document this harness reads; the message is one line."""


class YamlMalformed(YamlRefused):
    """Not YAML at all (a syntax error), as opposed to YAML beyond the limits."""


class _UniqueKeys(yaml.constructor.SafeConstructor):
    """A constructor that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:  # noqa: D102
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise YamlRefused(
                    f"line {key_node.start_mark.line + 1}: a mapping key must be a plain value, "
                    f"not a {type(key).__name__}"
                ) from None
            if key in seen:
                raise YamlRefused(
                    f"line {key_node.start_mark.line + 1}: duplicate key {_short(key)} "
                    f"(first at line {seen[key]}); each key may appear once"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _LimitedLoader(_UniqueKeys, yaml.SafeLoader):
    """SafeLoader that refuses aliases, duplicate keys and deep nesting while composing,
    so nothing is ever expanded or built before the refusal. Pure Python: used only where
    PyYAML has no libyaml (:class:`_FastLoader`, the same checks, is 5x faster)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            raise YamlRefused(_alias_refusal(self.peek_event()))
        self._depth += 1
        if self._depth > MAX_DEPTH:
            event = self.peek_event()
            raise YamlRefused(f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_CSafeLoader = getattr(yaml, "CSafeLoader", None)  # PyYAML built with libyaml
_INT_TAG = "tag:yaml.org,2002:int"


def _plain_decimal(value: str) -> bool:
    """ASCII digits without a leading zero: under YAML 1.1's rules an int and nothing else (a
    leading zero is octal, a sign, dot, colon or underscore another rule's)."""
    return value.isascii() and value.isdigit() and (value[0] != "0" or value == "0")


class _FastLoader(_UniqueKeys, _CSafeLoader or yaml.SafeLoader):  # type: ignore[misc]
    """libyaml's parser and composer with the same refusals: aliases and depth in a scan of its
    events (:func:`_check_events`, nothing composed yet; libyaml itself stops at 1,000 levels),
    duplicate keys while constructing. A plain decimal is resolved and built directly (the same
    int PyYAML makes): 100,000 seeds are read in a fraction of a second."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:  # noqa: D102 - PyYAML's hook
        if kind is yaml.ScalarNode and implicit[0] and _plain_decimal(value):
            return _INT_TAG
        return super().resolve(kind, value, implicit)

    def construct_yaml_int(self, node: Any) -> int:  # noqa: D102
        if isinstance(node.value, str) and _plain_decimal(node.value):
            return int(node.value)
        return super().construct_yaml_int(node)


_FastLoader.add_constructor(_INT_TAG, _FastLoader.construct_yaml_int)


_OPENS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSES = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _check_events(text: str) -> None:
    """Refuse aliases and nesting beyond :data:`MAX_DEPTH` from the parser's events alone."""
    parser = _FastLoader(text)
    open_collections = 0
    try:
        while not isinstance(event := parser.get_event(), yaml.StreamEndEvent):
            kind = type(event)
            if kind is yaml.ScalarEvent:
                if open_collections >= MAX_DEPTH:  # a node's depth: the root is 1, as in compose_node
                    raise YamlRefused(f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            elif kind in _OPENS:
                open_collections += 1
                if open_collections > MAX_DEPTH:
                    raise YamlRefused(f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            elif kind in _CLOSES:
                open_collections -= 1
            elif kind is yaml.AliasEvent:
                raise YamlRefused(_alias_refusal(event))
    finally:
        parser.dispose()


def _alias_refusal(event: Any) -> str:
    return (
        f"line {event.start_mark.line + 1}: YAML aliases (*{_short(event.anchor, quote=False)}) are not allowed "
        "in matrix and cell files; write the value out (or use the matrix's defaults/overrides)"
    )


def _short(value: Any, quote: bool = True, limit: int = 60) -> str:
    """A value quoted in a refusal, cut at ``limit`` characters (this leaf module imports no
    harness.errors: its ``shorten``, in small)."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit] + "\u2026"


SMALL_BY_DESIGN = "matrix and cell files are small by design (put data in data.source files)"


def read_bounded(path: Path | str, limit: int = MAX_BYTES, hint: str = SMALL_BY_DESIGN) -> bytes:
    """A file's bytes, refused (:class:`YamlRefused`) above ``limit`` before anything is read: its
    size is checked first (an 8 GB file costs a ``stat``), then at most ``limit + 1`` bytes are
    read, so a file that grows meanwhile, or reports no size, is refused all the same.
    ``OSError`` (missing, unreadable) is left to the caller."""
    size = os.stat(path).st_size
    if size > limit:
        raise YamlRefused(f"{size:,} bytes, larger than {limit // 1024} KiB; {hint}")
    with open(path, "rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise YamlRefused(f"more than {limit:,} bytes (it grew while read), larger than {limit // 1024} KiB; {hint}")
    return raw


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document within the limits above. Raises :class:`YamlRefused`."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlRefused(f"larger than {MAX_BYTES // 1024} KiB; {SMALL_BY_DESIGN}")
    try:
        if _CSafeLoader is None:
            return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - a SafeLoader subclass
        _check_events(text)
        return yaml.load(text, Loader=_FastLoader)  # noqa: S506 - a CSafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise YamlMalformed(f"malformed YAML{line}: {problem}") from None
    except RecursionError:
        raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep") from None
    except YamlRefused:
        raise
    except UnicodeEncodeError as error:  # a lone surrogate (an argv byte that was not UTF-8): not text
        raise YamlMalformed(
            f"malformed YAML: {error.object[error.start]!r} at position {error.start} is not text"
        ) from None
    except ValueError as error:  # what PyYAML parses but Python will not build: an int of 5,000 digits
        raise YamlRefused(f"a value it cannot read ({str(error).split(';')[0]})") from None


def load_yaml_bytes(raw: bytes) -> Any:
    """Decode (UTF-8, an optional BOM) and parse. Raises :class:`YamlRefused`."""
    if len(raw) > MAX_BYTES:
        raise YamlRefused(f"{len(raw):,} bytes, larger than {MAX_BYTES // 1024} KiB; {SMALL_BY_DESIGN}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise YamlRefused(f"not UTF-8 text (byte {error.start}: {raw[error.start : error.start + 1]!r})") from None
    return load_yaml_text(text)
