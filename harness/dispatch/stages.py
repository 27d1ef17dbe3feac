"""Stage 2 of a sweep: submitted by ``harness matrix`` itself, run again once stage 1 has ended.

A sweep's stage-2 cells exist only when its grid has finished (``harness.matrix.sweep``), so
they are submitted by a re-invocation of the same submission (``harness.dispatch.continuation``),
which is idempotent: cells that are done, queued or running are never submitted again. Who
re-invokes it is the executor's business (its ``schedule``): SLURM holds a small follow-up job
with a dependency on stage 1, the local executor starts a detached process; an in-process
executor and ``harness matrix --wait`` submit stage 2 from the submitting process itself.

Every submission holds ``<output_dir>/.submit.lock``, so a continuation and a user's own
``harness matrix`` never submit the same cell twice. What was scheduled is recorded in
``<output_dir>/stage2.json`` and shown by ``harness status``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.dispatch.executor import Continuation, Executor
from harness.jsonfile import write_json_atomic
from harness.matrix import Matrix
from harness.result import CorruptState, move_aside, read_state

LOCK_FILE = ".submit.lock"
CONTINUATION_FILE = "stage2.json"
CONTINUATION_MODULE = "harness.dispatch.continuation"  # run with python -m; it imports the commands


@contextmanager
def submit_lock(output_dir: Path) -> Iterator[None]:
    """One submission of a matrix at a time (blocking: a submission takes seconds)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(output_dir / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def schedule(matrix: Matrix, executor: Executor, only: str | None, array_ids: list[str]) -> str:
    """Arrange for stage 2 to be submitted when stage 1 ends; returns a line for the user."""
    if matrix.path is None:
        return "stage 2 waits for stage 1: run harness matrix again when it has finished"
    path = str(Path(matrix.path).absolute())
    continuation = Continuation(
        path, str(matrix.output_dir), executor.name, only, CONTINUATION_MODULE, tuple(matrix.limits.flags())
    )
    started, line = executor.schedule(matrix, continuation, array_ids)
    record: dict[str, Any] = {"executor": executor.name, "after": array_ids, "matrix": path, **started}
    target = matrix.output_dir / CONTINUATION_FILE
    if os.path.lexists(target) and not target.is_file():  # a corrupt one (a folder) is moved aside
        move_aside(target)
    write_json_atomic(target, record)
    return line


class ContinuationRecord(BaseModel):
    """``stage2.json``: who submits stage 2 when stage 1 ends (the executor's ``schedule``)."""

    model_config = ConfigDict(extra="allow")
    executor: str
    after: list[str]  # the stage-1 job arrays it waits for
    matrix: str
    job_id: str | None = None  # SLURM: the follow-up job
    pid: int | None = None  # local: the detached process


def describe(output_dir: Path) -> str | None:
    """What ``harness status`` says about a scheduled continuation; a corrupt stage2.json is
    said as such (``corrupt: stage2.json: <reason>``), and is replaced by the next submission."""
    try:
        record = read_state(output_dir / CONTINUATION_FILE, ContinuationRecord)
    except CorruptState as error:
        return str(error)
    if record is None:
        return None
    who = f"job {record.job_id}" if record.job_id is not None else f"process {record.pid}"
    return f"stage 2 is submitted by {who} ({record.executor}) when stage 1 ends"
