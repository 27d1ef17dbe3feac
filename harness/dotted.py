"""Dotted keys (``train.learning_rate``) and nested mappings: the one place that converts them.

Matrix files and ``--set`` write dotted keys; configs are nested; MLflow params are flat.
"""

from __future__ import annotations

import copy
from typing import Any


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``value`` at a dotted key, creating the mappings on the way (in place)."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


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
