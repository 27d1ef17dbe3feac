"""Cells whose data changed since they ran: the finished results a new plan no longer uses.

A cell on local data files has their sha256 in its config (``data.source.sha256``, recorded by
:mod:`harness.cell.resolve`), so an edited file gives the cell a new id and a new folder beside
the old one (``seed0-<id>``). The old folder is left as it is; this module finds it, so that
``harness plan`` says which cells went stale and why rather than quietly planning new ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness.config import CellConfig
from harness.matrix.cells import Cell
from harness.names import CELL_CONFIG


def stale_reasons(cells: list[Cell]) -> dict[str, str]:
    """cell id -> why an earlier run of that cell (same settings, other data) no longer counts,
    for every cell on local data files whose folder has such a sibling."""
    reasons: dict[str, str] = {}
    for cell in cells:
        source = cell.config.data.source
        if cell.excluded is not None or source is None or not source.sha256:
            continue
        for folder in sorted(cell.folder.parent.glob(f"seed{cell.seed}-*")):
            if folder == cell.folder:
                continue
            old = _config_of(folder)
            if old is None or _without_hashes(old) != _without_hashes(cell.config.identity()):
                continue
            reasons[cell.cell_id] = f"data changed since {folder.name} ran: {_changes(old, cell.config)}"
            break
    return reasons


def _config_of(folder: Path) -> dict[str, Any] | None:
    """The config a cell folder was planned with, as its identity dump (None: unreadable, or none)."""
    try:
        data = yaml.safe_load((folder / CELL_CONFIG).read_text())
        return CellConfig.model_validate(data).identity()
    except Exception:  # noqa: BLE001 - a folder from another version or a damaged file is not this cell's past
        return None


def _without_hashes(identity: dict[str, Any]) -> str:
    copy = json.loads(json.dumps(identity, default=str))
    source = (copy.get("data") or {}).get("source")
    if isinstance(source, dict):
        source.pop("sha256", None)
    return json.dumps(copy, sort_keys=True)


def _changes(old: dict[str, Any], config: CellConfig) -> str:
    source = config.data.source
    assert source is not None and source.sha256 is not None
    before = ((old.get("data") or {}).get("source") or {}).get("sha256") or {}
    if not before:
        return "it ran before data files were hashed"
    changed = [
        f"{split} file {source.files.get(split, '?')} sha256 {before.get(split, 'none')[:8]}… → {digest[:8]}…"
        for split, digest in source.sha256.items()
        if before.get(split) != digest
    ]
    return "; ".join(changed) or "its data files differ"
