"""Names and default paths shared across layers, defined once.

- MLflow tags: every module that writes or searches runs imports these, so a run logged by
  a job, collected by ``harness collect`` and found by ``harness report`` carries the same tags;
- the cache folder (``$HARNESS_CACHE``) and the default tracking store (``$MLFLOW_TRACKING_URI``,
  else a SQLite file in the folder at hand).

Light to import: no torch, no MLflow.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "HARNESS_CACHE"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
TRACKING_DB = "mlflow.db"
# a cell folder's files besides its result (result.json and the files beside it: harness.result)
CELL_LOG = "log.txt"  # the cell's log: status points at it
CELL_CONFIG = "config.yaml"  # the resolved cell config (submit and the cell write the same file), for reruns by hand


def cache_dir() -> Path:
    """Prefetched and materialised models, tokenizers, parameter counts (``$HARNESS_CACHE``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "harness")


def default_tracking_uri(folder: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else a SQLite store in ``folder`` (a cell's, or a matrix's output)."""
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{(Path(folder) / TRACKING_DB).absolute()}"


MATRIX_TAG = "harness.matrix"  # the matrix name, on the parent run and every cell's run
# sha256 of the matrix name: what searches filter on, since a name may hold quotes that an
# MLflow filter string cannot escape reliably
MATRIX_KEY_TAG = "harness.matrix_key"
ROLE_TAG = "harness.role"  # "matrix" on the parent run
CELL_TAG = "harness.cell_id"
COLLECTED_TAG = "harness.collected"  # digest of the result a child run was logged from
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
# a sweep's cells (harness.matrix.sweep), on the cell config and its MLflow run
STAGE_TAG = "harness.stage"  # select (stage 1, a grid point) | final (stage 2, the selected point)
SWEEP_TAG = "harness.sweep"  # stage 1: the grid point, JSON {key: value}
SELECTED_TAG = "harness.selected"  # stage 2: the selected point, JSON {key: value}
SELECT_TAG = "harness.select"  # metric/split/mode
SELECT_STAGE, FINAL_STAGE = "select", "final"
# stage 2's first seed: the stage-1 winner's folder, whose trained weights it evaluates instead of
# training them again (harness.cell.reuse); or why it trains them again
REUSE_TAG = "harness.reuses"
RETRAIN_TAG = "harness.retrains"
# a labelled configuration of a method (a matrix's {name: label, method: lora, ...}), on its cells:
# the report shows each label apart
VARIANT_TAG = "harness.variant"


def matrix_key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def matrix_filter(name: str) -> str:
    """The MLflow filter string for every run of a matrix."""
    return f"tags.`{MATRIX_KEY_TAG}` = '{matrix_key(name)}'"


# The MLflow UI opens an experiment with this kind on its model-training runs view, not its
# GenAI overview (traces, latency, token usage)
EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
# An experiment tag holding a saved runs view (columns, sort) that a UI link opens by its key
SHARED_VIEW_PREFIX, SHARED_VIEW_PARAM = "mlflow.sharedViewState.", "viewStateShareKey"
