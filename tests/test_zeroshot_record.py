"""A cell whose method does not train (zero-shot) records no training settings: result.json's
config and its MLflow params keep only the train settings evaluation uses, while its cell id and
config.yaml (the cell's input) stay those of the whole config."""

from __future__ import annotations

from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from harness.compare.sides import settings_of
from harness.config import EVALUATION_SETTINGS
from harness.report.load import row_from_result
from harness.result import load_result
from harness.tracking.record import run_cell

TRAINING = ("batch_size", "learning_rate", "max_steps", "epochs", "grad_accum", "scheduler", "warmup_ratio")


def test_a_zero_shot_cell_records_no_training_settings(make_cell) -> None:
    config = make_cell("tiny-t5", "zeroshot", "emotion", tracking={"enabled": True})
    assert config.train.batch_size == 4 and config.train.learning_rate == 1e-2  # set, as a matrix's defaults do
    assert config.cell_id == "ff5c4bf8104db21c"  # its id as before: the whole config's
    result = run_cell(config)
    assert result.status == "success" and result.tracking.status == "logged", result.error or result.tracking.error
    cell_dir = Path(config.output_dir)

    on_disk = load_result(cell_dir)
    assert on_disk.cell_id == config.cell_id
    assert set(on_disk.config["train"]) == set(EVALUATION_SETTINGS)
    assert on_disk.config["train"]["eval_batch_size"] == config.train.eval_batch_size
    assert on_disk.run is not None and on_disk.run.learning_rate is None
    assert on_disk.run.per_device_batch is None and on_disk.run.effective_batch is None
    # the cell's input keeps them: it is what a resume or a reload reads back as a CellConfig
    assert yaml.safe_load((cell_dir / "config.yaml").read_text())["train"]["batch_size"] == 4

    params = MlflowClient(tracking_uri=result.tracking.uri).get_run(result.tracking.run_id).data.params
    assert params["model"] == "tiny-t5" and params["train.eval_batch_size"] == str(config.train.eval_batch_size)
    recorded_by_the_run = ("run.learning_rate", "run.per_device_batch", "run.effective_batch")
    assert not [k for k in params if k.split(".")[-1] in TRAINING or k in recorded_by_the_run]

    # what reads the recorded config back: the report's row and compare's settings
    row = row_from_result(on_disk, cell_dir)
    assert (row.method, row.status, row.learning_rate) == ("zeroshot", "success", None)
    settings = settings_of(on_disk.config)
    assert "train.eval_batch_size" in settings and not any(k.split(".")[-1] in TRAINING for k in settings)


def test_a_trained_cell_still_records_its_training_settings(make_cell) -> None:
    config = make_cell("tiny-bert", "lora", "emotion", train={"max_steps": 1})
    run_cell(config)
    on_disk = load_result(Path(config.output_dir))
    assert on_disk.config["train"]["batch_size"] == 4 and on_disk.config["train"]["learning_rate"] == 1e-2
    assert on_disk.run is not None and on_disk.run.per_device_batch == 4 and on_disk.run.effective_batch == 4
    assert settings_of(on_disk.config)["train.batch_size"] == "4"
