"""Job states from SLURM with ONE batched ``sacct`` call for the whole matrix.

``sacct -j 123,456 -X -P -n -o JobID,State,ExitCode,Elapsed,NodeList`` lists every
task of every array (``123_4``); array tasks that have not started yet appear
collapsed (``123_[5-499%16]``) and are expanded here. When sacct is unusable (no
accounting storage) one ``squeue`` call still tells queued from running.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from harness.dispatch.cell_state import CellStatus

SACCT_FIELDS = ("JobID", "State", "ExitCode", "Elapsed", "NodeList")

# SLURM job state -> cell status (for cells without a final result.json)
QUEUED_STATES = frozenset(
    {
        "PENDING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESV_DEL_HOLD",
        "SUSPENDED",
        "CONFIGURING",
        "RESIZING",
        "SPECIAL_EXIT",
    }
)
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
FINAL_STATES: dict[str, CellStatus] = {
    "CANCELLED": "cancelled",
    "PREEMPTED": "cancelled",
    "REVOKED": "cancelled",
    "OUT_OF_MEMORY": "oom",
    "TIMEOUT": "timeout",
    "DEADLINE": "timeout",
    "FAILED": "failed",
    "NODE_FAIL": "failed",
    "BOOT_FAIL": "failed",
    # finished without writing result.json: the cell runner never got to write it
    "COMPLETED": "failed",
}

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # the first word: "CANCELLED by 1000" -> CANCELLED
    exit_code: str = ""
    elapsed: str = ""
    node: str = ""
    raw_state: str = ""

    @property
    def cell_status(self) -> CellStatus:
        if self.state in QUEUED_STATES:
            return "queued"
        if self.state in RUNNING_STATES:
            return "running"
        return FINAL_STATES.get(self.state, "unknown")


@dataclass
class SchedulerReport:
    states: dict[str, JobState] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    error: str | None = None


def run_command(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def query(job_ids: Iterable[str], *, runner: Runner | None = None) -> SchedulerReport:
    """States of the given jobs (``123`` or ``123_4``), keyed by the id as given and by task."""
    runner = runner or run_command
    arrays = sorted({str(j).split("_", 1)[0] for j in job_ids if j}, key=_numeric)
    report = SchedulerReport()
    if not arrays:
        return report
    command = ["sacct", "-j", ",".join(arrays), "-X", "-P", "-n", "-o", ",".join(SACCT_FIELDS)]
    if shutil.which("sacct") is None and runner is run_command:
        report.error = "sacct not found on the PATH"
    else:
        report.calls.append(command)
        try:
            done = runner(command)
        except (OSError, ValueError, subprocess.SubprocessError) as error:  # ValueError: a NUL in a job id
            report.error = f"sacct failed: {error}"
        else:
            if done.returncode == 0:
                report.states = parse_sacct(done.stdout)
                return report
            report.error = f"sacct failed: {_first_line(done.stderr) or f'exit {done.returncode}'}"
    # Fallback: squeue knows only live jobs, but that is what keeps us from resubmitting them.
    command = ["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(arrays)]
    if shutil.which("squeue") is None and runner is run_command:
        return report
    report.calls.append(command)
    try:
        done = runner(command)
    except (OSError, ValueError, subprocess.SubprocessError):
        return report
    if done.returncode == 0:
        for line in done.stdout.splitlines():
            job_id, _, state = line.strip().partition("|")
            if job_id:
                report.states[job_id] = JobState(
                    job_id=job_id, state=state.split()[0] if state else "UNKNOWN", raw_state=state
                )
    return report


def parse_sacct(text: str) -> dict[str, JobState]:
    states: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0] or "." in parts[0]:
            continue  # blank line or a job step (123.batch)
        values = dict(zip(SACCT_FIELDS, parts))
        raw = values.get("State", "")
        state = raw.split()[0].rstrip("+") if raw else "UNKNOWN"
        for job_id in expand_job_id(values["JobID"]):
            states[job_id] = JobState(
                job_id=job_id,
                state=state,
                exit_code=values.get("ExitCode", ""),
                elapsed=values.get("Elapsed", ""),
                node=values.get("NodeList", ""),
                raw_state=raw,
            )
    return states


_ARRAY = re.compile(r"^(?P<main>\d+)_\[(?P<ranges>[^\]]+)\]$")


def expand_job_id(job_id: str) -> list[str]:
    """``123_[0-2,5%4]`` -> ``123_0 123_1 123_2 123_5``; ``123_4`` and ``123`` unchanged."""
    match = _ARRAY.match(job_id)
    if not match:
        return [job_id]
    main = match.group("main")
    out: list[str] = []
    for part in match.group("ranges").split("%", 1)[0].split(","):
        low, _, high = part.partition("-")
        if not low.isdigit():
            continue
        stop = int(high) if high.isdigit() else int(low)
        out += [f"{main}_{i}" for i in range(int(low), stop + 1)]
    return out


def _numeric(job_id: str) -> tuple[int, str]:
    # isascii: a job id read back from job.json may be "²", a digit int() refuses
    return (int(job_id), "") if job_id.isascii() and job_id.isdigit() else (0, job_id)


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""
