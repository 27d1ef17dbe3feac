"""The state of every cell: from its result.json first, else from its job.

Order of evidence: a final result.json (written by the cell runner, or by CellJob
on the last time-out) wins; otherwise the job recorded in job.json is asked about:
SLURM jobs through ONE batched sacct call for the whole matrix, local jobs by
their process, debug jobs never outlive ``submit``. No job at all: ``pending``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from harness import folder_lock
from harness.dispatch import sacct
from harness.dispatch.ledger import JobRecord, RunRecord, read_job, read_run
from harness.matrix import Cell, Matrix
from harness.names import SELECT_STAGE
from harness.result import FINAL_STATUSES, RESULT_FILE, Result, load_result

STATUSES = ("pending", "queued", "running", "success", "failed", "oom", "timeout", "cancelled", "unknown", "excluded")
FINAL = FINAL_STATUSES
ACTIVE = frozenset({"queued", "running"})
# how long a fresh SLURM job may be missing from sacct before we call it unknown
SACCT_GRACE_S = 600
CELL_LOG = "log.txt"  # written by harness.cell.run_cell


@dataclass
class CellState:
    cell: Cell
    status: str
    job: JobRecord | None = None
    run: RunRecord | None = None
    result: Result | None = None
    error: str | None = None  # first line
    log: str | None = None  # where to look
    scheduler_state: str | None = None  # e.g. sacct's OUT_OF_MEMORY

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


@dataclass
class StatusReport:
    matrix: Matrix
    states: list[CellState]
    scheduler_calls: list[list[str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
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


def cell_states(matrix: Matrix, cells: Iterable[Cell] | None = None, *, runner: sacct.Runner | None = None) -> StatusReport:
    cells = list(matrix.cells if cells is None else cells)
    states: list[CellState] = []
    waiting: list[CellState] = []  # need the scheduler's word
    for cell in cells:
        if cell.excluded is not None:
            states.append(CellState(cell=cell, status="excluded"))
            continue
        state = _from_files(cell)
        states.append(state)
        writer = folder_lock.holder(cell.folder) if state.status not in FINAL else None
        if writer is not None:  # a live process writes the folder, whatever its job record says
            state.status = "running"
        elif state.status not in FINAL and state.job is not None:
            waiting.append(state)

    report = StatusReport(matrix=matrix, states=states)
    slurm = [s for s in waiting if s.job and s.job.executor == "slurm"]
    if slurm:
        answer = sacct.query([s.job.job_id for s in slurm if s.job], runner=runner)
        report.scheduler_calls = answer.calls
        if answer.error:
            report.notices.append(answer.error)
        for state in slurm:
            _apply_scheduler(state, answer.states.get(state.job.job_id) if state.job else None, answer.error)
    for state in waiting:
        if state.job and state.job.executor == "local":
            _apply_local(state)
        elif state.job and state.job.executor == "debug":
            state.status, state.error = "failed", state.error or "the in-process (debug) job ended without a final result.json"
    if matrix.waiting and any(s.cell.stage == SELECT_STAGE for s in states):
        # grid points whose job ended without a result.json (an out-of-memory kill) have ended too:
        # a selection whose other points are done chooses now, and its stage-2 cells join the report
        ended = {s.cell.cell_id: s.status for s in states if s.cell.stage == SELECT_STAGE and s.status in FINAL}
        added = matrix.resolve_selections(ended)
        if added:
            more = cell_states(matrix, added, runner=runner)
            report.states += more.states
            report.scheduler_calls += more.scheduler_calls
    return report


def _from_files(cell: Cell) -> CellState:
    folder = cell.folder
    job = read_job(folder)
    run = read_run(folder) if job is not None else None
    state = CellState(cell=cell, status="pending" if job is None else "queued", job=job, run=run)
    if job is not None:
        state.log = job.stderr
    if (folder / RESULT_FILE).exists():
        try:
            result = load_result(folder)
        except Exception as error:  # noqa: BLE001 - shown, not fatal
            state.error = f"unreadable result.json: {error}"
        else:
            state.result = result
            if result.status in FINAL:
                state.status = result.status
                if result.status != "success":
                    state.error = first_line(result.error) or _last_line(result.traceback)
                    state.log = _result_log(folder, result) or state.log
    return state


def _apply_scheduler(state: CellState, job_state: sacct.JobState | None, error: str | None) -> None:
    if job_state is None:
        submitted = _age_s(state.job.submitted_at) if state.job else None
        if error or (submitted is not None and submitted > SACCT_GRACE_S):
            state.status = "unknown"
            state.error = error or "job not found by sacct"
        else:
            state.status = "queued"  # sacct may lag a fresh submission by a few seconds
        return
    state.scheduler_state = job_state.raw_state or job_state.state
    status = job_state.cell_status
    state.status = status
    if status not in ACTIVE:
        again = _from_files(state.cell)  # the job may have finished since the folder was read
        if again.status in FINAL:
            state.status, state.result, state.error, state.log = again.status, again.result, again.error, again.log
            return
        detail = f"job {job_state.job_id} ended {job_state.state}"
        if job_state.exit_code and job_state.exit_code != "0:0":
            detail += f" (exit {job_state.exit_code})"
        if job_state.state == "COMPLETED":
            detail += " without writing result.json"
        tail = _log_error(state.job.stderr) if state.job else None
        state.error = f"{detail}: {tail}" if tail else detail


def _apply_local(state: CellState) -> None:
    job = state.job
    if job is None:
        return
    if _alive(job.job_id):
        worker = state.run.pid if state.run and state.run.finished_at is None else None
        state.status = "running" if worker and _alive(str(worker)) else "queued"
        return
    # the job may have written its final result.json and exited between our reading the folder
    # and asking about the process: read it again before calling the cell failed
    again = _from_files(state.cell)
    if again.status in FINAL:
        state.status, state.result, state.error, state.log = again.status, again.result, again.error, again.log
        return
    state.status = "failed"
    tail = _log_error(job.stderr)
    state.error = f"local job {job.job_id} ended without a final result.json" + (f": {tail}" if tail else "")


def _alive(pid: str) -> bool:
    """A live (not zombie) process of ours: a submitit controller or a cell worker."""
    import psutil

    if not pid.isdigit():
        return False
    try:
        process = psutil.Process(int(pid))
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        return "submitit" in " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, or another user's process reusing the pid
        return False


def _age_s(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return None


def _result_log(folder: Path, result: Result) -> str | None:
    for name in ("log", "train_log", "stderr"):
        if name in result.artifacts:
            return str(folder / result.artifacts[name])
    log_file = folder / CELL_LOG
    return str(log_file) if log_file.exists() else None


def _log_error(path: str | None, max_bytes: int = 64_000) -> str | None:
    """The last exception-looking line of a job's stderr (e.g. ``ModuleNotFoundError: ...``)."""
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - max_bytes, 0))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        text = line.strip()
        if text and ("Error" in text or "Exception" in text or "Killed" in text or text.startswith("slurmstepd")):
            return text[:300]
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
