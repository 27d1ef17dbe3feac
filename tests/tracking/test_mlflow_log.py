"""A cell logs to a real MLflow server over HTTP; an unreachable server fails open."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.result import load_result
from harness.tracking.record import run_cell  # the cell, recorded to MLflow


def test_cell_logs_to_a_real_server_and_reads_back(make_cell, mlflow_server: str) -> None:
    config = make_cell(
        "tiny-bert",
        "lora",
        "emotion",
        tracking={"enabled": True, "uri": mlflow_server, "experiment": "test-cell"},
        telemetry={"enabled": True, "interval_s": 0.2},
    )
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


def test_a_grid_point_logs_its_selection_split_and_validation_curve(make_cell, mlflow_server: str) -> None:
    """A sweep's stage-1 cell is scored on validation: its quality figures are logged as
    validation/<metric> (no MLflow column mixes them with test scores); train.eval_every's losses
    are a validation/loss series."""
    from harness.names import SELECT_STAGE, STAGE_TAG, SWEEP_TAG

    config = make_cell(
        "tiny-bert",
        "lora",
        "emotion",
        tags={STAGE_TAG: SELECT_STAGE, SWEEP_TAG: '{"train.learning_rate": 0.001}'},
        data={"eval_split": "validation", "max_eval_samples": 8},
        train={"eval_every": 3},
        tracking={"enabled": True, "uri": mlflow_server, "experiment": "test-sweep-point"},
    )
    result = run_cell(config)
    assert result.status == "success" and result.tracking.status == "logged", result.tracking.error
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(result.tracking.run_id)
    assert run.data.metrics["validation/f1_macro"] == pytest.approx(result.metrics["f1_macro"])
    assert "f1_macro" not in run.data.metrics
    assert run.data.tags[STAGE_TAG] == SELECT_STAGE
    curve = client.get_metric_history(run.info.run_id, "validation/loss")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [s for s, _ in result.efficiency.eval_loss_history]


def test_a_diverged_cell_is_recorded_as_diverged(make_cell, mlflow_server: str) -> None:
    """tiny-llama at learning_rate 1e6 explodes at step 2: the run says so (status tag, where and by
    which rule), and is FAILED in MLflow's own terms, never FINISHED."""
    config = make_cell(
        "tiny-llama",
        "lora",
        "emotion",
        train={"learning_rate": 1e6},
        tracking={"enabled": True, "uri": mlflow_server, "experiment": "test-diverged"},
    )
    result = run_cell(config)
    assert result.status == "diverged" and result.tracking.status == "logged", (result.status, result.tracking)
    run = MlflowClient(tracking_uri=mlflow_server).get_run(result.tracking.run_id)
    assert run.info.status == "FAILED"
    tags = run.data.tags
    assert (tags["status"], tags["divergence.step"], tags["divergence.rule"]) == ("diverged", "2", "explosion")


def test_a_run_carries_the_cells_own_start_and_end_times(make_cell) -> None:
    """Logged later (as ``collect`` does), the run still shows when the cell trained and for how long."""
    from harness.tracking import log_result

    config = make_cell("tiny-bert", "lora", "emotion", tracking={"enabled": True})
    result = run_cell(config)
    assert result.tracking.status == "logged", result.tracking.error
    trained = result.model_copy(
        update={"started_at": "2026-01-02T03:04:05+00:00", "finished_at": "2026-01-02T03:34:07+00:00"}
    )
    run_id = log_result(Path(config.output_dir), trained, uri=result.tracking.uri, experiment="collected-later")
    info = MlflowClient(tracking_uri=result.tracking.uri).get_run(run_id).info
    assert info.start_time == 1767323045000 and info.end_time == 1767323045000 + (30 * 60 + 2) * 1000
    # logged as the cell ends, the run's times are result.json's too
    inline = MlflowClient(tracking_uri=result.tracking.uri).get_run(result.tracking.run_id).info
    assert inline.start_time == round(datetime.fromisoformat(result.started_at).timestamp() * 1000)
    assert inline.end_time == round(datetime.fromisoformat(result.finished_at).timestamp() * 1000)
