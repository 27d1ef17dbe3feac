"""The matrix's runs view in the MLflow UI: what ``make ui`` opens and ``harness collect`` prints.

The experiment is tagged as a model-training experiment (``mlflow.experimentKind``), so the
UI opens on its training runs rather than on the GenAI overview. A saved view (an experiment
tag ``mlflow.sharedViewState.<key>``, the format of the UI's own "share view") selects the
headline metrics of the matrix's tasks and the trainable share as columns, sorted by the first
task's headline metric. Sorting by a metric lists every cell's run in the table: MLflow nests
child runs under a collapsed parent only when runs are sorted by date, and a shared view cannot
carry expanded rows (the UI drops ``runsExpanded`` from it).
"""

from __future__ import annotations

import json
from typing import Any

from harness.names import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    SELECTED_TAG,
    SHARED_VIEW_PARAM,
    SHARED_VIEW_PREFIX,
    STAGE_TAG,
    SWEEP_TAG,
    matrix_key,
)

# efficiency figures shown beside the quality columns
EFFICIENCY_COLUMNS = ("eff/trainable_share", "eff/trainable_params")


def view_key(matrix_name: str) -> str:
    return f"harness-{matrix_key(matrix_name)}"


def runs_view_state(matrix: Any) -> dict[str, Any]:
    """The saved view: quality columns of the matrix's scorings (headline first), efficiency, sort."""
    from harness.tasks.kinds import SCORINGS
    from harness.tasks.registry import task_of

    scorings = list(dict.fromkeys(task_of(cell.config).scoring for cell in matrix.active))
    metrics: list[str] = []
    for name in scorings:
        scoring = SCORINGS[name]
        metrics += [scoring.headline, *(c for c in scoring.columns if c != scoring.headline)]
    columns = [f"metrics.`{name}`" for name in dict.fromkeys([*metrics, *EFFICIENCY_COLUMNS])]
    if matrix.selections:  # a sweep: which stage each run belongs to, and what it swept
        columns += [f"tags.`{STAGE_TAG}`", f"tags.`{SWEEP_TAG}`", f"tags.`{SELECTED_TAG}`"]
    state: dict[str, Any] = {"selectedColumns": columns}
    if scorings:
        state.update(orderByKey=f"metrics.`{SCORINGS[scorings[0]].headline}`", orderByAsc=False)
    return state


def publish_runs_view(client: Any, experiment_id: str, matrix: Any) -> str:
    """Tag the experiment (kind, saved view); return the UI path of the matrix's runs view."""
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    key = view_key(matrix.name)
    client.set_experiment_tag(experiment_id, f"{SHARED_VIEW_PREFIX}{key}", json.dumps(runs_view_state(matrix)))
    return runs_view_path(experiment_id, matrix.name)


def runs_view_path(experiment_id: str, matrix_name: str) -> str:
    """The part of the UI's URL after its host: ``#/experiments/<id>/runs?viewStateShareKey=...``."""
    return f"#/experiments/{experiment_id}/runs?{SHARED_VIEW_PARAM}={view_key(matrix_name)}"
