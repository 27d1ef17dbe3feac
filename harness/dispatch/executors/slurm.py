"""SLURM through submitit: one ``sbatch --array`` per resource group; states from one ``sacct`` call."""

from __future__ import annotations

import shlex
import shutil
import sys
from datetime import datetime, timezone
from typing import Any

import submitit
from submitit.helpers import CommandFunction
from submitit.slurm.slurm import _make_sbatch_string

from harness.dispatch import sacct
from harness.dispatch.cell_state import ACTIVE, CellState, log_error, reread_final
from harness.dispatch.executor import (
    Continuation,
    Executor,
    JobsRead,
    ResourceGroup,
    launcher_lines,
    max_num_timeout,
    mem_text,
    python_command,
    setup_lines,
    submit_command,
    submitit_folder,
)
from harness.dispatch.executors.local import LOCAL
from harness.dispatch.ledger import JobRecord
from harness.errors import ConfigError
from harness.matrix import Matrix

# how long a fresh SLURM job may be missing from sacct before we call it unknown
SACCT_GRACE_S = 600
CONTINUATION_TIME_MIN = 15  # the stage-2 follow-up job only submits


class Slurm(Executor):
    name = "slurm"
    multi_node = True

    def resolve(self, matrix: Matrix) -> tuple[Executor, str | None]:
        if shutil.which("sbatch") is not None:
            return self, None
        if not matrix.spec.executor.fallback_to_local:
            raise ConfigError(
                f"executor {self.name}: sbatch not found on the PATH "
                "(set executor.fallback_to_local: true to run locally)"
            )
        return LOCAL, f"sbatch not found on the PATH: running with the {LOCAL.name} executor"

    def make(self, matrix: Matrix, group: ResourceGroup, *, n_local: int) -> Any:
        executor = submitit.SlurmExecutor(
            folder=submitit_folder(matrix),
            max_num_timeout=max_num_timeout(matrix),
            python=python_command(matrix, group),
        )
        executor.update_parameters(**parameters(matrix, group))
        return executor

    def job_script(self, matrix: Matrix, group: ResourceGroup) -> str:
        command = submit_command(matrix, group)
        script = _make_sbatch_string(
            command=command, folder=matrix.submitit_folder, map_count=len(group.cells), **parameters(matrix, group)
        )
        launcher = launcher_lines(command, matrix, group)
        return script + ("\n" + "\n".join(launcher) + "\n" if launcher else "")

    def read_states(self, states: list[CellState], runner: sacct.Runner | None) -> JobsRead:
        answer = sacct.query([s.job.job_id for s in states if s.job], runner=runner)
        read = JobsRead(calls=answer.calls, notices=[answer.error] if answer.error else [])
        for state in states:
            _apply(state, answer.states.get(state.job.job_id) if state.job else None, answer.error)
        return read

    def cancel(self, jobs: list[JobRecord], runner: sacct.Runner | None = None) -> list[list[str]]:
        if not jobs:
            return []
        command = ["scancel", *sorted({job.job_id for job in jobs})]
        (runner or sacct.run_command)(command)
        return [command]

    def schedule(self, matrix: Matrix, continuation: Continuation, array_ids: list[str]) -> tuple[dict[str, Any], str]:
        """A small follow-up job (``<job name>-stage2``, one CPU) that SLURM holds with
        ``--dependency=afterany:<stage-1 arrays>``: it starts when every grid point has ended,
        however it ended, and submits stage 2 from the compute node (``sbatch`` works there on
        SLURM clusters). It runs on the host's python, outside any container."""
        resources = matrix.spec.resources
        executor = submitit.SlurmExecutor(folder=matrix.submitit_folder, python=shlex.quote(sys.executable))
        params: dict[str, Any] = {
            "job_name": f"{job_name(matrix)}-stage2",
            "time": CONTINUATION_TIME_MIN,
            "nodes": 1,
            "ntasks_per_node": 1,
            "cpus_per_task": 1,
            "setup": setup_lines(resources),
            "additional_parameters": {"dependency": "afterany:" + ":".join(array_ids)},
        }
        for key in ("partition", "account", "qos"):
            if getattr(resources, key):
                params[key] = getattr(resources, key)
        executor.update_parameters(**params)
        job = executor.submit(CommandFunction(continuation.argv()))
        line = (
            f"stage 2 is submitted by job {job.job_id} when stage 1 ends (--dependency=afterany:{':'.join(array_ids)})"
        )
        return {"job_id": str(job.job_id)}, line


def job_name(matrix: Matrix) -> str:
    return matrix.spec.executor.job_name or f"harness-{matrix.name}"


def parameters(matrix: Matrix, group: ResourceGroup) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters (the sbatch options) of one resource group."""
    r = group.resources
    spec = matrix.spec.executor
    params: dict[str, Any] = {
        "job_name": job_name(matrix),
        "time": r.time_min,
        # one task per GPU (or, on CPU, per gloo process): submitit starts them with srun and
        # the cell sets up torch.distributed from its task's rank (harness.train.distributed)
        "nodes": r.nodes,
        "ntasks_per_node": r.tasks,
        "cpus_per_task": r.cpus,
        "signal_delay_s": r.signal_delay_s,
        "array_parallelism": spec.array_parallelism,
        "use_srun": spec.use_srun,
        "setup": setup_lines(r),
    }
    if r.gpus:
        params["gpus_per_node"] = r.gpus
    if r.mem_gb:
        params["mem"] = mem_text(r.mem_gb)
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(r, key):
            params[key] = getattr(r, key)
    extra = {k: v for k, v in r.sbatch_extra.items() if v is not False}
    if extra:
        params["additional_parameters"] = extra
    return params


def _apply(state: CellState, job_state: sacct.JobState | None, error: str | None) -> None:
    if job_state is None:
        submitted = _age_s(state.job.submitted_at) if state.job else None
        if error or (submitted is not None and submitted > SACCT_GRACE_S):
            state.status = "unknown"
            state.error = error or "job not found by sacct"
        else:
            state.status = "queued"  # sacct may lag a fresh submission by a few seconds
        return
    state.scheduler_state = job_state.raw_state or job_state.state
    state.status = job_state.cell_status
    if state.status in ACTIVE or reread_final(state):  # the job may have finished since the folder was read
        return
    detail = f"job {job_state.job_id} ended {job_state.state}"
    if job_state.exit_code and job_state.exit_code != "0:0":
        detail += f" (exit {job_state.exit_code})"
    if job_state.state == "COMPLETED":
        detail += " without writing result.json"
    tail = log_error(state.job.stderr) if state.job else None
    state.error = f"{detail}: {tail}" if tail else detail


def _age_s(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return None


SLURM = Slurm()
