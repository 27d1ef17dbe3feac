"""The four matrix commands, as plain functions the CLI calls and prints.

    plan(path)      dry run: the cell table (parameter counts, status) and each job's script
    submit(path)    submit pending cells as job arrays and return at once
    status(path)    cell states from result files + one sacct call
    wait(path)      poll status until no cell is queued or running (tests, local runs)

``collect`` lives in ``harness.tracking.collect``. Every function validates the
whole matrix file first and raises ``harness.config.ConfigError`` (one line) if it
is invalid, before anything is submitted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.dispatch.cell_state import ACTIVE, SUCCESSFUL, CellState
from harness.dispatch.executor import group_cells
from harness.dispatch.executors import check_executor, get_executor, resolve_cluster
from harness.dispatch.ledger import JobRecord
from harness.dispatch.render import human_count, table
from harness.dispatch.sacct import Runner
from harness.dispatch.stages import describe
from harness.dispatch.status import StatusReport, cell_states
from harness.dispatch.submit import NOT_SELECTED, SubmitReport, select_cells, submit_matrix
from harness.matrix import Limits, Matrix, ParamCounter, load_matrix, parse_filter
from harness.matrix.checks import check_cells
from harness.matrix.stale import stale_reasons
from harness.matrix.sweep import describe_point
from harness.names import FINAL_STAGE, SELECT_STAGE, VARIANT_TAG
from harness.result import FINAL_STATUSES, PAUSED, JobOutcome, ResultFile


@dataclass
class JobScript:
    group: int
    description: str
    executor: str  # the executor's name
    text: str


@dataclass
class PlanReport:
    matrix: Matrix
    executor: str  # the executor's name
    rows: list[dict[str, Any]]
    scripts: list[JobScript] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    # cells ``harness matrix`` would submit now (no --retry-failed/--force), and why the
    # others that are not excluded would not be (reason -> number of cells)
    to_run: int = 0
    held: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> list[dict[str, Any]]:
        return self.rows


def plan(
    path: Path | str,
    *,
    output_dir: Path | str | None = None,
    only: str | None = None,
    executor: str | None = None,
    params: bool = True,
    with_status: bool = True,
    runner: Runner | None = None,
    limits: Limits | None = None,
) -> PlanReport:
    """Dry run: validate, expand, check every cell (as ``submit`` does), count parameters,
    look up status; submit nothing. ``params=False`` skips the counts and the checks that need
    them (a quick look at the expansion only). Raises ConfigError for a refused cell."""
    matrix = load_matrix(path, output_dir=output_dir, limits=limits)
    selection = parse_filter(only)
    cluster, notice = resolve_cluster(matrix, executor)
    cells = [c for c in matrix.cells if selection.matches(c)]
    counter = ParamCounter()
    if params:
        check_cells(matrix, cells, counter)
        check_executor(cluster, matrix, cells)
    report_status = cell_states(matrix, cells, runner=runner) if with_status else None
    status_of = {s.cell.cell_id: s for s in report_status.states} if report_status else {}
    groups = group_cells([c for c in cells if c.excluded is None])
    group_of = {c.cell_id: g.index for g in groups for c in g.cells}
    # an old run beside a cell that has not succeeded yet: once the new one has, it is history
    stale = {
        cell_id: reason
        for cell_id, reason in stale_reasons(cells).items()
        if cell_id not in status_of or status_of[cell_id].status not in SUCCESSFUL
    }
    rows = []
    for cell in cells:
        count = counter(cell.config) if params and cell.excluded is None else None
        state = status_of.get(cell.cell_id)
        status = state.status if state else ("excluded" if cell.excluded else "pending")
        if selection.statuses and status not in selection.statuses:
            continue
        trainable = count.trainable if count else None
        total = count.total if count else None
        rows.append(
            {
                "cell_id": cell.cell_id,
                "model": cell.model,
                "method": cell.method,
                "variant": cell.config.tags.get(VARIANT_TAG),  # a labelled configuration of the method
                "task": cell.task,
                "seed": cell.seed,
                "trainable_params": trainable,
                "total_params": total,
                "trainable_share": (trainable / total) if trainable is not None and total else None,
                "status": status,
                "stage": cell.stage,
                "learning_rate": cell.config.train.learning_rate,
                "method_args": cell.config.method_args,
                "group": group_of.get(cell.cell_id),
                "job_id": state.job_id if state else None,
                "excluded_reason": cell.excluded,
                "error": (count.error if count else None) or (state.error if state else None),
                "stale": stale.get(cell.cell_id),
                "folder": str(cell.folder),
            }
        )
    scripts = [JobScript(g.index, g.describe(), cluster.name, cluster.job_script(matrix, g)) for g in groups]
    notices = list(matrix.warnings) + ([notice] if notice else []) + (report_status.notices if report_status else [])
    if stale:
        notices.append(
            f"{len(stale)} cell(s) went stale: their data files changed since they ran, so they are new cells "
            "and run again (the old results stay in their folders, out of this matrix's report); see the note column"
        )
    if report_status:  # the same choice ``harness matrix`` makes, so the count is what it submits
        chosen, skipped = select_cells(report_status, retry_failed=False, force=False, only=only)
        to_run = len(chosen)
        held = {k: n for k, n in skipped.items() if k not in (NOT_SELECTED, "excluded")}
    else:
        to_run, held = sum(r["status"] != "excluded" for r in rows), {}
    return PlanReport(
        matrix=matrix, executor=cluster.name, rows=rows, scripts=scripts, notices=notices, to_run=to_run, held=held
    )


def submit(
    path: Path | str,
    *,
    retry_failed: bool = False,
    force: bool = False,
    only: str | None = None,
    output_dir: Path | str | None = None,
    executor: str | None = None,
    runner: Runner | None = None,
    continue_stages: bool = True,
    limits: Limits | None = None,
    on_submitted: Callable[[list[JobRecord]], None] | None = None,
) -> SubmitReport:
    """Submit every selected cell (default: pending ones) and return at once; a sweep's stage 2
    follows on its own (see harness.dispatch.stages) unless ``continue_stages`` is False;
    ``on_submitted`` hears of each job array as it is submitted."""
    matrix = load_matrix(path, output_dir=output_dir, limits=limits)
    return submit_matrix(
        matrix,
        retry_failed=retry_failed,
        force=force,
        only=only,
        executor=executor,
        runner=runner,
        continue_stages=continue_stages,
        on_submitted=on_submitted,
    )


def status(
    path: Path | str,
    *,
    output_dir: Path | str | None = None,
    only: str | None = None,
    runner: Runner | None = None,
    limits: Limits | None = None,
) -> StatusReport:
    """Cell states from result files plus one batched sacct call."""
    matrix = load_matrix(path, output_dir=output_dir, limits=limits)
    selection = parse_filter(only)
    report = cell_states(matrix, [c for c in matrix.cells if selection.matches(c)], runner=runner)
    if selection.statuses:
        report.states = [s for s in report.states if s.status in selection.statuses]
    return report


def wait(
    path: Path | str,
    *,
    output_dir: Path | str | None = None,
    only: str | None = None,
    timeout_s: float | None = None,
    poll_s: float = 2.0,
    runner: Runner | None = None,
    continue_stages: bool = False,
    executor: str | None = None,
    limits: Limits | None = None,
    on_poll: Callable[[StatusReport], None] | None = None,
    submitted: list[JobRecord] | None = None,
) -> StatusReport:
    """Poll ``status`` until no cell is queued or running; raises TimeoutError past ``timeout_s``.
    ``continue_stages``: submit a sweep's stage 2 from here when its stage 1 has ended (what
    ``harness matrix --wait`` does instead of scheduling a continuation). ``on_poll`` sees each
    report (the progress line); the jobs submitted here are added to ``submitted``."""
    start = time.monotonic()
    while True:
        report = status(path, output_dir=output_dir, only=only, runner=runner, limits=limits)
        if on_poll is not None:
            on_poll(report)
        pending_finals = [s for s in report.states if s.cell.stage == FINAL_STAGE and s.status == "pending"]
        pending_finals += [s for s in report.states if s.cell.continues and s.status == PAUSED]  # a halving's rung
        if report.finished and continue_stages and pending_finals:
            stage2 = submit(
                path,
                output_dir=output_dir,
                only=only,
                executor=executor,
                runner=runner,
                continue_stages=False,
                limits=limits,
            )
            if not stage2.ok:
                raise RuntimeError("; ".join(stage2.errors))
            if submitted is not None:
                submitted += stage2.submitted
            continue
        if report.finished:
            return report
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{len(report.active)} cells still queued or running after {timeout_s:.0f} s")
        time.sleep(poll_s)


def stop_jobs(
    path: Path | str,
    jobs: list[JobRecord],
    *,
    output_dir: Path | str | None = None,
    only: str | None = None,
    timeout_s: float = 60.0,
    poll_s: float = 0.5,
    limits: Limits | None = None,
) -> list[CellState]:
    """Cancel those of ``jobs`` whose executor runs them on this machine and whose cells are
    still queued or running (what an interrupted ``harness matrix --wait`` does), then wait up to
    ``timeout_s`` for their cells to end; returns those cells' states."""
    ids = {(job.executor, job.job_id) for job in jobs}
    report = status(path, output_dir=output_dir, only=only, limits=limits)
    # every cell of a job this command started on this machine; those that have not ended
    # (running, or the worker still starting: it reads as pending or queued) are stopped. A cell
    # whose worker already ended it (the terminal's Ctrl-C reaches the worker too) is counted as is
    mine = [
        s
        for s in report.states
        if s.job is not None and (s.job.executor, s.job.job_id) in ids and get_executor(s.job.executor).stops_with_wait
    ]
    by_executor: dict[str, list[JobRecord]] = {}
    for state in mine:
        assert state.job is not None
        if state.result is None or state.result.status not in FINAL_STATUSES:
            by_executor.setdefault(state.job.executor, []).append(state.job)
    for name, records in by_executor.items():
        get_executor(name).cancel(records)
    cells = {s.cell.cell_id for s in mine}
    deadline = time.monotonic() + timeout_s
    while True:
        report = status(path, output_dir=output_dir, only=only, limits=limits)
        states = [s for s in report.states if s.cell.cell_id in cells]
        if not any(s.status in ACTIVE for s in states) or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    # a worker stopped before it ran the cell (still importing: the signal's default action ended
    # it) left no word of its own; this command stopped it, so the cell was cancelled, not failed
    ended = [
        s for s in states if s.status not in ACTIVE and (s.result is None or s.result.status not in FINAL_STATUSES)
    ]
    for state in ended:
        outcome = JobOutcome(
            cell_id=state.cell.cell_id,
            status="cancelled",
            error="cancelled before the cell started; no checkpoint taken",
            config=state.cell.config.public_dump(),
        )
        ResultFile(state.cell.folder).end_job(outcome)
    if not ended:
        return states
    report = status(path, output_dir=output_dir, only=only, limits=limits)
    return [s for s in report.states if s.cell.cell_id in cells]


