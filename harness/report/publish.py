"""Attach a written report to the matrix's parent MLflow run, if there is one. Fails open."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harness.names import CELL_TAG, PARENT_TAG, ROLE_TAG, matrix_filter

log = logging.getLogger(__name__)

ARTIFACT_PATH = "report"


def store_exists(uri: str) -> bool:
    # A report must not create an empty SQLite store as a side effect of looking for a run.
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    if uri.startswith("file:") or "://" not in uri:
        return Path(uri.removeprefix("file://")).exists()
    return True


def find_parent_run(client: Any, experiment: str, matrix_name: str) -> str | None:
    """The run tagged ``harness.matrix=<name>`` that has no parent and is not a cell."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], filter_string=matrix_filter(matrix_name), max_results=1000)
    candidates = [r for r in runs if PARENT_TAG not in r.data.tags and CELL_TAG not in r.data.tags]
    # collect marks its parent run with harness.role=matrix; prefer that one
    candidates.sort(key=lambda r: (r.data.tags.get(ROLE_TAG) != "matrix", -(r.info.start_time or 0)))
    return candidates[0].info.run_id if candidates else None


def log_report(folder: Path, *, uri: str, experiment: str, matrix_name: str) -> str | None:
    """Log the report folder under ``report/`` of the parent run; return the run id, None if
    there is no parent run or logging failed (a warning says why)."""
    if not store_exists(uri):
        return None
    try:
        from harness.report.mlflow_source import client_for

        client = client_for(uri)
        run_id = find_parent_run(client, experiment, matrix_name)
        if run_id is None:
            return None
        client.log_artifacts(run_id, str(folder), artifact_path=ARTIFACT_PATH)
        return run_id
    except Exception as error:  # noqa: BLE001 - the report on disk is what counts
        log.warning(
            "could not log the report to MLflow (%s): %s", uri, f"{type(error).__name__}: {error}".splitlines()[0]
        )
        return None
