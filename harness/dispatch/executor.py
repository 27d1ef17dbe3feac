"""What every executor shares: the protocol its entry answers, resource groups, the job's python.

One executor (so one ``sbatch --array``) per resource group: cells that ask for
the same resources share an array, throttled by ``executor.array_parallelism``.
The entries themselves (slurm, local, debug) and their registry are in
``harness.dispatch.executors``; nothing outside them tests an executor's name.
"""

from __future__ import annotations

import shlex
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import harness
from harness.dispatch import container
from harness.dispatch.cell_state import CellState
from harness.dispatch.ledger import JobRecord
from harness.dispatch.sacct import Runner
from harness.matrix import Cell, Matrix, Resources


@dataclass
class ResourceGroup:
    index: int
    resources: Resources
    cells: list[Cell]

    def describe(self) -> str:
        r = self.resources
        parts = [
            f"{len(self.cells)} cells",
            *([f"nodes={r.nodes}"] if r.nodes > 1 else []),
            *([f"tasks_per_node={r.tasks}"] if r.tasks > 1 else []),
            f"gpus={r.gpus}",
            f"cpus={r.cpus}",
            f"mem={mem_text(r.mem_gb) or 'default'}",
            f"time={r.time_min}min",
        ]
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


@dataclass(frozen=True)
class Continuation:
    """A re-invocation of ``harness matrix`` that submits a sweep's stage 2 once stage 1 has ended
    (``harness.dispatch.stages``): the command an executor starts, when stage 1 ends."""

    matrix_path: str
    output_dir: str
    cluster: str
    only: str | None
    module: str  # the module run with ``python -m``
    # the caps the matrix was submitted under, as flags (--max-cells N): stage 2 expands it again
    limit_flags: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.module,
            self.matrix_path,
            "--output-dir",
            self.output_dir,
            "--executor",
            self.cluster,
            *(["--only", self.only] if self.only else []),
            *self.limit_flags,
        ]


@dataclass
class JobsRead:
    """What an executor learnt while reading its jobs' states: the scheduler commands it ran, notices."""

    calls: list[list[str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


class Executor(ABC):
    """One way of running cells (submitit's ``cluster``), registered by name in
    ``harness.dispatch.executors``. Dispatch asks the entry; it never tests the name."""

    name: ClassVar[str]
    # cells run in the submitting process, one after another: a sweep's stage 2 follows in
    # that process too, and a cell cannot be several processes
    in_process: ClassVar[bool] = False
    # a cell may span several nodes
    multi_node: ClassVar[bool] = False
    # its jobs are processes of this machine: an interrupted `harness matrix --wait` cancels
    # them (a scheduler's jobs outlive the waiting process)
    stops_with_wait: ClassVar[bool] = False

    def resolve(self, matrix: Matrix) -> tuple[Executor, str | None]:
        """The executor that will run the matrix here (this one, or a fallback), and a notice
        when it is a fallback; a ConfigError when it cannot run here at all."""
        return self, None

    @abstractmethod
    def make(self, matrix: Matrix, group: ResourceGroup, *, n_local: int) -> Any:
        """The submitit executor of one resource group (``n_local``: cells submitted at once)."""

    @abstractmethod
    def job_script(self, matrix: Matrix, group: ResourceGroup) -> str:
        """The script each job of a group gets (what ``harness plan`` shows)."""

    def slots_folder(self, matrix: Matrix) -> str | None:
        """A folder of lock files that lets at most ``array_parallelism`` cells run at once,
        for executors without a scheduler to throttle them (``harness.dispatch.job``)."""
        return None

    def describe_jobs(self, records: list[JobRecord]) -> str:
        """How ``harness matrix`` describes a group's submission."""
        return f"{self.name} job(s) " + ", ".join(sorted({r.array_job_id for r in records}))

    def run_submitted(self, group: ResourceGroup, jobs: list[Any]) -> None:  # noqa: B027 - an optional hook
        """After submission: an in-process executor runs the jobs now; the others have nothing to do."""

    @abstractmethod
    def read_states(self, states: list[CellState], runner: Runner | None) -> JobsRead:
        """Update the states of cells whose job (of this executor) has no final result.json yet."""

    @abstractmethod
    def cancel(self, jobs: list[JobRecord], runner: Runner | None = None) -> list[list[str]]:
        """Stop these jobs (queued or running); returns the scheduler commands run."""

    @abstractmethod
    def schedule(self, matrix: Matrix, continuation: Continuation, array_ids: list[str]) -> tuple[dict[str, Any], str]:
        """Start ``continuation`` once the jobs ``array_ids`` have ended: what to record about
        it (``stage2.json``) and a line for the user."""


def submitit_folder(matrix: Matrix) -> Path:
    folder = matrix.submitit_folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def python_command(matrix: Matrix, group: ResourceGroup | None = None, *, write: bool = True) -> str:
    """The command that starts python in each job: the image's launcher when the matrix
    has ``executor.container`` (harness.dispatch.container), else ``executor.python``/this one."""
    wrapped = container.python_command(matrix, group.resources.gpus if group else 0, write=write)
    if wrapped:
        return wrapped
    return matrix.spec.executor.python or shlex.quote(sys.executable)


def submit_command(matrix: Matrix, group: ResourceGroup) -> str:
    """The command a job runs (as the script shows it)."""
    return f"{python_command(matrix, group, write=False)} -u -m submitit.core._submit {shlex.quote(str(matrix.submitit_folder))}"


def launcher_lines(command: str, matrix: Matrix, group: ResourceGroup) -> list[str]:
    """Comment lines that show what a container launcher runs (none without a container)."""
    launcher = container.describe(matrix, group.resources.gpus)
    return [f"# {command.split()[0]}:", *(f"#   {line}" for line in launcher.splitlines())] if launcher else []


def checkout_path() -> str:
    """The folder(s) that make this checkout of harness importable (PYTHONPATH)."""
    return ":".join(dict.fromkeys(str(Path(p).resolve().parent) for p in harness.__path__))


def setup_lines(resources: Resources) -> list[str]:
    """Shell lines run before the job: make this checkout importable, then the user's own."""
    return [f'export PYTHONPATH={shlex.quote(checkout_path())}"${{PYTHONPATH:+:$PYTHONPATH}}"', *resources.setup]


def max_num_timeout(matrix: Matrix) -> int:
    # CellJob counts time-outs and preemptions itself and writes the final result; submitit's
    # own (looser) counter must never refuse a requeue first.
    spec = matrix.spec.executor
    return spec.max_requeues + spec.max_preemptions + 1


def mem_text(mem_gb: float | None) -> str | None:
    if not mem_gb:
        return None
    return f"{int(mem_gb)}G" if float(mem_gb).is_integer() else f"{int(mem_gb * 1024)}M"
