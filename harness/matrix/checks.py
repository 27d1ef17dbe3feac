"""Plan-time checks of expanded cells: everything a cell would refuse when it starts.

The schema catches wrong keys and values; these catch what needs the registries: method
arguments against the peft config class, target modules against the model's skeleton (on
the meta device, through the parameter count), and a user's data files row by row. Both
``harness plan`` and ``harness matrix`` call :func:`check_cells` before anything is
submitted or any cell folder is written, so a bad cell is a one-line error, not a failed job.
"""

from __future__ import annotations

import json

from harness.errors import ConfigError
from harness.matrix.expand import Cell, Matrix
from harness.matrix.params import ParamCount, ParamCounter


def check_cells(matrix: Matrix, cells: list[Cell], counter: ParamCounter | None = None) -> dict[str, ParamCount]:
    """Counts per cell id for the cells that run; raises ConfigError naming the first refused cell."""
    counter = counter or ParamCounter()
    where = str(matrix.path) if matrix.path else "matrix"
    counts: dict[str, ParamCount] = {}
    refused: list[tuple[Cell, str]] = []
    for cell in cells:
        if cell.excluded is not None:
            continue
        count = counter(cell.config)
        counts[cell.cell_id] = count
        if count.refused:
            refused.append((cell, str(count.error)))
    refused += _data_refusals(cells)
    if refused:
        cell, reason = refused[0]
        more = f" ({len(refused) - 1} more cells refused)" if len(refused) > 1 else ""
        raise ConfigError(f"{where}: cell {cell.label()}: {reason}{more}")
    return counts


def _data_refusals(cells: list[Cell]) -> list[tuple[Cell, str]]:
    local = [
        c for c in cells if c.excluded is None and c.config.data.source is not None and not c.config.data.source.hub_id
    ]
    if not local:  # bundled or Hub data only: nothing to read here (and no reason to import torch)
        return []
    from harness.methods import resolve_method
    from harness.tasks import check_source, task_of

    refused: list[tuple[Cell, str]] = []
    checked: dict[str, str | None] = {}
    for cell in local:
        data = cell.config.data
        trains = resolve_method(cell.method).trains
        splits = (data.train_split, data.eval_split) if trains else (data.eval_split,)
        assert data.source is not None  # a local source: see ``local`` above
        key = json.dumps([cell.task, cell.config.task_definition, data.source.model_dump(mode="json"), splits])
        if key not in checked:
            try:
                check_source(task_of(cell.config), data, splits)
                checked[key] = None
            except ConfigError as error:
                checked[key] = str(error)
        if checked[key]:
            refused.append((cell, checked[key]))  # type: ignore[arg-type]
    return refused