# --------------------------------------------------------------------------- text


def render_plan(report: PlanReport, *, scripts: bool = True) -> str:
    m = report.matrix
    excluded = sum(r["status"] == "excluded" for r in report.rows)
    held = "".join(f", {n} {reason}" for reason, n in report.held.items())
    lines = [
        f"matrix {m.name}: {len(report.rows)} cells ({report.to_run} to run, {excluded} excluded{held}), "
        f"executor {report.executor}, output {m.output_dir}, tracking {m.tracking_uri} (experiment {m.experiment})"
    ]
    lines += [f"note: {n}" for n in report.notices]
    headers = [
        "cell",
        "task",
        "model",
        "method",
        "seed",
        *(["stage"] if m.selections else []),
        "lr",
        "trainable",
        "total",
        "share",
        "status",
        "note",
    ]
    rows = []
    for r in report.rows:
        share = f"{100 * r['trainable_share']:.3f}%" if r["trainable_share"] is not None else ""
        note = f"excluded: {r['excluded_reason']}" if r["excluded_reason"] else (r["error"] or "")
        note = note or (f"stale: {r['stale']}" if r["stale"] else "")
        stage = [STAGE_LABELS.get(r["stage"], "")] if m.selections else []
        rows.append(
            [
                r["cell_id"][:8],
                r["task"],
                r["model"],
                r["variant"] or r["method"],
                r["seed"],
                *stage,
                r["learning_rate"] if r["learning_rate"] is not None else "default",
                human_count(r["trainable_params"]),
                human_count(r["total_params"]),
                share,
                r["status"],
                note,
            ]
        )
    lines += ["", table(headers, rows)]
    lines += render_selections(m)
    if scripts:
        for script in report.scripts:
            lines += ["", f"# --- group {script.group}: {script.description} ---", script.text.rstrip()]
    return "\n".join(lines)


