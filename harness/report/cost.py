"""What the comparison cost: device-seconds (result.json's ``efficiency.cost``) per table row,
per sweep and for the whole matrix.

A researcher with a fixed GPU-hour allocation needs this before launching the next study, and
it is what makes a tuned comparison's price visible: a swept (task, model, method) costs its
stage-1 grid (every point on the first seed, scored on the selection split) plus its stage-2
seeds, where an untuned study runs the seeds alone. "vs untuned" is that ratio.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.report.load import CellRow
from harness.report.tables import DASH, Table, fmt_num, fmt_ratio

MEASURES = {"gpu_seconds": "GPU-s", "core_seconds": "core-s"}


def _seconds(rows: list[CellRow]) -> float | None:
    known = [r.device_s for r in rows if r.device_s is not None]
    return float(sum(known)) if known else None


def _measure(rows: list[CellRow]) -> str:
    measures = {r.cost_measure for r in rows if r.cost_measure}
    return MEASURES.get(measures.pop(), DASH) if len(measures) == 1 else ("mixed" if measures else DASH)


def cost_table(rows: list[CellRow], grid_rows: list[CellRow]) -> Table | None:
    """One row per (task, model, method) and one for the matrix: the compute of its stage-1 grid,
    of its seeds, in all, and relative to its seeds alone (the untuned study's cost). Cells that
    failed count too: they used the devices. None when no result records a cost."""
    if not any(r.device_s is not None for r in rows + grid_rows):
        return None
    keys = list(dict.fromkeys((r.task, r.model, r.method) for r in rows + grid_rows))
    data, display = [], []
    for key in keys:
        seeds = [r for r in rows if (r.task, r.model, r.method) == key]
        grid = [r for r in grid_rows if (r.task, r.model, r.method) == key]
        data.append(_row(*key, seeds, grid))
    data.append(_row("all", DASH, DASH, rows, grid_rows))
    for raw in data:
        display.append(
            {
                "Task": raw["task"],
                "Model": raw["model"],
                "Method": raw["method"],
                "Grid points": raw["grid_points"] or DASH,
                "Grid (h)": fmt_num(_hours(raw["grid_device_s"])),
                "Seeds": raw["seed_cells"],
                "Seeds (h)": fmt_num(_hours(raw["seeds_device_s"])),
                "Total (h)": fmt_num(_hours(raw["device_s"])),
                "Measure": raw["measure"],
                "vs untuned": fmt_ratio(raw["vs_untuned"]),
            }
        )
    note = (
        "Compute from each cell's result.json (efficiency.cost), in device-hours: GPU-hours on a GPU (wall time x "
        "GPUs held), core-hours on a CPU (the CPU time of the cell's processes). Grid: a sweep's stage 1 (every "
        "point on the first seed, scored on the selection split); Seeds: the cells the tables above report (a first "
        "seed that evaluated the stage-1 winner's run instead of training it again counts its evaluation: the "
        'training is counted once, in the grid). "vs untuned": the total over the seeds alone, each counted as '
        "trained, what the same study costs without tuning. Failed cells count: they used the devices."
    )
    return Table("cost", "Compute cost", note, pd.DataFrame(data), pd.DataFrame(display))


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def _row(task: str, model: str, method: str, seeds: list[CellRow], grid: list[CellRow]) -> dict[str, Any]:
    grid_s, seeds_s = _seconds(grid), _seconds(seeds)
    total = None if grid_s is None and seeds_s is None else (grid_s or 0.0) + (seeds_s or 0.0)
    # a seed that reused the stage-1 winner's run costs its evaluation (its training is in the
    # grid's figure); untuned, that seed would have trained: its training counts in the baseline
    untuned = None if seeds_s is None else seeds_s + sum(r.reused_device_s or 0.0 for r in seeds)
    return {
        "task": task,
        "model": model,
        "method": method,
        "grid_points": len(grid),
        "grid_device_s": grid_s,
        "seed_cells": len(seeds),
        "seeds_device_s": seeds_s,
        "device_s": total,
        "measure": _measure(seeds + grid),
        "vs_untuned": total / untuned if grid and total is not None and untuned else None,
    }
