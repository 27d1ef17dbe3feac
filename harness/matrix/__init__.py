"""The matrix: schema of ``jobs/*.yaml``, validation, expansion into cells, cell ids and folders.

Knows nothing about SLURM; ``harness.dispatch`` turns cells into jobs.
"""

from harness.matrix.cells import Cell
from harness.matrix.expand import Limits, Matrix, cell_folder, load_matrix, matrix_from_dict, model_slug
from harness.matrix.params import ParamCount, ParamCounter
from harness.matrix.schema import ExecutorSpec, MatrixSpec, Resources
from harness.matrix.select import CellFilter, parse_filter

__all__ = [
    "Cell",
    "CellFilter",
    "ExecutorSpec",
    "Limits",
    "Matrix",
    "MatrixSpec",
    "ParamCount",
    "ParamCounter",
    "Resources",
    "cell_folder",
    "load_matrix",
    "matrix_from_dict",
    "model_slug",
    "parse_filter",
]
