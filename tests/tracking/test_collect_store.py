"""collect into a store MLflow cannot open: one line, exit 2, at once (not MLflow's minutes of
retries or its traceback), and nothing written."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_collect_races import finished_matrix

from harness.cli import main
from harness.tracking.collect import check_store


def bad_stores(tmp_path: Path) -> list[tuple[str, str]]:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 20)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    (tmp_path / "a-file").write_text("x")
    return [
        (f"sqlite:///{garbage}", f"{garbage} is not a SQLite database file (it does not begin with 'SQLite format 3')"),
        (f"sqlite:///{folder}", f"{folder} is a folder, not a SQLite database file"),
        ("foo://host/x", "unknown scheme 'foo' (MLflow reads"),
        (f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}", f"{tmp_path / 'a-file'} is not a folder"),
        (f"file://{tmp_path / 'a-file'}", f"{tmp_path / 'a-file'} is not a folder (a file store is one)"),
        (str(tmp_path / "mlruns"), "MLflow opens a file store only with MLFLOW_ALLOW_FILE_STORE=true"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_collect_into_a_store_mlflow_cannot_open_is_one_line(tmp_path: Path, capsys, case: int) -> None:
    uri, message = bad_stores(tmp_path)[case]
    path = finished_matrix(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")
    start = time.perf_counter()
    assert main(["collect", str(path), "--tracking-uri", uri]) == 2
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert err.startswith("harness: error: tracking store ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and seconds < 5, (err, seconds)
    assert not (tmp_path / "unused.db").exists()


def test_the_matrix_files_store_is_checked_too_from_the_command_line(tmp_path: Path) -> None:
    folder = tmp_path / "store.db"
    folder.mkdir()
    path = finished_matrix(tmp_path, f"sqlite:///{folder}")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "collect", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (
        f"harness: error: tracking store sqlite:///{folder}: {folder} is a folder, not a SQLite database file "
        f"(give a file path, e.g. {folder / 'mlflow.db'})"
    )
    assert time.perf_counter() - start < 60  # the interpreter and MLflow's import, not 104 s of retries


def test_stores_mlflow_opens_pass(tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()  # SQLite makes an empty file a database
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for uri in (
        f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}",
        f"sqlite:///{empty}",
        "sqlite://",
        str(tmp_path / "mlruns"),
        f"file://{tmp_path}",
        "http://localhost:5000",
        "postgresql+psycopg2://user@host/db",
    ):
        check_store(uri)
