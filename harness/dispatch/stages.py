"""Stage 2 of a sweep: submitted by ``harness matrix`` itself, run again once stage 1 has ended.

A sweep's stage-2 cells exist only when its grid has finished (``harness.matrix.sweep``), so
they are submitted by a re-invocation of the same submission, which is idempotent: cells that
are done, queued or running are never submitted again. Who re-invokes it:

- **slurm**: a small follow-up job (``<job name>-stage2``, one CPU, 15 minutes) that SLURM
  holds with ``--dependency=afterany:<stage-1 arrays>``: it starts when every grid point has
  ended, however it ended, and submits stage 2 from the compute node (``sbatch`` works there on
  SLURM clusters). It runs on the host's python, outside any container.
- **local**: a detached process that polls the cells' state and submits once no grid point
  is queued or running.
- **debug** (in-process) and ``harness matrix --wait``: the submitting process itself.

Every submission holds ``<output_dir>/.submit.lock``, so a continuation and a user's own
``harness matrix`` never submit the same cell twice. What was scheduled is recorded in
``<output_dir>/stage2.json`` and shown by ``harness status``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness.matrix import Matrix

LOCK_FILE = ".submit.lock"
CONTINUATION_FILE = "stage2.json"
POLL_S = 5.0


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


class ContinueMatrix:
    """The follow-up job: submit the matrix again (stage 2) once stage 1 has ended."""

    def __init__(self, path: str, output_dir: str, executor: str, only: str | None) -> None:
        self.path, self.output_dir, self.executor, self.only = path, output_dir, executor, only

    def __call__(self) -> str:
        return continue_matrix(self.path, self.output_dir, self.executor, self.only)


def continue_matrix(path: str, output_dir: str, executor: str, only: str | None, poll_s: float = POLL_S) -> str:
    """Wait until no grid point of a waiting selection is queued or running, then submit."""
    from harness.dispatch.commands import render_submit, status, submit

    while True:
        report = status(path, output_dir=output_dir, only=only)
        points = {c.cell_id for s in report.matrix.waiting for c in s.points}
        if not any(state.cell.cell_id in points for state in report.active):
            break
        time.sleep(poll_s)
    text = render_submit(submit(path, output_dir=output_dir, only=only, executor=executor))
    print(text, flush=True)
    return text


def schedule(matrix: Matrix, kind: str, only: str | None, array_ids: list[str]) -> str:
    """Arrange for stage 2 to be submitted when stage 1 ends; returns a line for the user."""
    if matrix.path is None:
        return "stage 2 waits for stage 1: run harness matrix again when it has finished"
    path, out = str(Path(matrix.path).absolute()), str(matrix.output_dir)
    record: dict[str, Any] = {"executor": kind, "after": array_ids, "matrix": path}
    if kind == "slurm":
        job = _slurm_job(matrix, ContinueMatrix(path, out, kind, only), array_ids)
        record["job_id"] = str(job.job_id)
        line = f"stage 2 is submitted by job {job.job_id} when stage 1 ends (--dependency=afterany:{':'.join(array_ids)})"
    else:
        log = matrix.submitit_folder / "stage2.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "harness.dispatch.stages", path, "--output-dir", out, "--executor", kind]
        command += ["--only", only] if only else []
        with open(log, "ab") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                       cwd=os.getcwd(), env=_environment())
        record["pid"] = process.pid
        line = f"stage 2 is submitted by process {process.pid} when stage 1 ends (log: {log})"
    (matrix.output_dir / CONTINUATION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return line


def _environment() -> dict[str, str]:
    import harness

    roots = ":".join(str(Path(p).resolve().parent) for p in harness.__path__)
    return {**os.environ, "PYTHONPATH": roots + (f":{os.environ['PYTHONPATH']}" if os.environ.get("PYTHONPATH") else "")}


def _slurm_job(matrix: Matrix, function: ContinueMatrix, array_ids: list[str]) -> Any:
    import shlex

    import submitit

    from harness.dispatch.executor import setup_lines

    spec, resources = matrix.spec.executor, matrix.spec.resources
    executor = submitit.SlurmExecutor(folder=matrix.submitit_folder, python=shlex.quote(sys.executable))
    params: dict[str, Any] = {"job_name": f"{spec.job_name or f'harness-{matrix.name}'}-stage2", "time": 15, "nodes": 1,
                              "ntasks_per_node": 1, "cpus_per_task": 1, "setup": setup_lines(resources),
                              "additional_parameters": {"dependency": "afterany:" + ":".join(array_ids)}}
    for key in ("partition", "account", "qos"):
        if getattr(resources, key):
            params[key] = getattr(resources, key)
    executor.update_parameters(**params)
    return executor.submit(function)


def describe(output_dir: Path) -> str | None:
    """What ``harness status`` says about a scheduled continuation."""
    try:
        record = json.loads((output_dir / CONTINUATION_FILE).read_text())
    except (OSError, ValueError):
        return None
    who = f"job {record['job_id']}" if "job_id" in record else f"process {record.get('pid')}"
    return f"stage 2 is submitted by {who} ({record.get('executor')}) when stage 1 ends"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="submit a matrix's stage 2 once its stage 1 has ended")
    parser.add_argument("matrix")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--executor", required=True)
    parser.add_argument("--only")
    args = parser.parse_args(argv)
    continue_matrix(args.matrix, args.output_dir, args.executor, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
