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
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.dispatch.executor import Continuation, Executor
from harness.matrix import Matrix

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
    continuation = Continuation(path, str(matrix.output_dir), executor.name, only, CONTINUATION_MODULE)
    started, line = executor.schedule(matrix, continuation, array_ids)
    record: dict[str, Any] = {"executor": executor.name, "after": array_ids, "matrix": path, **started}
    (matrix.output_dir / CONTINUATION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return line


def describe(output_dir: Path) -> str | None:
    """What ``harness status`` says about a scheduled continuation."""
    try:
        record = json.loads((output_dir / CONTINUATION_FILE).read_text())
    except (OSError, ValueError):
        return None
    who = f"job {record['job_id']}" if "job_id" in record else f"process {record.get('pid')}"
    return f"stage 2 is submitted by {who} ({record.get('executor')}) when stage 1 ends"
