"""Dotted keys (``train.learning_rate``) and nested mappings: the one place that converts them.

Matrix files and ``--set`` write dotted keys; configs are nested; MLflow params are flat.
"""

from __future__ import annotations

import copy
from typing import Any


class DottedConflict(ValueError):
    """A dotted key runs through a value that is not a mapping (``a: 1``, then ``a.b``)."""

    def __init__(self, dotted: str, prefix: str) -> None:
        super().__init__(f"{dotted!r} sets a key inside {prefix!r}, which is already a value, not a mapping")
        self.dotted, self.prefix = dotted, prefix


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``value`` at a dotted key, creating the mappings on the way (in place). A key on the
    way that holds something other than a mapping raises :class:`DottedConflict`."""
    keys = dotted.split(".")
    node = data
    for depth, key in enumerate(keys[:-1]):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise DottedConflict(dotted, ".".join(keys[: depth + 1]))
    node[keys[-1]] = value


def dotted_conflict(keys: list[str]) -> tuple[str, str] | None:
    """Two of ``keys`` where one sets a key inside the other's value (``a`` and ``a.b``), or None.

    Linear in the keys' total length: the keys go into a tree of their parts, in which a key that
    ends where another passes through (or passes where another ended) is the conflict."""
    ends: dict[int, str] = {}  # id of a tree node -> the key that ends there
    passing: dict[int, str] = {}  # id of a tree node -> a key that goes on below it
    root: dict[str, Any] = {}
    for key in keys:
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if id(node) in ends:
                return ends[id(node)], key
            passing.setdefault(id(node), key)
        node = node.setdefault(parts[-1], {})
        if id(node) in passing:
            return key, passing[id(node)]
        ends[id(node)] = key
    return None


def expand_dotted(data: dict[str, Any]) -> dict[str, Any]:
    """``{"train.learning_rate": 1e-3}`` -> ``{"train": {"learning_rate": 1e-3}}`` (recursively)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        value = expand_dotted(value) if isinstance(value, dict) else value
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            existing = node.get(part)
            if not isinstance(existing, dict):
                existing = node[part] = {}
            node = existing
        last = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = deep_merge(node[last], value)
        else:
            node[last] = value
    return out


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"learning_rate": 1e-3}}`` -> ``{"train.learning_rate": 1e-3}``."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = data
    return out


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``patch`` on top of ``base``; mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
