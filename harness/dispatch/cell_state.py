"""A cell's state as its folder tells it: the status names, and what result.json and job.json say.

The statuses are defined here once: a result's own (``harness.result.Status``) plus the states
only dispatch knows (pending, queued, unknown, corrupt, excluded). What the scheduler says about
a job still in flight is each executor's business (``harness.dispatch.executors``).

``corrupt``: a file of the folder (result.json and the files beside it, job.json, run.json) or
the folder itself is not what the harness wrote (``harness.result.CorruptState``); the cell's
error is the one line ``corrupt: <file>: <reason>``, and ``--retry-failed`` runs it again.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.dispatch.ledger import JobRecord, RunRecord, read_job, read_run
from harness.errors import one_line
from harness.matrix import Cell
from harness.names import CELL_LOG
from harness.redact import redact
from harness.result import CORRUPT, FINAL_STATUSES, PAUSED, CorruptState, Result, ResultFile, Status, check_folder

ActiveStatus = Literal["queued", "running"]
# in the order ``harness status`` counts them
CellStatus = Literal["pending", ActiveStatus, Status, "unknown", "corrupt", "excluded"]
CELL_STATUSES: tuple[CellStatus, ...] = typing.get_args(CellStatus)
ACTIVE: frozenset[CellStatus] = frozenset(typing.get_args(ActiveStatus))
# a cell that ended this way is submitted again with --retry-failed; not a diverged one: its
# settings and seed make the same run diverge again (--force reruns it); nor a paused one: it
# stopped at a rung as asked, and only its sweep continues it
RETRYABLE: frozenset[str] = frozenset({*FINAL_STATUSES - {"success", "diverged", PAUSED}, "unknown", CORRUPT})
# a matrix whose cells all ended this way has nothing left to do (``harness matrix --wait`` exits 0)
SUCCESSFUL: frozenset[CellStatus] = frozenset({"success", "excluded"})


@dataclass
class CellState:
    cell: Cell
    status: CellStatus
    job: JobRecord | None = None
    run: RunRecord | None = None
    result: Result | None = None
    error: str | None = None  # first line
    log: str | None = None  # where to look
    scheduler_state: str | None = None  # e.g. sacct's OUT_OF_MEMORY
    corrupt: Path | None = None  # status corrupt: the file (or folder) a retry moves aside

    @property
    def job_id(self) -> str | None:
        return self.job.job_id if self.job else None

    def as_dict(self) -> dict[str, object]:
        return {
            "cell_id": self.cell.cell_id,
            "model": self.cell.model,
            "method": self.cell.method,
            "task": self.cell.task,
            "seed": self.cell.seed,
            "status": self.status,
            "job_id": self.job_id,
            "executor": self.job.executor if self.job else None,
            "attempts": self.run.attempts if self.run else 0,
            "scheduler_state": self.scheduler_state,
            "error": self.error,
            "log": self.log,
            "folder": str(self.cell.folder),
            "excluded_reason": self.cell.excluded,
        }


def read_cell(cell: Cell) -> CellState:
    """What the folder says: a final result.json, else the job recorded in job.json, else pending;
    ``corrupt`` when one of its files (or the folder) is not what the harness wrote."""
    folder = cell.folder
    state = CellState(cell=cell, status="pending")
    try:
        check_folder(folder)
        state.job = read_job(folder)
        state.run = read_run(folder)
        result = ResultFile(folder).read()
    except CorruptState as error:
        state.status, state.error, state.corrupt = CORRUPT, str(error), error.path
        return state
    if state.job is not None:
        state.status, state.log = "queued", state.job.stderr
    if result is not None:
        state.result = result
        # a cell with rungs submitted again to continue (paused, or a crashed continuation retried;
        # run.json reopened by the submission, see submit's _prepare_folder): its job's state, not
        # the result it continues
        continued = (
            result.status != "success"
            and bool(result.rungs)
            and state.job is not None
            and state.run is not None
            and not state.run.finished_at
        )
        if result.status in FINAL_STATUSES and not continued:
            state.status = result.status
            if result.status not in ("success", PAUSED):  # paused: stopped at a rung as asked, no error
                state.error = first_line(result.error) or _last_line(result.traceback)
                state.log = _result_log(folder, result) or state.log
    return state


def reread_final(state: CellState) -> bool:
    """Read the folder again after the job was seen to end: it may have written its final
    result.json since the folder was first read. True (and ``state`` updated) if it has."""
    again = read_cell(state.cell)
    if again.status not in FINAL_STATUSES:
        return False
    state.status, state.result, state.error, state.log = again.status, again.result, again.error, again.log
    return True


def _result_log(folder: Path, result: Result) -> str | None:
    for name in ("log", "train_log", "stderr"):
        if name in result.artifacts:
            return str(folder / result.artifacts[name])
    log_file = folder / CELL_LOG
    return str(log_file) if log_file.exists() else None


def log_error(path: str | None, max_bytes: int = 64_000) -> str | None:
    """The last exception-looking line of a job's stderr (e.g. ``ModuleNotFoundError: ...``),
    redacted (:mod:`harness.redact`) and one line."""
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - max_bytes, 0))
            lines = handle.read().decode(errors="replace").splitlines()
    except (OSError, ValueError):  # ValueError: a path read back from job.json with a NUL in it
        return None
    for line in reversed(lines):
        text = line.strip()
        if text and ("Error" in text or "Exception" in text or "Killed" in text or text.startswith("slurmstepd")):
            # the job's own stderr, which nothing redacted (an HTTPError's URL with ?token=...):
            # redacted before it is cut, as every line status prints is
            return one_line(redact(text), 300)
    return None


def first_line(text: str | None) -> str | None:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return None


def _last_line(text: str | None) -> str | None:
    for line in reversed((text or "").splitlines()):
        if line.strip():
            return line.strip()[:300]
    return None


def ended_as_planned(state: CellState) -> bool:
    """Nothing is left to do for this cell: it succeeded, is excluded, or is a halving's grid
    point that its sweep stopped at a rung (paused, and not continued)."""
    return state.status in SUCCESSFUL or (state.status == PAUSED and not state.cell.continues)