def render_status(report: StatusReport) -> str:
    counts = report.counts()
    total = len(report.states)
    lines = [f"matrix {report.matrix.name}: {total} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    lines += [f"note: {n}" for n in report.notices]
    swept = bool(report.matrix.selections)
    headers = [
        "cell",
        "task",
        "model",
        "method",
        "seed",
        *(["stage"] if swept else []),
        "status",
        "job",
        "attempts",
        "note",
    ]
    rows = []
    problems = []
    for s in report.states:
        note = ""
        if s.status == "excluded":
            note = f"excluded: {s.cell.excluded}"
        elif s.error:
            note = s.error
            problems += [f"  {s.cell.cell_id[:8]} {s.cell.label()} [{s.status}]: {s.error}"] + (
                [f"      log: {s.log}"] if s.log else []
            )
        elif s.cell.stage == SELECT_STAGE:
            note = describe_point(s.cell.point)
        elif s.cell.stage == FINAL_STAGE:
            note = f"selected {describe_point(s.cell.point)}"
        stage = [STAGE_LABELS.get(s.cell.stage or "", "")] if swept else []
        rows.append(
            [
                s.cell.cell_id[:8],
                s.cell.task,
                s.cell.model,
                s.cell.method,
                s.cell.seed,
                *stage,
                s.status,
                s.job_id or "",
                s.run.attempts if s.run else "",
                note,
            ]
        )
    lines += ["", table(headers, rows, max_width=60)]
    lines += render_selections(report.matrix)
    if problems:
        lines += ["", "problems:"] + problems
    return "\n".join(lines)


STAGE_LABELS = {SELECT_STAGE: "1 select", FINAL_STAGE: "2 final"}


def render_selections(matrix: Matrix) -> list[str]:
    """One line per sweep: its grid's progress, or what it selected (ties, failed points)."""
    if not matrix.selections:
        return []
    lines = ["", "sweeps (stage 1 selects on its split, stage 2 runs the selected value on every seed):"]
    for selection in matrix.selections:
        lines.append(f"  {selection.describe()}")
        lines += [f"    {line}" for line in selection.rung_lines()]  # a halving's rungs so far
    lines.append(f"  {sweep_cost_estimate(matrix)}")
    scheduled = describe(matrix.output_dir) if matrix.waiting else None
    return lines + ([f"  {scheduled}"] if scheduled else [])


def sweep_cost_estimate(matrix: Matrix) -> str:
    """The sweeps' compute before anything runs, in runs-equivalent (full-budget runs of the cells
    they would be): the stage-1 grid points plus the stage-2 seeds that train (the first seed
    evaluates the stage-1 winner's run where it can be reused, harness.cell.reuse), against the
    seeds alone (the same study untuned). Each run is counted at its cell's full budget: a grid
    point costs what a stage-2 cell of the same method costs; an evaluation is not counted."""
    grid = sum(len(s.points) for s in matrix.selections)
    seeds = sum(len(s.seeds) for s in matrix.selections)
    trained = sum(s.trainings for s in matrix.selections)
    ratio = (grid + trained) / seeds if seeds else 0.0
    reused = f" ({seeds - trained} first seeds reuse the winner's run)" if trained < seeds else ""
    if any(s.rungs for s in matrix.selections):
        return _halving_estimate(matrix, grid, seeds, trained, reused)
    return (
        f"cost estimate: {grid} stage-1 runs + {trained} stage-2 runs{reused} = {grid + trained} runs-equivalent, "
        f"x{ratio:.2f} the {seeds} runs of the same sweeps untuned"
    )


def _halving_estimate(matrix: Matrix, full: int, seeds: int, trained: int, reused: str) -> str:
    """The estimate where some sweep halves its grid (select.halving): each such sweep's rungs and
    stage-1 cost, then the whole with halving and without."""
    lines = []
    for s in matrix.selections:
        if s.rungs:
            steps = " + ".join(f"{n}x{step}" for n, step in _rung_steps(len(s.points), s.rungs, s.eta))
            lines.append(
                f"halving {s.label}: rungs {'/'.join(map(str, s.rungs))} steps, eta {s.eta}: {steps} steps "
                f"= {halving_runs(len(s.points), s.rungs, s.eta):.2f} runs-equivalent for its {len(s.points)} grid "
                f"points instead of {len(s.points)}"
            )
    grid = sum(halving_runs(len(s.points), s.rungs, s.eta) if s.rungs else len(s.points) for s in matrix.selections)
    ratio, without = (grid + trained) / seeds if seeds else 0.0, (full + trained) / seeds if seeds else 0.0
    lines.append(
        f"cost estimate: {grid:.2f} stage-1 runs-equivalent with halving ({full} without) + {trained} stage-2 "
        f"runs{reused} = {grid + trained:.2f} runs-equivalent, x{ratio:.2f} the {seeds} runs of the same sweeps "
        f"untuned (x{without:.2f} without halving)"
    )
    return "\n  ".join(lines)


def _rung_steps(points: int, rungs: list[int], eta: int) -> list[tuple[int, int]]:
    """(points, steps each trains) per rung of a halving: every point the first rung's steps,
    ceil(n/eta) of them on to each next rung, from the step where they paused."""
    out, n, before = [], points, 0
    for step in rungs:
        out.append((n, step - before))
        n, before = math.ceil(n / eta), step
    return out


def halving_runs(points: int, rungs: list[int], eta: int) -> float:
    """A halving's stage-1 cost in full-budget runs: the steps its rungs train over the budget's."""
    return sum(n * steps for n, steps in _rung_steps(points, rungs, eta)) / rungs[-1]


def render_submit(report: SubmitReport) -> str:
    lines = [
        f"matrix {report.matrix.name}: submitted {len(report.submitted)} cells with the {report.executor} executor"
    ]
    lines += [f"note: {n}" for n in report.notices]
    lines += [f"  {a}" for a in report.arrays]
    lines += [f"  skipped {n}: {reason}" for reason, n in report.skipped.items()]
    lines += [f"error: {e}" for e in report.errors]
    if report.submitted and not get_executor(report.executor).in_process:
        path = report.matrix.path or "FILE"
        lines.append(f"follow with: harness status {path}")
    return "\n".join(lines)
