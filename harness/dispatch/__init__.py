"""Dispatch: cells -> submitit jobs (slurm / local / debug), job arrays, status.

Knows nothing about training: a job runs a cell by name (``harness.tracking.record.run_cell``,
the cell recorded to MLflow; see ``harness.dispatch.job.DEFAULT_RUNNER``). Executors (slurm, local,
debug) are entries of ``harness.dispatch.executors`` behind the protocol of ``harness.dispatch.executor``.
"""

from harness.dispatch.commands import PlanReport, plan, render_plan, render_status, render_submit, status, submit, wait
from harness.dispatch.job import CellJob
from harness.dispatch.status import CellState, StatusReport, cell_states
from harness.dispatch.submit import SubmitReport, submit_matrix

__all__ = [
    "CellJob",
    "CellState",
    "PlanReport",
    "StatusReport",
    "SubmitReport",
    "cell_states",
    "plan",
    "render_plan",
    "render_status",
    "render_submit",
    "status",
    "submit",
    "submit_matrix",
    "wait",
]
