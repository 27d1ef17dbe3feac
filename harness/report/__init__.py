"""Reports: tables, Pareto plots and a self-contained HTML page from finished cells.

Reads results (cell folders of a matrix, or an MLflow experiment); never trains, never
submits. ``build_report`` is the one entry point (``harness report``).

Modules: ``load`` (one row per cell), ``mlflow_source`` (rows from MLflow runs),
``stats`` (mean and t interval), ``tables``, ``pareto``, ``curves``, ``sweeps`` (selection, sensitivity), ``render`` (Markdown, HTML),
``publish`` (attach to the matrix's parent MLflow run), ``peft_reference`` (beside peft's published results).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import ConfigError
from harness.report.cost import cost_table
from harness.report.curves import loss_curves
from harness.report.load import NOT_RECORDED, CellRow, rows_from_matrix, separate_data_versions
from harness.report.pareto import pareto_plots
from harness.report.peft_reference import peft_table, planned_trainable, read_peft_results
from harness.report.render import ReportContent, html_page, markdown
from harness.report.sweeps import selection_table, sensitivity_plots, split_stages
from harness.report.tables import cells_table, efficiency_table, group_rows, not_finished_table, quality_table
from harness.result import now_iso

if TYPE_CHECKING:
    from harness.matrix import Limits

__all__ = ["CellRow", "build_report"]

log = logging.getLogger(__name__)

PLOTS_DIR = "plots"


def build_report(
    matrix: str | Path | None,
    *,
    experiment: str | None = None,
    output: str | Path | None = None,
    limits: Limits | None = None,
    peft_results: str | Path | None = None,
) -> Path:
    """Write the report; return its folder.

    ``matrix``: a matrix file; its cells' ``result.json`` files are read (cells without one
    are reported as missing). ``experiment``: read the cells from that MLflow experiment
    instead (with a matrix: its tracking URI and exactly its cells; without: every cell run
    of the experiment, at ``$MLFLOW_TRACKING_URI``). ``output``: the report folder, by
    default ``<matrix output_dir>/report`` (``./report-<experiment>`` without a matrix).
    ``limits``: the caps the matrix is expanded under (``--max-cells``, ``--max-grid-points``).
    ``peft_results``: the folder of peft's method_comparison result files (or one file): a table
    sets each cell tagged ``peft_experiment`` beside that experiment's published figures.
    """
    if matrix is None and experiment is None:
        raise ConfigError("harness report: give a matrix file or --experiment")
    peft = read_peft_results(peft_results) if peft_results is not None else None  # refused before anything is written
    loaded = None
    if matrix is not None:
        from harness.matrix import load_matrix

        loaded = load_matrix(matrix, limits=limits)

    if experiment is not None:
        from harness.report.mlflow_source import rows_from_mlflow

        uri = loaded.tracking_uri if loaded else _default_uri()
        rows = rows_from_mlflow(uri, experiment, loaded.active if loaded else None)
        source = f"MLflow experiment {experiment!r} at {uri}"
    else:
        assert loaded is not None
        rows = rows_from_matrix(loaded)
        source = f"cell folders of matrix {loaded.name!r} ({loaded.path}) under {loaded.output_dir}"

    rows = separate_data_versions(rows)

    if output is not None:
        folder = Path(output).expanduser().absolute()
    elif loaded is not None:
        folder = loaded.output_dir / "report"
    else:
        folder = Path.cwd() / f"report-{re.sub(r'[^A-Za-z0-9._-]+', '_', str(experiment))}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / PLOTS_DIR, ignore_errors=True)  # plots of a previous report may no longer apply

    # the tables are built from the selected configs (and unswept cells); a sweep's grid has its own section
    rows, grid_rows = split_stages(rows)
    groups = group_rows(rows)
    from harness.tasks.kinds import SCORINGS

    tables = [
        t for scoring in SCORINGS for t in (quality_table(groups, scoring), efficiency_table(groups, scoring)) if t
    ]
    selection = selection_table(grid_rows)
    tables += [selection] if selection else []
    planned = planned_trainable(loaded, rows) if peft is not None and loaded is not None else None
    beside_peft = peft_table(rows, peft, planned) if peft is not None else None
    tables += [beside_peft] if beside_peft else []
    cost = cost_table(rows, grid_rows)
    tables += [cost] if cost else []
    cells, unfinished = cells_table(group_rows(rows + grid_rows)), not_finished_table(group_rows(rows + grid_rows))
    for table in (*tables, cells, unfinished):
        table.data.to_csv(folder / f"{table.name}.csv", index=False)
    plots = pareto_plots(groups, folder / PLOTS_DIR)
    curves = loss_curves(groups, folder / PLOTS_DIR)
    sensitivity = sensitivity_plots(grid_rows, folder / PLOTS_DIR)

    content = ReportContent(
        title=f"PEFT benchmark report: {loaded.name if loaded else experiment}",
        source=source,
        generated_at=now_iso(),
        tables=tables,
        cells=cells,
        not_finished=unfinished,
        plots=plots,
        curves=curves,
        sensitivity=sensitivity,
        excluded=[(c.label(), c.excluded) for c in loaded.cells if c.excluded] if loaded else [],
        notes=_notes(rows),
    )
    (folder / "report.md").write_text(markdown(content, folder))
    (folder / "report.html").write_text(html_page(content))

    if loaded is not None:
        from harness.report.publish import log_report

        run_id = log_report(folder, uri=loaded.tracking_uri, experiment=loaded.experiment, matrix_name=loaded.name)
        if run_id:
            log.info("report logged to MLflow run %s", run_id)
    return folder


def _default_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def _notes(rows: list[CellRow]) -> list[str]:
    finished = [r for r in rows if r.finished]
    notes = []
    if not finished:
        notes.append("No cell has finished successfully yet: the tables list the planned cells only.")
    if finished and all(r.train_energy_j is None for r in finished):
        notes.append("No energy figures: no cell has NVML (GPU) telemetry, so the energy columns and plots are empty.")
    if any(r.train_peak_measure == "rss" or r.eval_peak_measure == "rss" for r in finished):
        notes.append(
            "Some cells ran on a CPU: their peak memory is the process's resident set size (RSS), "
            "not GPU memory; the tables say which measure each row uses."
        )
    unrecorded = [r for r in rows if r.finished and not r.run_recorded]
    if unrecorded:
        notes.append(
            f"{len(unrecorded)} finished cell(s) have no record of what ran (a result written before results "
            f"kept one, or an MLflow run without its result.json): their rank and learning rate are "
            f'"{NOT_RECORDED}", not derived again from today\'s defaults.'
        )
    return notes
