"""What a sweep selected, and how sensitive each method is to the swept value.

Stage-1 rows (``stage == select``: grid points scored on the selection split) never enter the
quality and efficiency tables, which are built from the selected configs (stage 2) and the
cells that were not swept. Here they make:

- the selection table: per (task, model, method) the swept keys, the grid, the selected
  point and its validation figure, ties and failed points; the choice is made by the same
  function the matrix uses (:func:`harness.matrix.sweep.choose`), so the two always agree;
- a sensitivity plot per (task, model): the selection metric against the swept value, one
  line per method, the selected point ringed (sweeps over one key; a grid over several keys
  is in the table only).

A halving sweep (select.halving; its points' result.json ``rungs``) adds to the table each rung's
step and its points' metric there, and where each point stopped; its plot draws each earlier rung
as a faint line under the final rung's. The choice is made among the points that reached the last
rung, as the matrix makes it; the points pruned on the way are not "left out".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.matrix.cells import describe_point
from harness.matrix.sweep import Choice, Outcome, _edges, choose
from harness.names import SELECT_STAGE
from harness.report.load import CellRow
from harness.report.pareto import Plot, _slug, save_plot
from harness.report.tables import DASH, Table
from harness.result import PAUSED
from harness.tasks.kinds import LABELS

SELECTION_NOTE = (
    "Stage 1 of each sweep: every grid point trained on the first seed and scored on the selection split "
    "(never the test split). The selected point is the best that finished (ties: the first in grid "
    "order); points that did not (failed, diverged, out of memory, ...) are left out and counted under Status. "
    "The tables above use only the selected configs, run on every seed and scored on test."
)


def split_stages(rows: list[CellRow]) -> tuple[list[CellRow], list[CellRow]]:
    """(rows for the tables: stage 2 and unswept cells, stage-1 grid rows)."""
    return [r for r in rows if r.stage != SELECT_STAGE], [r for r in rows if r.stage == SELECT_STAGE]


def _rule(rows: list[CellRow]) -> tuple[str, str, str]:
    """(metric, split, mode) from the rows' select tag."""
    metric, split, mode = (rows[0].select or "//max").split("/")
    return metric, split, mode


def _outcome(row: CellRow, metric: str) -> Outcome:
    if row.finished:
        value = row.metrics.get(metric)
        return Outcome(row.point, "success" if value is not None else f"no {metric}", value, row.cell_id)
    return Outcome(row.point, "waiting" if row.status in ("missing", "running") else row.status, None, row.cell_id)


def _rung_steps(rows: list[CellRow]) -> list[int]:
    """A halving sweep's rungs below the full budget, as its points recorded them ([]: no halving,
    or no point has reached its first rung yet)."""
    return sorted({step for r in rows for step, _ in r.rungs})


def _choice(rows: list[CellRow], metric: str, mode: str) -> Choice | None:
    """``choose`` over the grid; with halving, over the points that reached the last rung recorded
    (a survivor paused there is waiting to continue) and those that ended short of a rung (failed:
    left out). The grid edges are the whole grid's, not the last rung's few points."""
    steps = _rung_steps(rows)
    if not steps:
        return choose([_outcome(r, metric) for r in rows], mode)
    # the last rung recorded has been decided once a point trained on past it: the others paused
    # there were pruned (7 points, eta 3: 2 of the 3 at the second rung), not waiting
    decided = any(r.status != PAUSED and len(r.rungs) == len(steps) for r in rows)
    outcomes = []
    for row in rows:
        if row.status == PAUSED:
            if len(row.rungs) == len(steps) and not decided:
                outcomes.append(Outcome(row.point, "waiting", None, row.cell_id))
            continue  # pruned at this rung or an earlier one
        outcomes.append(_outcome(row, metric))
    choice = choose(outcomes, mode)
    if choice is not None and choice.point is not None:
        choice.edges = _edges(choice.point, [_outcome(r, metric) for r in rows])
    return choice


