"""The state of every cell: from its result.json first, else from its job.

Order of evidence: a final result (the cell's result.json, or the outcome.json CellJob
writes when the cell could not end itself, merged by ``harness.result.load_result``) wins; otherwise the job recorded in job.json is asked about,
by the executor that ran it (``harness.dispatch.executors``): SLURM jobs through ONE
batched sacct call for the whole matrix, local jobs by their process, debug jobs never
outlive ``submit``. No job at all: ``pending``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from harness import folder_lock
from harness.dispatch import sacct
from harness.dispatch.cell_state import ACTIVE, CELL_STATUSES, CORRUPT, CellState, CellStatus, read_cell
from harness.dispatch.executors import EXECUTORS
from harness.matrix import Cell, Matrix
from harness.names import SELECT_STAGE
from harness.result import FINAL_STATUSES

__all__ = ["CellState", "StatusReport", "cell_states"]


@dataclass
class StatusReport:
    matrix: Matrix
    states: list[CellState]
    scheduler_calls: list[list[str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def counts(self) -> dict[CellStatus, int]:
        out = {s: 0 for s in CELL_STATUSES}
        for state in self.states:
            out[state.status] += 1
        return {k: v for k, v in out.items() if v}

    @property
    def active(self) -> list[CellState]:
        return [s for s in self.states if s.status in ACTIVE]

    @property
    def finished(self) -> bool:
        return not self.active

    def as_json(self) -> list[dict[str, object]]:
        return [s.as_dict() for s in self.states]


def cell_states(
    matrix: Matrix, cells: Iterable[Cell] | None = None, *, runner: sacct.Runner | None = None
) -> StatusReport:
    cells = list(matrix.cells if cells is None else cells)
    states: list[CellState] = []
    waiting: dict[str, list[CellState]] = {}  # by executor: need the scheduler's word
    # a corrupt cell whose job the scheduler still runs is that job's (never submitted twice):
    # the scheduler is asked about a stand-in, whose status counts only if it is active
    probes: list[tuple[CellState, CellState]] = []
    for cell in cells:
        if cell.excluded is not None:
            states.append(CellState(cell=cell, status="excluded"))
            continue
        state = read_cell(cell)
        states.append(state)
        writer = folder_lock.holder(cell.folder) if state.status not in FINAL_STATUSES else None
        if writer is not None:  # a live process writes the folder, whatever its job record says
            state.status = "running"
        elif state.status == CORRUPT and state.job is not None:
            probe = CellState(cell=cell, status="queued", job=state.job, run=state.run)
            probes.append((state, probe))
            waiting.setdefault(state.job.executor, []).append(probe)
        elif state.status not in FINAL_STATUSES and state.job is not None:
            waiting.setdefault(state.job.executor, []).append(state)

    report = StatusReport(matrix=matrix, states=states)
    for name, entry in EXECUTORS.items():  # a job of an executor this version does not know stays queued
        if waiting.get(name):
            read = entry.read_states(waiting[name], runner)
            report.scheduler_calls += read.calls
            report.notices += read.notices
    for state, probe in probes:
        if probe.status in ACTIVE:
            state.status = probe.status
    if matrix.waiting and any(s.cell.stage == SELECT_STAGE for s in states):
        # grid points whose job ended without a result.json (an out-of-memory kill) have ended too:
        # a selection whose other points are done chooses now, and its stage-2 cells join the report
        ended: dict[str, str] = {
            s.cell.cell_id: s.status for s in states if s.cell.stage == SELECT_STAGE and s.status in FINAL_STATUSES
        }
        added = matrix.resolve_selections(ended)
        if added:
            more = cell_states(matrix, added, runner=runner)
            report.states += more.states
            report.scheduler_calls += more.scheduler_calls
    return report
