"""submitit executors for a matrix: which kind, what each job array asks for, the job script.

One executor (so one ``sbatch --array``) per resource group: cells that ask for
the same resources share an array, throttled by ``executor.array_parallelism``.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.matrix import Cell, Matrix, Resources

EXECUTORS = ("slurm", "local", "debug")
ENV_EXECUTOR = "HARNESS_EXECUTOR"  # overrides the matrix file's executor.kind (e.g. on a laptop)


@dataclass
class ResourceGroup:
    index: int
    resources: Resources
    cells: list[Cell]

    def describe(self) -> str:
        r = self.resources
        parts = [f"{len(self.cells)} cells", *([f"nodes={r.nodes}"] if r.nodes > 1 else []),
                 *([f"tasks_per_node={r.tasks}"] if r.tasks > 1 else []), f"gpus={r.gpus}", f"cpus={r.cpus}",
                 f"mem={_mem(r.mem_gb) or 'default'}", f"time={r.time_min}min"]
        parts += [f"{k}={getattr(r, k)}" for k in ("partition", "account", "qos", "constraint") if getattr(r, k)]
        return ", ".join(parts)


def group_cells(cells: list[Cell]) -> list[ResourceGroup]:
    groups: dict[str, ResourceGroup] = {}
    for cell in cells:
        key = cell.resources.model_dump_json()
        if key not in groups:
            groups[key] = ResourceGroup(index=len(groups), resources=cell.resources, cells=[])
        groups[key].cells.append(cell)
    return list(groups.values())


def resolve_kind(matrix: Matrix, override: str | None = None) -> tuple[str, str | None]:
    """The executor kind to use, and a notice when it differs from the file's."""
    kind = override or os.environ.get(ENV_EXECUTOR) or matrix.spec.executor.kind
    if kind not in EXECUTORS:
        raise ConfigError(f"unknown executor {kind!r}; valid: {', '.join(EXECUTORS)}")
    if kind == "slurm" and shutil.which("sbatch") is None:
        if not matrix.spec.executor.fallback_to_local:
            raise ConfigError("executor slurm: sbatch not found on the PATH (set executor.fallback_to_local: true to run locally)")
        return "local", "sbatch not found on the PATH: running with the local executor"
    notice = f"executor {kind} (the matrix file says {matrix.spec.executor.kind})" if kind != matrix.spec.executor.kind else None
    return kind, notice


def python_command(matrix: Matrix, group: ResourceGroup | None = None, *, write: bool = True) -> str:
    """The command that starts python in each job: the image's launcher when the matrix
    has ``executor.container`` (harness.dispatch.container), else ``executor.python``/this one."""
    from harness.dispatch import container

    wrapped = container.python_command(matrix, group.resources.gpus if group else 0, write=write)
    if wrapped:
        return wrapped
    return matrix.spec.executor.python or shlex.quote(sys.executable)


def setup_lines(resources: Resources) -> list[str]:
    """Shell lines run before the job: make this checkout importable, then the user's own."""
    import harness

    roots = [str(Path(p).resolve().parent) for p in harness.__path__]
    path = ":".join(dict.fromkeys(roots))
    return [f'export PYTHONPATH={shlex.quote(path)}"${{PYTHONPATH:+:$PYTHONPATH}}"', *resources.setup]


def max_num_timeout(matrix: Matrix) -> int:
    # CellJob counts time-outs and preemptions itself and writes the final result; submitit's
    # own (looser) counter must never refuse a requeue first.
    spec = matrix.spec.executor
    return spec.max_requeues + spec.max_preemptions + 1


def slurm_parameters(matrix: Matrix, group: ResourceGroup) -> dict[str, Any]:
    r = group.resources
    spec = matrix.spec.executor
    params: dict[str, Any] = {
        "job_name": spec.job_name or f"harness-{matrix.name}",
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
        params["mem"] = _mem(r.mem_gb)
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(r, key):
            params[key] = getattr(r, key)
    extra = {k: v for k, v in r.sbatch_extra.items() if v is not False}
    if extra:
        params["additional_parameters"] = extra
    return params


def local_parameters(matrix: Matrix, group: ResourceGroup, n_local: int) -> dict[str, Any]:
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
        "setup": setup_lines(r),
    }


def executor_refusal(kind: str, resources: Resources) -> str | None:
    """Why an executor cannot start a cell's processes (the config's own checks are in
    harness.matrix.expand.distributed_refusal), or None."""
    if resources.nodes > 1 and kind != "slurm":
        return (f"resources.nodes {resources.nodes}: the {kind} executor runs on this one machine; "
                "a multi-node cell needs executor.kind: slurm")
    if resources.world_size > 1 and kind == "debug":
        return (f"{resources.world_size} processes per cell: the debug executor runs cells in this process; "
                "use the local or slurm executor")
    return None


def check_executor(kind: str, matrix: Matrix, cells: list[Cell], *, submitting: bool = False) -> None:
    """A one-line ConfigError naming the first cell the executor cannot start."""
    for cell in cells:
        if cell.excluded is not None:
            continue
        reason = executor_refusal(kind, cell.resources)
        if reason:
            raise ConfigError(f"{matrix.path or 'matrix'}: cell {cell.label()}: {reason}")


def make_executor(kind: str, matrix: Matrix, group: ResourceGroup, *, n_local: int = 1) -> Any:
    import submitit

    folder = matrix.submitit_folder
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_num_timeout(matrix), python=python_command(matrix, group))
        executor.update_parameters(**slurm_parameters(matrix, group))
    elif kind == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=max_num_timeout(matrix), python=python_command(matrix, group))
        executor.update_parameters(**local_parameters(matrix, group, n_local))
        executor._throttling = 0.01  # submitit waits 0.2 s between local processes by default
    elif kind == "debug":
        executor = submitit.DebugExecutor(folder=folder)
    else:  # resolve_kind has checked
        raise ConfigError(f"unknown executor {kind!r}; valid: {', '.join(EXECUTORS)}")
    return executor


def job_script(kind: str, matrix: Matrix, group: ResourceGroup) -> str:
    """The script each job of a group gets (what ``harness plan`` shows)."""
    from harness.dispatch import container

    folder = matrix.submitit_folder
    command = f"{python_command(matrix, group, write=False)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    launcher = container.describe(matrix, group.resources.gpus) if kind != "debug" else None
    if kind == "slurm":
        from submitit.slurm.slurm import _make_sbatch_string

        params = slurm_parameters(matrix, group)
        script = _make_sbatch_string(command=command, folder=folder, map_count=len(group.cells), **params)
        return script + (f"\n# {command.split()[0]}:\n" + "".join(f"#   {line}\n" for line in launcher.splitlines()) if launcher else "")
    lines = ["#!/bin/bash", f"# {kind} executor: " + ("one process per cell, at most "
             f"{matrix.spec.executor.array_parallelism} running at once" if kind == "local" else "in this process, one cell after another")]
    if kind == "local":
        lines += setup_lines(group.resources) + [command]
        if launcher:
            lines += [f"# {command.split()[0]}:"] + [f"#   {line}" for line in launcher.splitlines()]
    return "\n".join(lines) + "\n"


def _mem(mem_gb: float | None) -> str | None:
    if not mem_gb:
        return None
    return f"{int(mem_gb)}G" if float(mem_gb).is_integer() else f"{int(mem_gb * 1024)}M"