def _label(point: dict, keys: list[str]) -> str:
    return describe_point(point).replace(f"{keys[0]}=", "") if len(keys) == 1 else describe_point(point)


def _rung_cells(rows: list[CellRow], keys: list[str], metric: str) -> tuple[list[int], list[str], str]:
    """A halving sweep's rung steps (the full budget last), per rung the metric of each point that
    ran it ("value: figure x100; ..."), and where each point stopped."""
    steps = _rung_steps(rows)
    budget = next((r.max_steps for r in rows if r.max_steps), None)
    all_steps = steps + ([budget] if budget else [])
    columns = []
    for step in steps:
        figures = [(r.point, dict(r.rungs).get(step, {}).get(metric)) for r in rows if step in dict(r.rungs)]
        columns.append("; ".join(f"{_label(p, keys)} {_percent(v)}" for p, v in figures))
    columns.append("; ".join(f"{_label(r.point, keys)} {_percent(r.metrics.get(metric))}" for r in rows if r.finished))
    stopped = "; ".join(
        f"{_label(r.point, keys)} "
        + (
            f"step {budget if budget else 'full'}"
            if r.finished
            else f"step {r.rungs[-1][0]}"
            if r.status == PAUSED and r.rungs
            else r.status
        )
        for r in rows
    )
    return all_steps, columns, stopped


def _percent(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.2f}"


def _groups(grid_rows: list[CellRow]) -> dict[tuple[str, str, str], list[CellRow]]:
    groups: dict[tuple[str, str, str], list[CellRow]] = {}
    for row in grid_rows:
        groups.setdefault((row.task, row.model, row.method), []).append(row)
    return groups


def selection_table(grid_rows: list[CellRow]) -> Table | None:
    if not grid_rows:
        return None
    data, display = [], []
    halving: dict[int, tuple[list[int], list[str], str]] = {}  # row index: its rung cells
    for (task, model, method), rows in _groups(grid_rows).items():
        metric, split, mode = _rule(rows)
        choice = _choice(rows, metric, mode)
        keys = list(dict.fromkeys(k for r in rows for k in r.point))
        grid = "; ".join(_label(r.point, keys) for r in rows)
        selected = DASH if choice is None else (describe_point(choice.point) if choice.point else "none")
        state = (
            "stage 1 running"
            if choice is None
            else choice.reason
            if choice.point is None
            else "; ".join(
                filter(
                    None,
                    [
                        f"tied with {'; '.join(map(describe_point, choice.ties))}" if choice.ties else "",
                        f"left out: {choice.left_out()}" if choice.failed else "",
                        choice.edge_note() if choice.edges else "",
                    ],
                )
            )
            or "ok"
        )
        data.append(
            {
                "task": task,
                "model": model,
                "method": method,
                "keys": ",".join(keys),
                "metric": metric,
                "split": split,
                "mode": mode,
                "grid_points": len(rows),
                "selected": selected,
                f"selected_{metric}": choice.value if choice else None,
                "status": state,
            }
        )
        display.append(
            {
                "Task": task,
                "Model": model,
                "Method": method,
                "Swept": ", ".join(keys),
                "Grid": grid,
                "Selected": selected,
                f"{LABELS.get(metric, metric)} on {split}": f"{choice.value * 100:.2f}"
                if choice and choice.value is not None
                else DASH,
                "Status": state,
            }
        )
        if _rung_steps(rows):
            steps, columns, stopped = _rung_cells(rows, keys, metric)
            halving[len(data) - 1] = (steps, columns, stopped)
    if halving:  # rung columns only where a sweep halved: a table without halving is as before
        _add_rung_columns(data, display, halving)
    return Table(
        "sweep_selection",
        "Sweeps: selected values (stage 1, on the selection split)",
        SELECTION_NOTE,
        pd.DataFrame(data),
        pd.DataFrame(display),
        [row["Status"] != "ok" for row in display],
    )


