"""Collect a matrix into MLflow from one process: a parent run, one child run per cell.

Idempotent: the parent is found again by its ``harness.matrix`` tag, children by
``harness.cell_id``; a child carries ``harness.collected`` (a digest of the result
it was logged from), so a second ``collect`` logs nothing that has not changed.
Runs that jobs logged live are adopted: linked to the parent and completed.
Fails open per cell: one cell's tracking error is reported, the others go on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harness.errors import ConfigError, error_line
from harness.matrix import Limits, Matrix, load_matrix, parse_filter
from harness.names import (
    CELL_TAG,
    COLLECTED_TAG,
    MATRIX_KEY_TAG,
    MATRIX_TAG,
    PARENT_TAG,
    ROLE_TAG,
    TRACKING_DB,
    matrix_filter,
    matrix_key,
)
from harness.redact import redact
from harness.result import FINAL_STATUSES, PAUSED, Result, ResultFile, TrackingStatus, has_result, load_result


@dataclass
class CollectReport:
    matrix: Matrix
    uri: str
    experiment: str
    parent_run_id: str | None = None
    ui_path: str | None = None  # the matrix's runs view in the MLflow UI (harness.tracking.ui)
    created: list[str] = field(default_factory=list)  # cell ids
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    not_finished: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def collect(
    path: Path | str,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    output_dir: Path | str | None = None,
    only: str | None = None,
    limits: Limits | None = None,
) -> CollectReport:
    """Log every finished cell of the matrix to MLflow (parent + child runs); return what changed.

    ``tracking_uri``/``experiment`` default to the matrix file's ``tracking:`` section
    (then ``$MLFLOW_TRACKING_URI``, then ``sqlite:///<output_dir>/mlflow.db``).
    """
    matrix = load_matrix(path, output_dir=output_dir, limits=limits)
    return collect_matrix(matrix, tracking_uri=tracking_uri, experiment=experiment, only=only)


def collect_matrix(
    matrix: Matrix, *, tracking_uri: str | None = None, experiment: str | None = None, only: str | None = None
) -> CollectReport:
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or matrix.tracking_uri
    check_store(uri)
    experiment = experiment or matrix.experiment
    report = CollectReport(matrix=matrix, uri=uri, experiment=experiment)
    with _collect_lock(matrix, uri):
        _collect_locked(report, MlflowClient(tracking_uri=uri), parse_filter(only))
    return report


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def check_store(uri: str) -> None:
    """Refuse, in one line (ConfigError), a tracking store MLflow cannot open, before MLflow
    tries: it retries a SQLite path it cannot open for minutes and answers a file that is not a
    database, or a scheme it does not know, with a traceback. Checked: the scheme is one MLflow
    reads; a SQLite store is a database file or not there yet (then its folder can be made); a
    file store is a folder. A server (http, a database server) is MLflow's to reach."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry as stores
    from mlflow.utils.uri import get_uri_scheme

    try:
        stores.get_store_builder(uri)
    except Exception:  # noqa: BLE001 - MLflow's "unsupported URI" (its type moves between versions)
        choices = ", ".join(sorted(scheme for scheme in getattr(stores, "_registry", {}) if scheme))
        raise ConfigError(
            f"tracking store {redact(uri)}: unknown scheme {urlparse(uri).scheme!r} (MLflow reads {choices}, or a path)"
        ) from None
    scheme = get_uri_scheme(uri)
    if scheme == "sqlite":
        database = uri.split(":///", 1)[1].split("?", 1)[0] if ":///" in uri else ""
        if database not in ("", ":memory:"):
            _check_path(uri, Path(database), "a SQLite database file")
    elif scheme in ("", "file"):
        folder = Path(urlparse(uri).path if urlparse(uri).scheme else uri)
        _check_path(uri, folder, "a folder")
        if not _file_store_allowed():  # MLflow 3 refuses one with a traceback
            raise ConfigError(
                f"tracking store {redact(uri)}: MLflow opens a file store only with MLFLOW_ALLOW_FILE_STORE=true; "
                f"give a SQLite store instead, e.g. sqlite:///{folder.absolute() / TRACKING_DB}"
            )


def _file_store_allowed() -> bool:
    try:
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
    except ImportError:  # an MLflow that opens file stores as it always did
        return True
    return bool(MLFLOW_ALLOW_FILE_STORE.get())


def _check_path(uri: str, path: Path, kind: str) -> None:
    where = f"tracking store {redact(uri)}"
    if not os.path.lexists(path):
        parent = next((p for p in path.parents if os.path.lexists(p)), None)
        if parent is not None and not parent.is_dir():
            raise ConfigError(f"{where}: {parent} is not a folder, so {path.name} cannot be made in it")
        return
    if kind == "a folder":
        if not path.is_dir():
            raise ConfigError(f"{where}: {path} is not a folder (a file store is one)")
        return
    if path.is_dir():
        raise ConfigError(f"{where}: {path} is a folder, not {kind} (give a file path, e.g. {path / TRACKING_DB})")
    if not path.is_file():
        raise ConfigError(f"{where}: {path} is not a regular file, not {kind}")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {path} ({error.strerror or error})") from None
    if header and header != SQLITE_HEADER:  # an empty file is a new database to SQLite
        raise ConfigError(f"{where}: {path} is not {kind} (it does not begin with 'SQLite format 3')")


@contextlib.contextmanager
def _collect_lock(matrix: Matrix, uri: str) -> Iterator[None]:
    """One collect at a time per store: two at once would both miss the parent run (or a
    child) in their search and both create it, or race to initialise a new SQLite file.
    The lock lives beside a SQLite database, else in the matrix's output folder."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///") + ".collect.lock")
    else:
        path = matrix.output_dir / ".collect.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _collect_locked(report: CollectReport, client: Any, selection: Any) -> None:
    from harness.tracking.mlflow_log import create_experiment, log_result

    matrix, uri, experiment = report.matrix, report.uri, report.experiment
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else create_experiment(client, experiment, uri)

    runs = _runs_of(client, experiment_id, matrix.name)
    parent = next((r for r in runs if r.data.tags.get(ROLE_TAG) == "matrix"), None)
    parent_id = parent.info.run_id if parent else _create_parent(client, experiment_id, matrix)
    report.parent_run_id = parent_id
    children = {r.data.tags[CELL_TAG]: r for r in runs if CELL_TAG in r.data.tags}

    finished = 0
    for cell in matrix.active:
        if not selection.matches(cell):
            continue
        result = _final_result(cell.folder)
        if result is None:
            report.not_finished += 1
            continue
        finished += 1
        digest = result_digest(result)
        existing = children.get(cell.cell_id)
        tags = existing.data.tags if existing else {}
        if existing and tags.get(COLLECTED_TAG) == digest and tags.get(PARENT_TAG) == parent_id:
            report.unchanged += 1
            continue
        try:
            run_id = log_result(
                cell.folder,
                result,
                uri=uri,
                experiment=experiment,
                parent_run_id=parent_id,
                run_id=existing.info.run_id if existing else None,
            )
            for key, value in (
                (CELL_TAG, cell.cell_id),
                (MATRIX_TAG, matrix.name),
                (MATRIX_KEY_TAG, matrix_key(matrix.name)),
                (PARENT_TAG, parent_id),
                (COLLECTED_TAG, digest),
            ):
                client.set_tag(run_id, key, value)
        except Exception as error:  # noqa: BLE001 - tracking fails open, per cell
            report.errors.append(f"{cell.label()} ({cell.cell_id[:8]}): {error_line(error)}")
            continue
        (report.updated if existing else report.created).append(cell.cell_id)
        # where the cell now lives in MLflow: tracking.json beside the result (collect never
        # writes result.json), which load_result reads as the result's tracking section
        ResultFile(cell.folder).note_collected(result, TrackingStatus(status="logged", uri=uri, run_id=run_id))

    try:
        from harness.tracking.ui import publish_runs_view

        report.ui_path = publish_runs_view(client, experiment_id, matrix)
    except Exception as error:  # noqa: BLE001 - the runs are logged; only the saved view is missing
        report.errors.append(f"runs view: {type(error).__name__}: {error}")
    try:
        client.set_tag(parent_id, "harness.cells_finished", str(finished))
        done = report.not_finished == 0 and not report.errors
        client.set_terminated(parent_id, status="FINISHED" if done else "RUNNING")
    except Exception as error:  # noqa: BLE001
        report.errors.append(f"parent run: {type(error).__name__}: {error}")


def result_digest(result: Result) -> str:
    """What identifies a result for collection; stable when only its tracking section changes."""
    blob = f"{result.cell_id}|{result.status}|{result.started_at}|{result.finished_at}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _final_result(folder: Path) -> Result | None:
    if not has_result(folder):
        return None
    try:
        result = load_result(folder)
    except Exception:  # noqa: BLE001 - status reports unreadable results
        return None
    # a cell paused at a rung is logged once it has finished
    return result if result.status in FINAL_STATUSES and result.status != PAUSED else None


def _runs_of(client: Any, experiment_id: str, name: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=matrix_filter(name), max_results=1000, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _create_parent(client: Any, experiment_id: str, matrix: Matrix) -> str:
    tags = {MATRIX_TAG: matrix.name, MATRIX_KEY_TAG: matrix_key(matrix.name), ROLE_TAG: "matrix"}
    if matrix.spec.description:
        tags["mlflow.note.content"] = matrix.spec.description
    run = client.create_run(experiment_id, run_name=f"matrix {matrix.name}", tags=tags)
    run_id = run.info.run_id
    client.log_param(run_id, "matrix_file", str(matrix.path) if matrix.path else "")
    client.log_param(run_id, "output_dir", str(matrix.output_dir))
    client.log_param(run_id, "cells", str(len(matrix.active)))
    client.log_param(run_id, "excluded", str(len(matrix.cells) - len(matrix.active)))
    if matrix.path and matrix.path.is_file():
        client.log_artifact(run_id, str(matrix.path))
    return run_id


def render_collect(report: CollectReport) -> str:
    lines = [
        f"matrix {report.matrix.name} -> {report.uri} (experiment {report.experiment}, parent run {report.parent_run_id})",
        f"  {len(report.created)} runs created, {len(report.updated)} updated, {report.unchanged} unchanged, "
        f"{report.not_finished} cells not finished yet",
    ]
    if report.ui_path:
        base = report.uri.rstrip("/") + "/" if report.uri.startswith(("http://", "https://")) else "<mlflow ui>/"
        lines.append(f"  runs view: {base}{report.ui_path}")
    lines += [f"error: {e}" for e in report.errors]
    return "\n".join(lines)
