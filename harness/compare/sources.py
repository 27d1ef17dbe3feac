"""Reading a side from its command-line spelling: a matrix file, a folder of cell folders, an
MLflow experiment (``mlflow:NAME``) or a reference file. Each cell becomes a
:class:`~harness.compare.sides.Sample`."""

from __future__ import annotations

from pathlib import Path

from harness.compare.sides import RowKey, Sample, Side, sample_from_result
from harness.errors import ConfigError, error_line, shorten
from harness.report.load import MISSING, UNREADABLE, placeholder_row
from harness.result import OUTCOME_FILE, RESULT_FILE, Result, has_result, load_result

MLFLOW_PREFIX = "mlflow:"  # a side that is an MLflow experiment: mlflow:EXPERIMENT
MATRIX_SUFFIXES = (".yaml", ".yml")
REFERENCE_SUFFIX = ".json"


def load_side(spec: str, name: str, *, tracking_uri: str | None = None) -> Side:
    """A side from its command-line spelling: ``mlflow:EXPERIMENT``, a reference file (.json), a
    matrix file (.yaml), or a folder of cell folders (a matrix's output_dir, or one cell's)."""
    if spec.startswith(MLFLOW_PREFIX):
        experiment = spec.removeprefix(MLFLOW_PREFIX)
        if not experiment:
            raise ConfigError(f"{name}: {shorten(spec)}: give the experiment's name after {MLFLOW_PREFIX}")
        return _mlflow_side(experiment, name, tracking_uri)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder_side(path, name)
    if path.is_file() and path.name in (RESULT_FILE, OUTCOME_FILE):
        return _folder_side(path.parent, name)
    if path.is_file() and path.suffix == REFERENCE_SUFFIX:
        from harness.compare.reference import load_reference

        return load_reference(path, name)
    if path.is_file() and path.suffix in MATRIX_SUFFIXES:
        return matrix_side(path, name)
    if path.exists():
        raise ConfigError(
            f"{name}: {shorten(spec)} is neither a matrix file (.yaml), an output folder, a reference file (.json) "
            f"nor {MLFLOW_PREFIX}EXPERIMENT"
        )
    raise ConfigError(
        f"{name}: {shorten(spec)}: no such file or folder (give a matrix file, an output folder, a reference "
        f"file or {MLFLOW_PREFIX}EXPERIMENT)"
    )


def _read(folder: Path) -> Result | str:
    """The folder's result, or the one line saying why it cannot be read."""
    try:
        return load_result(folder)
    except (OSError, ValueError) as error:
        return error_line(error)


def matrix_side(path: Path, name: str, output_dir: Path | None = None) -> Side:
    """Every active cell of the matrix (its output in ``output_dir`` instead of the file's, if
    given), from its cell folders; a cell without a result is a ``missing`` seed of its row."""
    from harness.matrix import load_matrix

    matrix = load_matrix(path, output_dir=output_dir)
    samples = []
    for cell in matrix.active:
        folder = Path(cell.folder)
        if not has_result(folder):
            samples.append(Sample(placeholder_row(cell.config, cell.cell_id, MISSING)))
            continue
        read = _read(folder)
        if isinstance(read, str):
            samples.append(Sample(placeholder_row(cell.config, cell.cell_id, UNREADABLE, read)))
        else:
            samples.append(sample_from_result(read, folder))
    source = f"cell folders of matrix {matrix.name!r} ({path}) under {matrix.output_dir}"
    return Side(name, source, samples, output_dir=matrix.output_dir)


def cell_folders(root: Path) -> list[Path]:
    """The cell folders under ``root`` (itself included): folders holding a result, outside the
    archived attempts (``history/``) and hidden folders (``.submitit``)."""
    from harness.dispatch.ledger import HISTORY_DIR

    found = {p.parent for name in (RESULT_FILE, OUTCOME_FILE) for p in root.rglob(name)}
    return sorted(
        f
        for f in found
        if not any(part == HISTORY_DIR or part.startswith(".") for part in f.relative_to(root).parts) and has_result(f)
    )


def _folder_side(root: Path, name: str) -> Side:
    samples, unreadable = [], []
    for folder in cell_folders(root):
        read = _read(folder)
        if isinstance(read, str):
            unreadable.append(f"{folder}: {read}")
        else:
            samples.append(sample_from_result(read, folder))
    side = Side(name, f"cell folders under {root}", latest_only(samples), output_dir=root)
    if unreadable:
        side.notes.append(f"{name}: {len(unreadable)} unreadable result(s) left out, e.g. {unreadable[0]}")
    dropped = len(samples) - len(side.samples)
    if dropped:
        side.notes.append(
            f"{name}: {dropped} older result(s) of a cell that ran again (same row and seed, another cell id) "
            "left out; the latest of each is compared"
        )
    return side


def latest_only(samples: list[Sample]) -> list[Sample]:
    """One sample per (row, seed): the latest started, where a folder holds the same cell twice
    (run again under another cell id after a default changed)."""
    chosen: dict[tuple[RowKey, int], Sample] = {}
    for sample in samples:
        key = (sample.key, sample.row.seed)
        if key not in chosen or sample.started_at >= chosen[key].started_at:
            chosen[key] = sample
    return list(chosen.values())


def _mlflow_side(experiment: str, name: str, tracking_uri: str | None) -> Side:
    """The latest run of every cell of the experiment: its logged result.json, or (a run logged
    without one) what its metrics and params hold, with no environment to compare."""
    from harness.report.mlflow_source import client_for, latest_cell_runs, result_of_run, row_from_run
    from harness.report.publish import store_exists

    if tracking_uri is None:
        import mlflow

        tracking_uri = mlflow.get_tracking_uri()
    if not store_exists(tracking_uri):  # looking must not create an empty store
        raise ConfigError(f"{name}: no MLflow tracking store at {tracking_uri} (give --tracking-uri)")
    client = client_for(tracking_uri)
    samples = []
    for run in latest_cell_runs(client, experiment).values():
        result = result_of_run(client, run)
        samples.append(
            sample_from_result(result, None, "mlflow") if result is not None else Sample(row_from_run(client, run))
        )
    return Side(name, f"MLflow experiment {experiment!r} at {tracking_uri}", samples)
