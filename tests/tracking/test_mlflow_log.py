"""A cell logs to a real MLflow server over HTTP; an unreachable server fails open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.cell import run_cell
from harness.result import load_result


def test_cell_logs_to_a_real_server_and_reads_back(make_cell, mlflow_server: str) -> None:
    config = make_cell("tiny-bert", "lora", "emotion",
                       tracking={"enabled": True, "uri": mlflow_server, "experiment": "test-cell"},
                       telemetry={"enabled": True, "interval_s": 0.2})
    result = run_cell(config)
    assert result.status == "success" and result.tracking.status == "logged", result.tracking.error
    on_disk = load_result(Path(config.output_dir))
    assert on_disk.tracking.run_id == result.tracking.run_id

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(result.tracking.run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags["model"], tags["method"], tags["task"], tags["seed"]) == ("tiny-bert", "lora", "emotion", "0")
    assert tags["harness.cell_id"] == config.cell_id
    for key, value in on_disk.metrics.items():
        assert run.data.metrics[key] == pytest.approx(value)
    assert run.data.metrics["eff/trainable_params"] == on_disk.efficiency.trainable_params
    assert run.data.params["train.batch_size"] == "4" and run.data.params["model"] == "tiny-bert"
    assert any(k.startswith("host/train/") for k in run.data.metrics), "telemetry summaries are logged"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, 7))  # one point per optimizer step
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"result.json", "predictions.jsonl", "adapter", "telemetry.csv"} <= artifacts
    downloaded = client.download_artifacts(run.info.run_id, "result.json", str(Path(config.output_dir) / "dl"))
    assert json.loads(Path(downloaded).read_text())["cell_id"] == config.cell_id


def test_unreachable_server_leaves_the_result_intact(make_cell, unused_port: int) -> None:
    uri = f"http://127.0.0.1:{unused_port}"  # nothing listens there
    config = make_cell("tiny-bert", "ia3", "emotion", tracking={"enabled": True, "uri": uri})
    result = run_cell(config)
    assert result.status == "success"
    on_disk = load_result(Path(config.output_dir))
    assert on_disk.status == "success" and on_disk.metrics == result.metrics
    assert on_disk.tracking.status == "failed" and on_disk.tracking.error
    assert on_disk.tracking.uri == uri


def test_default_store_is_sqlite_in_the_cell_folder(make_cell, tmp_path, monkeypatch) -> None:
    elsewhere = tmp_path / "working-folder"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # artifacts go beside the store, not to ./mlruns of wherever this runs
    config = make_cell("tiny-bert", "lora", "emotion", tracking={"enabled": True})
    result = run_cell(config)
    assert result.tracking.status == "logged"
    assert result.tracking.uri == f"sqlite:///{(Path(config.output_dir) / 'mlflow.db').resolve()}"
    assert list(elsewhere.iterdir()) == [] and (Path(config.output_dir) / "mlartifacts").is_dir()
    # logging the same cell again updates its run rather than adding one
    from harness.tracking import log_result

    again = log_result(Path(config.output_dir), result, uri=result.tracking.uri, experiment="harness")
    assert again == result.tracking.run_id
