"""Subprocesses on this machine through submitit: at most ``array_parallelism`` cells at once
(``harness.dispatch.job`` waits for a slot); states from the processes themselves."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
from typing import Any

import psutil
import submitit

from harness.dispatch.cell_state import CellState, log_error, reread_final
from harness.dispatch.executor import (
    Continuation,
    Executor,
    JobsRead,
    ResourceGroup,
    checkout_path,
    launcher_lines,
    max_num_timeout,
    python_command,
    setup_lines,
    submit_command,
    submitit_folder,
)
from harness.dispatch.ledger import JobRecord
from harness.dispatch.sacct import Runner
from harness.matrix import Matrix

IGNORE_SIGINT = "trap '' INT"
CONTROLLER = "submitit.local._local"
THROTTLE_S = 0.01  # submitit waits 0.2 s between local processes by default
CONTINUATION_LOG = "stage2.log"


class Local(Executor):
    name = "local"
    stops_with_wait = True

    def make(self, matrix: Matrix, group: ResourceGroup, *, n_local: int) -> Any:
        executor = submitit.LocalExecutor(
            folder=submitit_folder(matrix),
            max_num_timeout=max_num_timeout(matrix),
            python=python_command(matrix, group),
        )
        executor.update_parameters(**parameters(matrix, group, n_local))
        executor._throttling = THROTTLE_S
        return executor

    def job_script(self, matrix: Matrix, group: ResourceGroup) -> str:
        command = submit_command(matrix, group)
        lines = [
            "#!/bin/bash",
            f"# {self.name} executor: one process per cell, at most "
            f"{matrix.spec.executor.array_parallelism} running at once",
        ]
        lines += setup_lines(group.resources) + [command] + launcher_lines(command, matrix, group)
        return "\n".join(lines) + "\n"

    def slots_folder(self, matrix: Matrix) -> str | None:
        return str(matrix.submitit_folder / "slots")

    def read_states(self, states: list[CellState], runner: Runner | None) -> JobsRead:
        for state in states:
            _apply(state)
        return JobsRead()

    def cancel(self, jobs: list[JobRecord], runner: Runner | None = None) -> list[list[str]]:
        """SIGTERM to each job's submitit controller, which forwards it to its worker and waits for
        it to exit (a SIGINT, what submitit's LocalJob.cancel sends, has the controller SIGKILL the
        worker one second later: too soon to save a checkpoint). The worker ends its cell
        ``cancelled`` (``harness.dispatch.job``)."""
        for job in jobs:
            for process in _controllers(job.job_id):
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGTERM)
        return []

    def schedule(self, matrix: Matrix, continuation: Continuation, array_ids: list[str]) -> tuple[dict[str, Any], str]:
        """A detached process that polls the cells' state and submits once no grid point is queued or running."""
        log = matrix.submitit_folder / CONTINUATION_LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": checkout_path() + (f":{path}" if path else "")}
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                continuation.argv(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=os.getcwd(),
                env=env,
            )
        return {"pid": process.pid}, f"stage 2 is submitted by process {process.pid} when stage 1 ends (log: {log})"


def parameters(matrix: Matrix, group: ResourceGroup, n_local: int) -> dict[str, Any]:
    r = group.resources
    # At most array_parallelism cells run at once (CellJob waits for a slot), so the
    # whole local job may wait for ceil(n / P) cells before its own turn; CellJob
    # enforces the per-cell time limit itself.
    rounds = math.ceil(max(n_local, 1) / matrix.spec.executor.array_parallelism)
    return {
        "timeout_min": r.time_min * (rounds + 1),
        "gpus_per_node": r.gpus,
        "tasks_per_node": r.tasks,
        "signal_delay_s": r.signal_delay_s,
        # the controller ignores SIGINT (as its workers do until the cell installs its own
        # handler): a Ctrl-C reaches the whole terminal process group, and a controller hit by it
        # would SIGKILL its worker a second later; `harness matrix --wait` stops them instead
        "setup": [IGNORE_SIGINT, *setup_lines(r)],
    }


def _controllers(job_id: str) -> list[psutil.Process]:
    """The job's submitit controller: the job id is its pid, or its shell's when it has setup lines."""
    if not alive(job_id):
        return []
    try:
        process = psutil.Process(int(job_id))
        family = [process, *process.children()]
        return [p for p in family if CONTROLLER in " ".join(p.cmdline())]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _apply(state: CellState) -> None:
    job = state.job
    if job is None:
        return
    if alive(job.job_id):
        worker = state.run.pid if state.run and state.run.finished_at is None else None
        state.status = "running" if worker and alive(str(worker)) else "queued"
        return
    # the job may have written its final result.json and exited between our reading the folder
    # and asking about the process: read it again before calling the cell failed
    if reread_final(state):
        return
    state.status = "failed"
    tail = log_error(job.stderr)
    state.error = f"{LOCAL.name} job {job.job_id} ended without a final result.json" + (f": {tail}" if tail else "")


def alive(pid: str) -> bool:
    """A live (not zombie) process of ours: a submitit controller or a cell worker."""
    if not (pid.isascii() and pid.isdigit()):  # a job id read back from job.json may be anything
        return False
    try:
        process = psutil.Process(int(pid))
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        return "submitit" in " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, or another user's process reusing the pid
        return False


LOCAL = Local()
