"""The comparison a user looks at: a small matrix collected into a real MLflow server, its runs
view opened in headless Chromium, as `make ui` and `harness collect` print it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from browser import dump_dom, visible_text

from harness.matrix import load_matrix
from harness.names import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND


@pytest.mark.slow  # MLflow's UI bundle takes a while to render on two cores
def test_the_runs_view_lists_every_cell_with_its_metrics(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from harness.cell import run_cell
    from harness.tracking.collect import collect, render_collect

    path = tmp_path / "uitest.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "uitest",
                "output_dir": str(tmp_path / "out"),
                "models": ["tiny-bert"],
                "methods": ["lora", "ia3"],
                "tasks": ["emotion"],
                "seeds": [0],
                "tracking": {"uri": mlflow_server, "experiment": "uitest"},
                "defaults": {
                    "train": {"max_steps": 2, "batch_size": 4, "progress_bar": False},
                    "data": {"max_train_samples": 8, "max_eval_samples": 8, "max_source_tokens": 32},
                    "tracking": {"enabled": False},
                    "telemetry": {"enabled": False},
                },
            }
        )
    )
    results = {cell.label(): run_cell(cell.config) for cell in load_matrix(path).active}
    report = collect(path)
    assert report.ok and report.ui_path and f"runs view: {mlflow_server}/#/experiments/" in render_collect(report)

    experiment = MlflowClient(tracking_uri=mlflow_server).get_experiment_by_name("uitest")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND  # the UI opens on training runs

    text = visible_text(
        dump_dom(f"{mlflow_server}/{report.ui_path}", tmp_path / "profile", width=1800, budget_ms=20000)
    )
    assert "Training runs" in text and "Sort: f1_macro" in text
    for column in ("f1_macro", "accuracy", "eff/trainable_share"):  # headline metrics as columns
        assert f" {column} " in text, column
    for label, result in results.items():  # the parent's child runs, each with its own figures
        assert label in text
        assert str(result.metrics["f1_macro"])[:6] in text
    assert "matrix uitest" in text
