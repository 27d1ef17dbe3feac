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
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.matrix.cells import describe_point
from harness.matrix.sweep import Outcome, choose
from harness.names import SELECT_STAGE
from harness.report.load import CellRow
from harness.report.pareto import Plot, _slug, save_plot
from harness.report.tables import DASH, Table
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


def _groups(grid_rows: list[CellRow]) -> dict[tuple[str, str, str], list[CellRow]]:
    groups: dict[tuple[str, str, str], list[CellRow]] = {}
    for row in grid_rows:
        groups.setdefault((row.task, row.model, row.method), []).append(row)
    return groups


def selection_table(grid_rows: list[CellRow]) -> Table | None:
    if not grid_rows:
        return None
    data, display = [], []
    for (task, model, method), rows in _groups(grid_rows).items():
        metric, split, mode = _rule(rows)
        choice = choose([_outcome(r, metric) for r in rows], mode)
        keys = list(dict.fromkeys(k for r in rows for k in r.point))
        grid = "; ".join(
            describe_point(r.point).replace(f"{keys[0]}=", "") if len(keys) == 1 else describe_point(r.point)
            for r in rows
        )
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
    return Table(
        "sweep_selection",
        "Sweeps: selected values (stage 1, on the selection split)",
        SELECTION_NOTE,
        pd.DataFrame(data),
        pd.DataFrame(display),
        [row["Status"] != "ok" for row in display],
    )


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
            if points:
                choice = choose([_outcome(r, metric) for r in rows], mode)
                lines.append(
                    (method, key, metric, split, points, choice.point[key] if choice and choice.point else None)
                )
        if not lines:
            continue
        figure = Figure(figsize=(6.4, 4.4), dpi=110)
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        for index, (method, _, _, _, points, selected) in enumerate(lines):
            xs, ys = zip(*points)
            ax.plot(xs, [y * 100 for y in ys], marker="o", color=f"C{index % 10}", label=method)
            for x, y in points:
                if x == selected:
                    ax.scatter([x], [y * 100], s=160, facecolors="none", edgecolors=f"C{index % 10}", linewidths=1.5)
        values = [x for line in lines for x, _ in line[4]]
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
                title=f"{task} / {model}: sensitivity to {', '.join(swept)} (ringed: selected)",
                path=folder / f"sensitivity_{_slug(task)}_{_slug(model)}.png",
                task=task,
                model=model,
                axis="sensitivity",
            )
        )
    return plots
