"""Helpers for the dispatch tests (a uniquely named module: tests/ is not a package)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def smoke_dict(out: Path, **changes) -> dict:
    """jobs/smoke.yaml with its output under ``out`` and ``changes`` applied on top."""
    data = yaml.safe_load((REPO / "jobs" / "smoke.yaml").read_text())
    data["output_dir"] = str(out)
    data.update(changes)
    return data


def write_matrix(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def calls(stub_dir: Path, command: str) -> list[str]:
    """The recorded calls of one stub SLURM command (see the ``stub_slurm`` fixture)."""
    log = stub_dir / "calls.log"
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.split(" ", 1)[0] == command]
