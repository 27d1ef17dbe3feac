"""A cell recorded to MLflow: the runner every job runs (``harness.dispatch.job.DEFAULT_RUNNER``)
and ``harness run --local``.

The cell may not import tracking (tracking sits above dispatch and the cell), so it takes its
recorder as an argument (:class:`harness.cell.record.Recorder`) and this layer, which may import
both, passes :func:`record_result`. The cell writes result.json first, then calls the recorder,
then notes its outcome; tracking fails open: a failure is recorded, the cell stays successful.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.cell.run import run_cell as run_bare_cell
from harness.config import CellConfig
from harness.errors import error_line
from harness.names import default_tracking_uri
from harness.result import Result, TrackingStatus
from harness.tracking.mlflow_log import log_result

log = logging.getLogger(__name__)


def record_result(config: CellConfig, cell_dir: Path, result: Result) -> TrackingStatus:
    """Log a finished cell to MLflow; the outcome, never an exception (tracking fails open)."""
    uri = config.tracking.uri or default_tracking_uri(cell_dir)
    try:
        run_id = log_result(cell_dir, result, uri=uri, experiment=config.tracking.experiment)
    except Exception as error:  # noqa: BLE001 - tracking fails open
        reason = error_line(error)
        log.warning("MLflow logging failed (%s); result.json is intact", reason)
        return TrackingStatus(status="failed", uri=uri, error=reason)
    return TrackingStatus(status="logged", uri=uri, run_id=run_id)


def run_cell(config: CellConfig, *, stop_at_step: int | None = None) -> Result:
    """Run the cell (:func:`harness.cell.run_cell`, ``stop_at_step`` a rung) and record it to MLflow
    once it has finished (a cell paused at a rung is not recorded)."""
    return run_bare_cell(config, record=record_result, stop_at_step=stop_at_step)
