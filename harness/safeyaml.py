"""YAML for matrix and cell files, with the limits that make hostile input cheap to refuse.

PyYAML's ``safe_load`` builds no objects, but it still expands aliases: a few hundred
bytes of nested anchors ("billion laughs") become billions of nodes once something
walks the result (hashing a cell id, validating a model). Matrix and cell files are
written by hand, so the limits below cost a real user nothing:

- **no aliases** (``*name``, and so no ``<<: *name`` merge keys): anchors alone are harmless;
- **no duplicate keys** in a mapping (PyYAML keeps the last one silently);
- **at most** :data:`MAX_BYTES` per file and :data:`MAX_DEPTH` levels of nesting;
- **UTF-8** text only.

Every refusal is a :class:`YamlRefused` with a one-line message; ``harness.config``
turns it into a ``ConfigError`` that names the file.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: the thesis grid is 7 KB
MAX_DEPTH = 64


class YamlRefused(ValueError):
    """The text is not a YAML document this harness reads; the message is one line."""


class YamlMalformed(YamlRefused):
    """Not YAML at all (a syntax error), as opposed to YAML beyond the limits."""


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, duplicate keys and deep nesting while composing,
    so nothing is ever expanded or built before the refusal."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlRefused(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed "
                "in matrix and cell files; write the value out (or use the matrix's defaults/overrides)"
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            event = self.peek_event()
            raise YamlRefused(f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

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
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first at line {seen[key]}); each key may appear once"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document within the limits above. Raises :class:`YamlRefused`."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlRefused(
            f"larger than {MAX_BYTES // 1024} KiB; matrix and cell files are small by design "
            "(put data in data.source files)"
        )
    try:
        return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise YamlMalformed(f"malformed YAML{line}: {problem}") from None
    except RecursionError:
        raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep") from None


def load_yaml_bytes(raw: bytes) -> Any:
    """Decode (UTF-8, an optional BOM) and parse. Raises :class:`YamlRefused`."""
    if len(raw) > MAX_BYTES:
        raise YamlRefused(
            f"{len(raw):,} bytes, larger than {MAX_BYTES // 1024} KiB; matrix and cell files are small "
            "by design (put data in data.source files)"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise YamlRefused(f"not UTF-8 text (byte {error.start}: {raw[error.start : error.start + 1]!r})") from None
    return load_yaml_text(text)
