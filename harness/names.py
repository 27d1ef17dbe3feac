"""Names shared across layers, defined once: MLflow tags.

Every module that writes or searches MLflow runs imports these, so a run logged by a job,
collected by ``harness collect`` and found by ``harness report`` carries the same tags.
"""

from __future__ import annotations

import hashlib

MATRIX_TAG = "harness.matrix"  # the matrix name, on the parent run and every cell's run
# sha256 of the matrix name: what searches filter on, since a name may hold quotes that an
# MLflow filter string cannot escape reliably
MATRIX_KEY_TAG = "harness.matrix_key"
ROLE_TAG = "harness.role"  # "matrix" on the parent run
CELL_TAG = "harness.cell_id"
COLLECTED_TAG = "harness.collected"  # digest of the result a child run was logged from
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag


def matrix_key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def matrix_filter(name: str) -> str:
    """The MLflow filter string for every run of a matrix."""
    return f"tags.`{MATRIX_KEY_TAG}` = '{matrix_key(name)}'"