def _add_rung_columns(
    data: list[dict], display: list[dict], halving: dict[int, tuple[list[int], list[str], str]]
) -> None:
    """Per rung i: its step and its points' metric (``rung_i_step``, ``rung_i``; "Rung i"), and
    where each point stopped (``stopped_at``; "Stopped at"), before the Status column."""
    count = max(len(steps) for steps, _, _ in halving.values())
    for index, (row, shown) in enumerate(zip(data, display)):
        steps, columns, stopped = halving.get(index, ([], [], None))
        status = shown.pop("Status")
        for rung in range(count):
            step = steps[rung] if rung < len(steps) else None
            cell = columns[rung] if rung < len(columns) else None
            row[f"rung_{rung}_step"], row[f"rung_{rung}"] = step, cell
            shown[f"Rung {rung}"] = f"step {step}: {cell}" if step is not None and cell else DASH
        row["stopped_at"] = stopped
        shown["Stopped at"] = stopped or DASH
        shown["Status"] = status
        row["status"] = row.pop("status")


def sensitivity_plots(grid_rows: list[CellRow], folder: Path) -> list[Plot]:
    """One PNG per (task, model) with single-key sweeps: metric against value, a line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    groups = _groups(grid_rows)
    plots = []
    for task, model in dict.fromkeys((t, m) for t, m, _ in groups):
        lines = []
        for (t, m, method), rows in groups.items():
            keys = {k for r in rows for k in r.point}
            if (t, m) != (task, model) or len(keys) != 1:
                continue
            key = keys.pop()
            metric, split, mode = _rule(rows)
            points = sorted(
                (r.point[key], r.metrics[metric])
                for r in rows
                if r.finished and metric in r.metrics and isinstance(r.point.get(key), (int, float))
            )
            # a halving's earlier rungs: (step, its points' (value, metric)), drawn faint
            rungs = [
                (
                    step,
                    sorted(
                        (r.point[key], dict(r.rungs)[step][metric])
                        for r in rows
                        if metric in dict(r.rungs).get(step, {}) and isinstance(r.point.get(key), (int, float))
                    ),
                )
                for step in _rung_steps(rows)
            ]
            if points or rungs:
                choice = _choice(rows, metric, mode)
                lines.append(
                    (method, key, metric, split, points, choice.point[key] if choice and choice.point else None, rungs)
                )
        if not lines:
            continue
        figure = Figure(figsize=(6.4, 4.4), dpi=110)
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        for index, (method, _, _, _, points, selected, rungs) in enumerate(lines):
            for step, rung_points in rungs:
                if rung_points:
                    rx, ry = zip(*rung_points)
                    ax.plot(rx, [y * 100 for y in ry], marker=".", linestyle="--", alpha=0.35, color=f"C{index % 10}")
                    ax.annotate(f"step {step}", (rx[-1], ry[-1] * 100), fontsize=7, alpha=0.6, color=f"C{index % 10}")
            if not points:
                continue
            xs, ys = zip(*points)
            ax.plot(xs, [y * 100 for y in ys], marker="o", color=f"C{index % 10}", label=method)
            for x, y in points:
                if x == selected:
                    ax.scatter([x], [y * 100], s=160, facecolors="none", edgecolors=f"C{index % 10}", linewidths=1.5)
        values = [x for line in lines for x, _ in line[4]] + [x for line in lines for _, p in line[6] for x, _ in p]
        if min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        swept = sorted({line[1] for line in lines})
        metric, split = lines[0][2], lines[0][3]
        plots.append(
            save_plot(
                figure,
                ax,
                xlabel=", ".join(swept),
                ylabel=f"{LABELS.get(metric, metric)} on {split} (×100)",
                title=f"{task} / {model}: sensitivity to {', '.join(swept)} (ringed: selected"
                + ("; dashed: rungs)" if any(line[6] for line in lines) else ")"),
                path=folder / f"sensitivity_{_slug(task)}_{_slug(model)}.png",
                task=task,
                model=model,
                axis="sensitivity",
            )
        )
    return plots
