"""Rows from MLflow: the child runs of an experiment (one per cell, tagged ``harness.cell_id``).

A run's ``result.json`` artifact is the source of truth when it is there (read with
``load_result``, like a cell folder); otherwise the row is rebuilt from the run's
metrics (the names :func:`harness.tracking.result_metrics` logs), params (the flattened
cell config, and the run record under ``run.``) and tags.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError
from harness.names import CELL_TAG
from harness.report.load import MISSING, UNREADABLE, CellRow, placeholder_row, row_from_flat, row_from_result
from harness.result import RESULT_FILE, Result, RunRecord, load_result

_RUN_STATUS = {
    "FINISHED": "success",
    "FAILED": "failed",
    "KILLED": "cancelled",
    "RUNNING": "running",
    "SCHEDULED": "running",
}


def client_for(uri: str) -> Any:
    import harness.tracking.mlflow_log  # noqa: F401 - sets MLflow's short HTTP timeouts first

    # one tiny result.json per run: a progress bar each would flood the terminal
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_runs(client: Any, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"MLflow experiment {experiment!r} not found at {client.tracking_uri}")
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([found.experiment_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _unflatten(params: dict[str, str]) -> dict[str, Any]:
    """``{"train.learning_rate": "0.001"}`` -> ``{"train": {"learning_rate": 0.001}}`` (values as YAML)."""
    from harness.dotted import expand_dotted

    values: dict[str, Any] = {}
    for key, text in params.items():
        try:
            values[key] = None if text == "None" else yaml.safe_load(text)
        except yaml.YAMLError:
            values[key] = text
    return expand_dotted(values)


def result_of_run(client: Any, run: Any) -> Result | None:
    """The run's logged ``result.json``, or None (a run logged without one, or unreadable)."""
    run_id = run.info.run_id
    try:
        names = {a.path for a in client.list_artifacts(run_id)}
        if RESULT_FILE in names:
            with tempfile.TemporaryDirectory() as tmp:
                return load_result(Path(client.download_artifacts(run_id, RESULT_FILE, tmp)))
    except Exception:  # noqa: BLE001 - the caller falls back to what the run itself holds
        pass
    return None


def row_from_run(client: Any, run: Any) -> CellRow:
    run_id, tags = run.info.run_id, run.data.tags
    result = result_of_run(client, run)
    if result is not None:
        return row_from_result(result, folder=None, source="mlflow")
    from harness.tracking.mlflow_log import RUN_PARAMS

    config = _unflatten(dict(run.data.params))
    recorded = config.pop(RUN_PARAMS, None)
    for key in ("model", "method", "task"):
        config.setdefault(key, tags.get(key))
    config.setdefault("seed", int(tags.get("seed") or 0))
    status = tags.get("status") or _RUN_STATUS.get(run.info.status, "running")
    return row_from_flat(
        cell_id=tags.get(CELL_TAG, run_id),
        status=status,
        config=config,
        flat=dict(run.data.metrics),
        source="mlflow",
        run=_run_record(recorded),
    )


def _run_record(logged: Any) -> RunRecord | None:
    """The run record a run's params hold (logged by harness.tracking), or None: a run logged
    before they held one, or one whose params were cut short."""
    try:
        return RunRecord.model_validate(logged) if isinstance(logged, dict) else None
    except ValueError:
        return None


def latest_cell_runs(client: Any, experiment: str) -> dict[str, Any]:
    """Cell id -> the latest run of that cell in the experiment (a cell logged again has several)."""
    latest: dict[str, Any] = {}
    for run in experiment_runs(client, experiment):
        cell_id = run.data.tags.get(CELL_TAG)
        if cell_id and (cell_id not in latest or run.info.start_time > latest[cell_id].info.start_time):
            latest[cell_id] = run
    return latest


def rows_from_mlflow(uri: str, experiment: str, cells: list[Any] | None = None) -> list[CellRow]:
    """Every cell run of the experiment; with ``cells`` (a matrix's active cells), exactly
    those cells, a cell without a run being ``missing``."""
    client = client_for(uri)
    latest = latest_cell_runs(client, experiment)
    if cells is None:
        return [_safe_row(client, run) for run in latest.values()]
    rows = []
    for cell in cells:
        run = latest.get(cell.cell_id)
        rows.append(_safe_row(client, run) if run is not None else placeholder_row(cell.config, cell.cell_id, MISSING))
    return rows


def _safe_row(client: Any, run: Any) -> CellRow:
    try:
        return row_from_run(client, run)
    except Exception as error:  # noqa: BLE001 - one odd run must not sink the report
        tags = run.data.tags
        return CellRow(
            cell_id=tags.get(CELL_TAG, run.info.run_id),
            task=str(tags.get("task")),
            model=str(tags.get("model")),
            method=str(tags.get("method")),
            seed=int(tags.get("seed") or 0),
            status=UNREADABLE,
            error=f"{type(error).__name__}: {error}"[:300],
            source="mlflow",
        )
