"""The executors, by name: submitit's ``cluster`` (``executor.cluster`` in a matrix file).

Each entry is an :class:`harness.dispatch.executor.Executor`: how it submits, reads its jobs'
states, cancels, schedules a sweep's stage 2 and shows its job script. Adding an executor is
one module here and one line in ``EXECUTORS``; dispatch asks the entry, never tests a name.
"""

from __future__ import annotations

import os

from harness.dispatch.executor import Executor
from harness.dispatch.executors.debug import DEBUG
from harness.dispatch.executors.local import LOCAL
from harness.dispatch.executors.slurm import SLURM
from harness.errors import ConfigError
from harness.matrix import Cell, Matrix, Resources

EXECUTORS: dict[str, Executor] = {entry.name: entry for entry in (SLURM, LOCAL, DEBUG)}
ENV_EXECUTOR = "HARNESS_EXECUTOR"  # overrides the matrix file's executor.cluster (e.g. on a laptop)


def executor_names() -> tuple[str, ...]:
    return tuple(EXECUTORS)


def get_executor(name: str) -> Executor:
    """The entry of that name, or a one-line ConfigError listing the valid names."""
    try:
        return EXECUTORS[name]
    except KeyError:
        raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}") from None


def resolve_cluster(matrix: Matrix, override: str | None = None) -> tuple[Executor, str | None]:
    """The executor to use (``--executor``, else $HARNESS_EXECUTOR, else the matrix file's
    ``executor.cluster``), and a notice when it differs from the file's."""
    written = matrix.spec.executor.cluster
    name, where = next(
        (value, source)
        for value, source in (
            (override, "--executor"),
            (os.environ.get(ENV_EXECUTOR), f"${ENV_EXECUTOR}"),
            (written, f"{matrix.path or 'matrix'}: executor.cluster"),
        )
        if value
    )
    try:
        asked = get_executor(name)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    executor, notice = asked.resolve(matrix)
    if notice is None and executor.name != written:
        notice = f"executor {executor.name} (the matrix file says {written})"
    return executor, notice


def executor_refusal(executor: Executor, resources: Resources) -> str | None:
    """Why an executor cannot start a cell's processes (the config's own checks are in
    harness.matrix.expand.distributed_refusal), or None."""
    if resources.nodes > 1 and not executor.multi_node:
        able = " or ".join(e.name for e in EXECUTORS.values() if e.multi_node)
        return (
            f"resources.nodes {resources.nodes}: the {executor.name} executor runs on this one machine; "
            f"a multi-node cell needs executor.cluster: {able}"
        )
    if resources.world_size > 1 and executor.in_process:
        able = " or ".join(e.name for e in EXECUTORS.values() if not e.in_process)
        return (
            f"{resources.world_size} processes per cell: the {executor.name} executor runs cells in this process; "
            f"use the {able} executor"
        )
    return None


def check_executor(executor: Executor, matrix: Matrix, cells: list[Cell]) -> None:
    """A one-line ConfigError naming the first cell the executor cannot start."""
    for cell in cells:
        if cell.excluded is not None:
            continue
        reason = executor_refusal(executor, cell.resources)
        if reason:
            raise ConfigError(f"{matrix.path or 'matrix'}: cell {cell.label()}: {reason}")


__all__ = [
    "ENV_EXECUTOR",
    "EXECUTORS",
    "Executor",
    "check_executor",
    "executor_names",
    "executor_refusal",
    "get_executor",
    "resolve_cluster",
]
