"""Phase ``record``: after the final result.json, the cell is recorded (to MLflow) by a recorder
it is given, and the outcome noted in result.json.

The cell may not import tracking (tracking sits above it and above dispatch), so the layer that
composes the two passes the recorder (``harness.tracking.record``); without one, a cell that
tracks stays ``pending`` for ``harness collect``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from harness.config import CellConfig
from harness.result import Result, ResultFile, TrackingStatus


class Recorder(Protocol):
    def __call__(self, config: CellConfig, cell_dir: Path, result: Result) -> TrackingStatus:
        """Record the finished cell (its result.json is on disk); return the outcome. Never raises:
        tracking fails open, a failure is an outcome ("failed", with its error)."""
        ...


def record_cell(config: CellConfig, file: ResultFile, result: Result, recorder: Recorder | None) -> None:
    """The tracking outcome (``disabled`` when the config turns tracking off), noted in result.json."""
    if not config.tracking.enabled:
        result.tracking.status = "disabled"
    elif recorder is None:
        return  # stays "pending": `harness collect` logs it
    else:
        result.tracking = recorder(config, file.cell_dir, result)
    file.note_tracking(result)
