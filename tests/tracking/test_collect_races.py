"""collect is idempotent whatever the matrix is called, and two collects at once make one set of runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.matrix import load_matrix
from harness.result import Result, write_result

NAME = 'o\'brien "study" `x`'


def finished_matrix(tmp_path: Path, uri: str) -> Path:
    """A 3-cell matrix whose cells have finished (results written as a run would leave them)."""
    path = tmp_path / "m.yaml"
    path.write_text(
        f"name: '{NAME.replace(chr(39), chr(39) * 2)}'\noutput_dir: {tmp_path / 'out'}\n"
        f"tracking: {{uri: '{uri}', live: 'off'}}\nexecutor: {{kind: local}}\n"
        "models: [tiny-bert]\nmethods: [lora, ia3]\ntasks: [emotion]\nseeds: [0, 1]\n"
        "exclude: [{match: {method: ia3, seed: 1}, reason: three cells are enough}]\n"
    )
    for cell in load_matrix(path).active:
        write_result(
            cell.folder,
            Result(
                cell_id=cell.cell_id,
                status="success",
                config=cell.config.public_dump(),
                metrics={"accuracy": 0.5},
                finished_at="2026-01-01T00:00:00+00:00",
            ),
        )
    return path


def runs_of(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_two_collects_at_once_then_a_third(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    uri = (
        f"sqlite:///{tmp_path / 'new-store' / 'mlflow.db'}"
        if store == "sqlite"
        else request.getfixturevalue("mlflow_server")
    )
    path = finished_matrix(tmp_path, uri)
    experiment = load_matrix(path).experiment
    if store == "server":
        experiment = f"race-{tmp_path.name}"
        path.write_text(path.read_text().replace("tracking: {", f"tracking: {{experiment: '{experiment}', "))
    command = [sys.executable, "-m", "harness.cli", "collect", str(path)]
    first = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in first]
    assert [p.returncode for p in first] == [0, 0], outputs
    created = sorted(out.split(" runs created")[0].rsplit(" ", 1)[-1] for out, _ in outputs)
    listing = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "out").rglob("result.json"))
    assert created == ["0", "3"], (outputs, listing)  # one made them, the other found them all
    third = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and "0 runs created, 0 updated, 3 unchanged" in third.stdout, (
        third.stdout + third.stderr
    )

    runs = runs_of(uri, experiment)
    parents = [r for r in runs if r.data.tags.get("harness.role") == "matrix"]
    children = [r for r in runs if "harness.cell_id" in r.data.tags]
    assert len(runs) == 4 and len(parents) == 1 and len(children) == 3
    assert parents[0].data.tags["harness.matrix"] == NAME
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    if store == "sqlite":  # artifacts beside the store, not in ./mlruns of the working folder
        assert (tmp_path / "new-store" / "mlartifacts").is_dir() and not Path("mlruns").exists()
