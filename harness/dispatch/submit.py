"""Submit a matrix: every selected cell as part of one submitit job array per resource group.

Returns as soon as the scheduler has the jobs (an in-process executor, by design, runs
them here and now). What was submitted is recorded next to each cell (job.json)
and in ``<output_dir>/jobs.jsonl``; a cell whose job is queued or running is never
submitted again, whatever the flags.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.dispatch import stages
from harness.dispatch.cell_state import ACTIVE, CORRUPT, RETRYABLE, CellState
from harness.dispatch.executor import Executor, ResourceGroup, group_cells
from harness.dispatch.executors import check_executor, resolve_cluster
from harness.dispatch.job import CellJob
from harness.dispatch.ledger import JobRecord, append_ledger, archive_previous, now_iso, read_run, update_run, write_job
from harness.dispatch.status import StatusReport, cell_states
from harness.errors import ConfigError
from harness.matrix import Cell, Matrix, parse_filter
from harness.matrix.checks import check_cells
from harness.names import CELL_CONFIG
from harness.result import FINAL_STATUSES, PAUSED, RESULT_FILE, CorruptState, move_aside

log = logging.getLogger(__name__)


@dataclass
class SubmitReport:
    matrix: Matrix
    executor: str  # the executor's name
    submitted: list[JobRecord] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> number of cells
    errors: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    arrays: list[str] = field(default_factory=list)  # one line per job array

    @property
    def ok(self) -> bool:
        return not self.errors


NOT_SELECTED = "not selected by --only"


def select_cells(
    report: StatusReport, *, retry_failed: bool, force: bool, only: str | None
) -> tuple[list[Cell], dict[str, int]]:
    """The cells to submit now, and why the others are not."""
    selection = parse_filter(only)
    chosen: list[Cell] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for state in report.states:
        if not selection.matches(state.cell) or (selection.statuses and state.status not in selection.statuses):
            skip(NOT_SELECTED)
        elif state.status == "excluded":
            skip("excluded")
        elif state.status in ACTIVE:
            skip(f"already {state.status}")
        elif state.status == "pending":
            chosen.append(state.cell)
        elif state.status == "success":
            chosen.append(state.cell) if force else skip("already succeeded (--force reruns)")
        elif state.status == PAUSED and state.cell.continues:  # its sweep's next rung
            chosen.append(state.cell)
        elif state.status == PAUSED:  # stopped at a rung as asked: its sweep continues it
            chosen.append(state.cell) if force else skip("paused at a rung (--force runs it to the end)")
        elif state.status in RETRYABLE:
            chosen.append(state.cell) if (retry_failed or force) else skip(f"{state.status} (--retry-failed resubmits)")
        elif state.status in FINAL_STATUSES:  # diverged: the same settings would diverge again
            chosen.append(state.cell) if force else skip(f"{state.status} (--force reruns)")
        else:
            skip(state.status)
    return chosen, skipped


def submit_matrix(
    matrix: Matrix,
    *,
    retry_failed: bool = False,
    force: bool = False,
    only: str | None = None,
    executor: str | None = None,
    runner: Any = None,
    continue_stages: bool = True,
    on_submitted: Callable[[list[JobRecord]], None] | None = None,
) -> SubmitReport:
    """Submit the selected cells. A sweep's stage 2 follows on its own (``harness.dispatch.stages``):
    an in-process executor runs it here, the others schedule a re-invocation for when stage 1 ends,
    unless ``continue_stages`` is False (``--wait`` re-invokes from the waiting process).
    ``on_submitted`` hears of each job array as soon as it is submitted, before this returns: an
    interrupted ``matrix --wait`` stops what it had started so far."""
    cluster, notice = resolve_cluster(matrix, executor)
    submit = functools.partial(_submit, matrix, cluster, only=only, runner=runner, on_submitted=on_submitted)
    report = submit(retry_failed=retry_failed, force=force)
    if notice:
        report.notices.append(notice)
    while cluster.in_process and report.ok:  # stage 2 (or a halving's next rung) of what just ran
        added = matrix.resolve_selections()
        if not (added or matrix.continuing):
            break
        again = submit(retry_failed=False, force=False)
        report.submitted += again.submitted
        report.arrays += again.arrays
        report.errors += again.errors
        if not again.submitted:
            break
    points = {c.cell_id for s in matrix.waiting for c in s.points}
    stage1 = sorted({r.array_job_id for r in report.submitted if r.cell_id in points})
    if stage1 and continue_stages and not cluster.in_process and report.ok:
        report.notices.append(stages.schedule(matrix, cluster, only, stage1))
    elif matrix.waiting and not cluster.in_process:
        report.notices.append(f"{len(matrix.waiting)} sweep(s) wait for stage 1 to end before stage 2 is submitted")
    return report


def _submit(
    matrix: Matrix,
    cluster: Executor,
    *,
    retry_failed: bool,
    force: bool,
    only: str | None,
    runner: Any,
    on_submitted: Callable[[list[JobRecord]], None] | None,
) -> SubmitReport:
    states = cell_states(matrix, runner=runner)  # one sacct call
    chosen, skipped = select_cells(states, retry_failed=retry_failed, force=force, only=only)
    report = SubmitReport(
        matrix=matrix, executor=cluster.name, skipped=skipped, notices=[*matrix.warnings, *states.notices]
    )
    if not chosen:
        return report
    check_cells(matrix, chosen)  # a refused cell is a ConfigError here: nothing submitted, no folder written
    check_executor(cluster, matrix, chosen)
    for folder in (matrix.output_dir, matrix.submitit_folder):
        _check_writable(folder)
    with stages.submit_lock(matrix.output_dir):
        return _submit_chosen(
            matrix,
            cluster,
            report,
            chosen,
            retry_failed=retry_failed,
            force=force,
            only=only,
            runner=runner,
            on_submitted=on_submitted,
        )


def _submit_chosen(
    matrix: Matrix,
    cluster: Executor,
    report: SubmitReport,
    chosen: list[Cell],
    *,
    retry_failed: bool,
    force: bool,
    only: str | None,
    runner: Any,
    on_submitted: Callable[[list[JobRecord]], None] | None,
) -> SubmitReport:
    # under the submission lock: a concurrent ``harness matrix`` (a stage-2 continuation, a user)
    # may have submitted some of these cells since they were chosen
    fresh = cell_states(matrix, chosen, runner=runner)
    still, _ = select_cells(fresh, retry_failed=retry_failed, force=force, only=only)
    if len(still) < len(chosen):
        report.skipped["submitted meanwhile by another submission"] = len(chosen) - len(still)
    chosen = still
    by_id: dict[str, CellState] = {s.cell.cell_id: s for s in fresh.states}
    for cell in chosen:
        _prepare_folder(cell, by_id[cell.cell_id], force=force)

    # one job array per resource group and rung: a halving's points stop at their rung (None: none)
    stops = sorted({c.stop_at_step for c in chosen}, key=lambda stop: (stop is None, stop or 0))
    groups = [(group, stop) for stop in stops for group in group_cells([c for c in chosen if c.stop_at_step == stop])]
    for group, stop in groups:
        try:
            records, jobs = _submit_group(
                cluster, matrix, group, n_local=len(chosen), previous=by_id, stop_at_step=stop
            )
        except Exception as error:  # noqa: BLE001 - one group's refusal (bad partition) must not hide the others
            message = str(error).strip().splitlines()
            report.errors.append(
                f"group {group.index} ({group.describe()}): submission failed: {message[-1] if message else type(error).__name__}"
            )
            continue
        if on_submitted is not None:  # first: a signal from here on finds these jobs known
            on_submitted(records)
        report.submitted += records
        report.arrays.append(f"group {group.index} ({group.describe()}): {cluster.describe_jobs(records)}")
        append_ledger(matrix.output_dir, records)
        cluster.run_submitted(group, jobs)
    return report


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check."):
            pass
    except OSError as error:
        raise ConfigError(f"output folder {folder}: cannot write there ({error.strerror or error})") from None


def _prepare_folder(cell: Cell, state: CellState, *, force: bool) -> None:
    folder = cell.folder
    if state.corrupt == folder:  # the folder is not one (a dangling symlink): out of the way
        log.warning("%s; moved aside to %s", state.error, move_aside(folder))
    if state.status == PAUSED and not force:
        # a rung's continuation reads the rungs in result.json, which stays; run.json reopened says
        # that the job is this cell's state now (``read_cell``), not the rung it paused at
        update_run(folder, finished_at=None)
    elif state.status in FINAL_STATUSES or state.status in ("unknown", CORRUPT) or state.job is not None:
        # keep checkpoints on a retry (a timed-out cell resumes); start afresh on --force. A
        # corrupt file goes to history/ with the result (a job.json too: the submission replaces it)
        afresh = force and state.status == "success"
        try:
            previous = read_run(folder)
        except CorruptState:  # no count to carry on: the retry starts it again
            previous = None
        corrupt = (state.corrupt,) if state.corrupt is not None and state.corrupt.parent == folder else ()
        archived = archive_previous(folder, everything=afresh, also=corrupt)
        if previous is not None and not afresh:  # a retry keeps counting attempts (time-outs restart)
            update_run(folder, attempts=previous.attempts)
        kept = archived / RESULT_FILE if archived is not None else None
        if not afresh and kept is not None and kept.is_file() and state.result is not None and state.result.rungs:
            # a halving's crashed continuation: its retry resumes from the checkpoint and carries the
            # rungs on (the result stays in history/ too); run.json reopened: the job is its state
            shutil.copy2(kept, folder / RESULT_FILE)
            update_run(folder, finished_at=None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CELL_CONFIG).write_text(yaml.safe_dump(cell.config.public_dump(), sort_keys=False))


def _submit_group(
    cluster: Executor,
    matrix: Matrix,
    group: ResourceGroup,
    *,
    n_local: int,
    previous: dict[str, CellState],
    stop_at_step: int | None = None,
) -> tuple[list[JobRecord], list[Any]]:
    spec = matrix.spec.executor
    r = group.resources
    fn = CellJob(
        time_limit_min=r.time_min,
        signal_delay_s=r.signal_delay_s,
        max_requeues=spec.max_requeues,
        max_preemptions=spec.max_preemptions,
        local_slots=cluster.slots_folder(matrix),
        parallelism=spec.array_parallelism,
        cpus=r.cpus,
        stop_at_step=stop_at_step,
    )
    configs = [cell.config.model_dump(mode="json") for cell in group.cells]
    jobs = cluster.make(matrix, group, n_local=n_local).map_array(fn, configs)
    submitted_at = now_iso()
    records = []
    for cell, job in zip(group.cells, jobs):
        before = previous[cell.cell_id].job
        paths = job.paths
        record = JobRecord(
            cell_id=cell.cell_id,
            job_id=str(job.job_id),
            executor=cluster.name,
            submitit_folder=str(matrix.submitit_folder),
            stdout=str(paths.stdout),
            stderr=str(paths.stderr),
            submitted_at=submitted_at,
            submissions=(before.submissions + 1) if before else 1,
            matrix=matrix.name,
            group=group.index,
            folder=str(cell.folder),
        )
        write_job(cell.folder, record)
        records.append(record)
    return records, jobs
