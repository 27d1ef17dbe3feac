"""What was submitted for a cell, kept next to it.

Two small files per cell folder, each with one writer, so they never race:

- ``job.json`` (written by ``submit``): job id, executor, submitit folder, log paths,
  submission time, how many times the cell was submitted.
- ``run.json`` (written by the job itself, see ``harness.dispatch.job``): attempts,
  time-outs, preemptions, host, pid, last checkpoint step.

``<output_dir>/jobs.jsonl`` is the matrix-level ledger: one line per submitted cell.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.jsonfile import write_json_atomic
from harness.result import RESULT_FILES, CorruptState, now_iso, read_state

JOB_FILE = "job.json"
RUN_FILE = "run.json"
LEDGER_FILE = "jobs.jsonl"
HISTORY_DIR = "history"


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    cell_id: str
    job_id: str
    executor: str  # slurm | local | debug
    submitit_folder: str
    stdout: str | None = None
    stderr: str | None = None
    submitted_at: str
    submissions: int = 1  # how many times this cell has been submitted
    matrix: str | None = None
    group: int | None = None  # resource group (one job array each)

    @property
    def array_job_id(self) -> str:
        return self.job_id.split("_", 1)[0]


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    attempts: int = 0
    timeouts: int = 0
    preemptions: int = 0
    job_id: str | None = None
    hostname: str | None = None
    pid: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    checkpoint_step: int | None = None
    last_signal: dict[str, Any] | None = None


def read_job(cell_dir: Path) -> JobRecord | None:
    """job.json; None when there is none. Raises CorruptState (the cell's status is corrupt)."""
    return read_state(cell_dir / JOB_FILE, JobRecord)


def read_run(cell_dir: Path) -> RunRecord | None:
    """run.json; None when there is none. Raises CorruptState (the cell's status is corrupt)."""
    return read_state(cell_dir / RUN_FILE, RunRecord)


def write_job(cell_dir: Path, record: JobRecord) -> None:
    write_json_atomic(cell_dir / JOB_FILE, record.model_dump(mode="json"))


def update_run(cell_dir: Path, **changes: Any) -> RunRecord:
    try:
        record = read_run(cell_dir) or RunRecord()
    except CorruptState:  # its one writer starts it again (a retry moves a corrupt one aside first)
        record = RunRecord()
    record = record.model_copy(update=changes)
    write_json_atomic(cell_dir / RUN_FILE, record.model_dump(mode="json"))
    return record


def append_ledger(output_dir: Path, records: list[JobRecord]) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / LEDGER_FILE).open("a") as handle:
        for record in records:
            handle.write(json.dumps(record.model_dump(mode="json"), sort_keys=True) + "\n")


def archive_previous(cell_dir: Path, *, everything: bool, also: tuple[Path, ...] = ()) -> Path | None:
    """Move the previous attempt aside before a resubmission.

    ``everything=False`` (``--retry-failed``) moves only the result (result.json and the files
    beside it, ``harness.result.RESULT_FILES``) and run.json, so
    a timed-out cell resumes from its checkpoint; ``everything=True`` (``--force``)
    moves the whole folder content, so the cell starts from scratch. ``also``: more of the
    folder's files to move (a corrupt job.json, which the new submission must replace).
    """
    if not cell_dir.is_dir():
        return None
    names = (
        [p for p in cell_dir.iterdir() if p.name != HISTORY_DIR]
        if everything
        else [
            p
            for p in dict.fromkeys((*(cell_dir / name for name in RESULT_FILES), cell_dir / RUN_FILE, *also))
            if os.path.lexists(p)
        ]
    )
    if not names:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    target = cell_dir / HISTORY_DIR / stamp
    target.mkdir(parents=True, exist_ok=True)
    for path in names:
        shutil.move(str(path), str(target / path.name))
    return target


__all__ = [
    "JOB_FILE",
    "LEDGER_FILE",
    "RUN_FILE",
    "JobRecord",
    "RunRecord",
    "append_ledger",
    "archive_previous",
    "now_iso",
    "read_job",
    "read_run",
    "update_run",
    "write_job",
]
