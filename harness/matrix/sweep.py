"""Sweeps: values for any cell key, a selection on a validation split, and the two stages.

A matrix file may add::

    sweep:
      - values: {train.learning_rate: {log: [1.0e-5, 1.0e-2], n: 7}}     # every trained cell
      - match: {method: [ia3, prefix]}                                   # a scope: it replaces
        values: {train.learning_rate: {log: [1.0e-4, 1.0e-1], n: 7}}     #   the keys it names
    select: {metric: f1_macro, split: validation, mode: max}

For each (task, model, method) that a sweep entry matches, the grid is the product of the
values of its keys (for each key, the last matching entry's values). Then:

- **stage 1** (``select``) runs every grid point on the group's first seed and scores it on
  ``select.split``: emotion's validation split, BillSum's held-out slice of train
  (:class:`harness.tasks.registry.HeldOut`), never the test split;
- **stage 2** (``final``) runs the point selected by ``select.metric`` on every seed of the
  group and scores it on the cell's own evaluation split (``data.eval_split``, test).

Stage-2 cells exist once their group's grid has finished: :func:`choose` picks the best
point that succeeded (failed points are left out and reported; a tie goes to the first
point in grid order, also reported). Sweep values are applied after every ``overrides``
entry. A method that does not train (zero-shot) is not swept: its cells run as written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.matrix.cells import describe_point
from harness.matrix.schema import SweepEntry, grid_values
from harness.result import CORRUPT, FINAL_STATUSES, PAUSED, CorruptState, Result, ResultFile

if TYPE_CHECKING:
    from harness.matrix.cells import Cell


def grid_axes(
    entries: list[SweepEntry], model: str, method: str, task: str, seed: int
) -> tuple[dict[str, list[Any]], list[int]]:
    """The values of each swept key of a cell (dotted key -> values, in first-seen order; for each
    key the last matching entry's) and the indices of the entries that contributed. Its grid has
    :func:`grid_size` points: counted before :func:`grid_of` makes them."""
    chosen: dict[str, list[Any]] = {}
    used = []
    for index, entry in enumerate(entries):
        if entry.match.matches(model, method, task, seed):
            used.append(index)
            for key, values in entry.values.items():
                chosen[key] = grid_values(values)
    return chosen, used


def grid_size(axes: dict[str, list[Any]]) -> int:
    """The number of points of a grid: the product of its keys' value counts (0: not swept)."""
    return math.prod(len(values) for values in axes.values()) if axes else 0


def grid_of(
    entries: list[SweepEntry], model: str, method: str, task: str, seed: int
) -> tuple[list[dict[str, Any]], list[int]]:
    """The grid points of a cell (dotted key -> value, keys in first-seen order) and the indices
    of the entries that contributed; no entry matches: ``([], [])``."""
    chosen, used = grid_axes(entries, model, method, task, seed)
    if not chosen:
        return [], []
    keys = list(chosen)
    return [dict(zip(keys, combination)) for combination in product(*(chosen[k] for k in keys))], used


# --------------------------------------------------------------------------- choosing


@dataclass
class Outcome:
    """One grid point as stage 1 left it: ``waiting`` (no final result yet), ``success`` with its
    metric value, or another final status (failed, diverged, oom, timeout, cancelled, or a missing
    metric): a point that did not succeed is never selected."""

    point: dict[str, Any]
    status: str
    value: float | None = None
    cell_id: str = ""


@dataclass
class Choice:
    point: dict[str, Any] | None
    value: float | None
    ties: list[dict[str, Any]] = field(default_factory=list)  # other points with the same best value
    failed: list[Outcome] = field(default_factory=list)
    reason: str = ""  # why nothing was chosen
    # the swept key whose best value is the lowest or highest of its grid: the optimum may lie
    # beyond it ("widen the grid"), e.g. {"train.learning_rate": "upper"}
    edges: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if self.point is None:
            return self.reason
        text = f"{describe_point(self.point)} ({self.value:.4g})"
        if self.ties:
            text += f"; tied with {'; '.join(map(describe_point, self.ties))}: the first in grid order wins"
        if self.failed:
            text += f"; {len(self.failed)} failed point(s) left out: " + "; ".join(
                f"{describe_point(o.point)} {o.status}" for o in self.failed
            )
        if self.edges:
            text += "; " + self.edge_note()
        return text

    def left_out(self) -> str:
        """The points left out, counted by status: "2 diverged, 1 oom"."""
        counts: dict[str, int] = {}
        for outcome in self.failed:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return ", ".join(f"{n} {status}" for status, n in counts.items())

    def edge_note(self) -> str:
        return "; ".join(f"at the {side} edge of the {key} grid (widen it)" for key, side in self.edges.items())


def choose(outcomes: list[Outcome], mode: str) -> Choice | None:
    """The selected point, once no point is waiting (None before). Failed points are left out;
    equal best values go to the first point in grid order (the lower value of a sorted grid)."""
    if any(o.status == "waiting" for o in outcomes):
        return None
    good = [o for o in outcomes if o.status == "success" and o.value is not None and math.isfinite(o.value)]
    failed = [o for o in outcomes if o not in good]
    if not good:
        nothing = Choice(None, None, failed=failed)
        nothing.reason = f"every grid point failed ({len(failed)}): {nothing.left_out()}; nothing to select"
        return nothing
    sign = 1.0 if mode == "max" else -1.0
    best = max(good, key=lambda o: sign * o.value)  # type: ignore[operator] # max keeps the first of equals
    ties = [o.point for o in good if o is not best and o.value == best.value]
    return Choice(best.point, best.value, ties=ties, failed=failed, edges=_edges(best.point, outcomes))


def _edges(point: dict[str, Any], outcomes: list[Outcome]) -> dict[str, str]:
    """The numeric keys whose selected value is the smallest or largest value swept (of 3 or more)."""
    edges = {}
    for key, value in point.items():
        values = sorted({o.point[key] for o in outcomes if isinstance(o.point.get(key), (int, float))})
        if len(values) >= 3 and isinstance(value, (int, float)) and value in (values[0], values[-1]):
            edges[key] = "lower" if value == values[0] else "upper"
    return edges


def read_outcome(folder: Path, point: dict[str, Any], metric: str, cell_id: str) -> Outcome:
    """A grid point's outcome from its cell folder's result, as ``load_result`` merges it. A
    folder whose result is corrupt (``harness.result.CorruptState``) is a failed point, "corrupt"."""
    try:
        result = ResultFile(folder).read()
    except CorruptState:
        return Outcome(point, CORRUPT, cell_id=cell_id)
    if result is None or result.status not in FINAL_STATUSES:
        return Outcome(point, "waiting", cell_id=cell_id)
    if result.status != "success":
        return Outcome(point, result.status, cell_id=cell_id)
    value = result.metrics.get(metric)
    if value is None:
        return Outcome(point, f"no {metric}", cell_id=cell_id)
    return Outcome(point, "success", float(value), cell_id=cell_id)


# --------------------------------------------------------------------------- a group's selection


@dataclass
class Selection:
    """The sweep of one (task, model, method): its stage-1 cells and, once chosen, its stage-2 cells."""

    task: str
    model: str
    method: str
    metric: str
    split: str
    mode: str
    points: list[Cell]  # stage 1, in grid order
    seeds: list[int]  # of stage 2
    # the stage-2 cells for a chosen point (built by the expansion, which knows each seed's settings)
    build: Callable[[dict[str, Any]], list[Cell]] = field(repr=False)
    outcomes: list[Outcome] = field(default_factory=list)
    choice: Choice | None = None
    finals: list[Cell] = field(default_factory=list)
    # successive halving (select.halving): the rungs' step counts, the full budget last ([]: none),
    # and each rung reached so far: its outcomes (the points that ran it, grid order)
    rungs: list[int] = field(default_factory=list)
    eta: int = 0
    rung_outcomes: list[list[Outcome]] = field(default_factory=list)
    # why stage 2's first seed trains again ("": it evaluates the stage-1 winner's weights,
    # harness.cell.reuse), known from the settings before a point is selected
    retrains: str = ""

    @property
    def trainings(self) -> int:
        """The stage-2 cells that train: every seed but the first when the winner's run is reused."""
        return len(self.seeds) - (0 if self.retrains else 1)

    def reuse_note(self) -> str:
        if self.retrains:
            return f"its first seed trains again: {self.retrains}"
        return f"its first seed evaluates the winner's run ({self.trainings} train)"

    @property
    def label(self) -> str:
        return f"{self.task}/{self.model}/{self.method}"

    @property
    def state(self) -> str:
        """waiting (grid running), selected (stage 2 expanded) or failed (nothing to select)."""
        if self.choice is None:
            return "waiting"
        return "selected" if self.choice.point is not None else "failed"

    def resolve(self, final_statuses: dict[str, str] | None = None) -> list[Cell]:
        """Read the grid's outcomes; once none is waiting, choose and build stage 2. Returns the
        stage-2 cells added by this call. ``final_statuses``: what the scheduler knows of points
        whose job ended without a result.json (an out-of-memory kill)."""
        if self.choice is not None and not self.reopens:
            return []
        final_statuses = final_statuses or {}
        if self.rungs:
            self.outcomes = self._halve(final_statuses)
        else:
            self.outcomes = []
            for cell in self.points:
                outcome = read_outcome(cell.folder, cell.point, self.metric, cell.cell_id)
                if outcome.status == "waiting" and cell.excluded is not None:
                    outcome.status = "excluded"
                elif outcome.status == "waiting" and cell.cell_id in final_statuses:
                    outcome.status = final_statuses[cell.cell_id]
                self.outcomes.append(outcome)
        self.choice = choose(self.outcomes, self.mode)
        if self.choice is None or self.choice.point is None:
            return []
        self.finals = self.build(self.choice.point)
        return self.finals

    @property
    def reopens(self) -> bool:
        """A halving that selected nothing (every point of a rung failed) is read again: a retried
        point continues it."""
        return bool(self.rungs) and self.choice is not None and self.choice.point is None

    def _halve(self, final_statuses: dict[str, str]) -> list[Outcome]:
        """Successive halving: each rung's outcomes, from the rungs in the points' results; once
        every point of a rung has ended, the best ceil(n/eta) (``choose``'s order: mode, then grid
        order; failed and metric-less points left out) continue to the next. Returns the last rung
        reached's outcomes: the final rung's, once reached, are what ``choose`` selects among. Each
        point's ``stop_at_step``/``continues`` say where its next run stops and whether, paused, it
        is due to continue (a point pruned at a rung stays paused there)."""
        results: dict[str, Result | str | None] = {}
        for cell in self.points:
            cell.stop_at_step, cell.continues = None, False
            try:
                results[cell.cell_id] = ResultFile(cell.folder).read()
            except CorruptState:
                results[cell.cell_id] = CORRUPT
        self.rung_outcomes = []
        running = list(self.points)
        for index, step in enumerate(self.rungs):
            last = index == len(self.rungs) - 1
            outcomes = [
                _rung_outcome(cell, results[cell.cell_id], step, last, self.metric, final_statuses) for cell in running
            ]
            self.rung_outcomes.append(outcomes)
            waiting = [cell for cell, o in zip(running, outcomes) if o.status == "waiting"]
            for cell, outcome in zip(running, outcomes):  # a failed one too: a retry stops at its rung
                if outcome.status != "success":
                    cell.stop_at_step = None if last else step
            for cell in waiting:
                cell.continues = index > 0
            if waiting or last:
                return outcomes
            sign = 1.0 if self.mode == "max" else -1.0
            good = [
                (i, o)
                for i, o in enumerate(outcomes)
                if o.status == "success" and o.value is not None and math.isfinite(o.value)
            ]
            good.sort(key=lambda pair: -sign * pair[1].value)  # type: ignore[operator] # stable: grid order breaks ties
            keep = sorted(i for i, _ in good[: math.ceil(len(running) / self.eta)])
            running = [running[i] for i in keep]
        return []

    def rung_lines(self) -> list[str]:
        """Each rung reached: its step, its points' count, and how many continued or were left out."""
        lines = []
        for index, outcomes in enumerate(self.rung_outcomes):
            step = self.rungs[index]
            done = sum(o.status != "waiting" for o in outcomes)
            failed = [o for o in outcomes if o.status not in ("success", "waiting")]
            text = f"rung {index} (step {step}): {done}/{len(outcomes)} ended"
            if index + 1 < len(self.rung_outcomes):
                text += f", {len(self.rung_outcomes[index + 1])} continued"
            if failed:
                text += "; left out: " + "; ".join(f"{describe_point(o.point)} {o.status}" for o in failed)
            lines.append(text)
        return lines

    def progress(self) -> str:
        done = sum(o.status != "waiting" for o in self.outcomes)
        if self.rungs:
            rung = max(len(self.rung_outcomes) - 1, 0)
            return (
                f"rung {rung} of {len(self.rungs)} (step {self.rungs[rung]}): {done}/{len(self.outcomes)} points ended"
            )
        return f"{done}/{len(self.points)} grid points finished"

    def describe(self) -> str:
        head = f"{self.label}: select {self.metric} ({self.mode}) on {self.split}"
        if self.choice is None:
            return f"{head}: stage 1 {self.progress()}; stage 2 ({len(self.seeds)} seeds; {self.reuse_note()}) waits for it"
        if self.choice.point is None:
            return f"{head}: {self.choice.reason}; stage 2 not run"
        return f"{head}: selected {self.choice.describe()}; stage 2: {len(self.finals)} cells ({self.reuse_note()})"


def _rung_outcome(
    cell: Cell, result: Result | str | None, step: int, last: bool, metric: str, final_statuses: dict[str, str]
) -> Outcome:
    """A point at one rung of a halving: its metric there (a rung below the full budget: the
    rung's record in ``result.rungs``; the last: the finished cell's metrics), ``waiting`` until it
    has reached it (paused at an earlier rung: due to continue), or how it ended short of it."""
    outcome = Outcome(cell.point, "waiting", cell_id=cell.cell_id)
    if cell.excluded is not None:
        outcome.status = "excluded"
    elif isinstance(result, str):
        outcome.status = result
    elif result is None or result.status not in FINAL_STATUSES:
        outcome.status = final_statuses.get(cell.cell_id, "waiting")
    elif result.status == PAUSED and final_statuses.get(cell.cell_id, PAUSED) not in (PAUSED, "success"):
        outcome.status = final_statuses[cell.cell_id]  # its continuation's job ended without a result
    else:
        metrics = None
        if last and result.status == "success":
            metrics = result.metrics
        elif not last:
            metrics = next((r.metrics for r in result.rungs if r.step == step), None)
        if metrics is not None:
            value = metrics.get(metric)
            outcome.status, outcome.value = ("success", float(value)) if value is not None else (f"no {metric}", None)
        elif result.status == PAUSED and all(r.step < step for r in result.rungs):
            pass  # paused below this rung: waiting to continue to it
        elif result.status in (PAUSED, "success"):
            outcome.status = f"no rung at step {step}"
        else:
            outcome.status = result.status
    return outcome
