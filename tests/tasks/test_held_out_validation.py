"""A defined task without a validation file declares a held-out slice of train
(``validation: {from: train, fraction: ...}``): a sweep selects on it, and no stage trains on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from harness.errors import ConfigError
from harness.matrix import load_matrix

WORDS = ["good", "fine", "great", "bad", "awful", "poor"]


def _files(folder: Path) -> dict[str, str]:
    """Tiny binary sentiment CSVs, each row's text unique (so a row is known by its text)."""
    files = {}
    for split, size in (("train", 40), ("test", 8)):
        rows = [(f"{split} row {i} is {WORDS[i % 6]}", "positive" if i % 6 < 3 else "negative") for i in range(size)]
        files[split] = str(folder / f"{split}.csv")
        pd.DataFrame(rows, columns=["text", "label"]).to_csv(files[split], index=False)
    return files


def _matrix(tmp_path: Path, validation: Any = None, sweep: bool = True) -> Path:
    task: dict[str, Any] = {
        "name": "reviews",
        "kind": "classification",
        "labels": ["negative", "positive"],
        "source": {"files": _files(tmp_path)},
    }
    if validation is not None:
        task["validation"] = validation
    data: dict[str, Any] = {
        "name": "heldout",
        "output_dir": str(tmp_path / "out"),
        "models": ["tiny-bert"],
        "methods": ["lora"],
        "tasks": [task],
        "seeds": [0],
        "executor": {"cluster": "debug"},
        "defaults": {
            "train": {"max_steps": 2, "batch_size": 4, "progress_bar": False},
            "data": {"max_train_samples": 64, "max_eval_samples": 64, "max_source_tokens": 32},
            "tracking": {"enabled": False},
            "telemetry": {"enabled": False},
        },
    }
    if sweep:
        data["sweep"] = [{"values": {"train.learning_rate": [1.0e-4, 3.0e-2]}}]
        data["select"] = {"metric": "f1_macro", "split": "validation"}
    path = tmp_path / "heldout.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_sweep_selects_on_the_declared_slice_and_never_trains_on_it(tmp_path, monkeypatch):
    from harness.dispatch import status, submit
    from harness.names import FINAL_STAGE, SELECT_STAGE
    from harness.result import load_result
    from harness.tasks import load_split, task_of

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _matrix(tmp_path, {"from": "train", "fraction": 0.2, "seed": 3})
    assert submit(path).ok
    report = status(path)
    assert report.finished and {s.status for s in report.states} == {"success"}
    stages = [s.cell.stage for s in report.states]
    assert stages.count(SELECT_STAGE) == 2 and stages.count(FINAL_STAGE) == 1
    first = report.states[0].cell.config
    held_out = {r["text"] for r in load_split(task_of(first), first.data, "validation", None)}
    assert len(held_out) == 8  # 20 % of train's 40 rows
    for state in report.states:
        config = state.cell.config
        assert config.data.held_out == "validation: 20% of train (seed 'validation/3')"
        trained = {r["text"] for r in load_split(task_of(config), config.data, config.data.train_split, None)}
        assert len(trained) == 32 and not trained & held_out  # neither stage trains on the slice
        result = load_result(state.cell.folder)
        predictions = pd.read_json(state.cell.folder / "predictions.jsonl", lines=True)
        if state.cell.stage == SELECT_STAGE:  # stage 1 is scored on the held-out slice, all of it
            assert result.config["data"]["eval_split"] == "validation" and len(predictions) == 8
        else:
            assert result.config["data"]["eval_split"] == "test" and len(predictions) == 8


def test_a_count_holds_out_that_many_rows(tmp_path):
    from harness.tasks import load_split, task_of

    cell = load_matrix(_matrix(tmp_path, {"from": "train", "count": 5})).active[0]
    assert cell.config.data.held_out == "validation: 5 rows of train (seed 'validation/0')"
    assert len(load_split(task_of(cell.config), cell.config.data, "validation", None)) == 5


def test_a_task_without_the_slice_keeps_its_ids(tmp_path):
    """No ``validation:`` declared: the task definition, and so the cell id, is as it was."""
    cell = load_matrix(_matrix(tmp_path, sweep=False)).active[0]
    assert "validation" not in cell.config.task_definition and cell.config.data.held_out is None


@pytest.mark.parametrize(
    ("validation", "message"),
    [
        (None, "validation: {from: train, fraction: 0.1}"),
        ({"from": "train", "fraction": 0.6}, "fraction 0.6"),
        ({"from": "train", "fraction": 0.0}, "fraction 0.0"),
        ({"from": "train", "count": 0}, "count 0"),
        ({"from": "train", "count": 40}, "validation count 40"),
        ({"from": "train", "fraction": 0.1, "count": 3}, "not both"),
        ({"from": "test", "fraction": 0.1}, "from 'test'"),
    ],
)
def test_refused_at_plan_time_in_one_line(tmp_path, validation, message):
    from harness.dispatch import plan

    with pytest.raises(ConfigError) as error:
        plan(_matrix(tmp_path, validation))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_cell_file_declares_the_slice_too_but_not_beside_a_validation_file(tmp_path):
    from harness.cell.resolve import parse_cell_config

    files = _files(tmp_path)
    definition = {"kind": "classification", "labels": ["negative", "positive"], "validation": {"count": 4}}
    data = {"model": "tiny-bert", "method": "lora", "task": "reviews", "task_definition": definition}
    config = parse_cell_config({**data, "data": {"source": {"files": files}}})
    assert config.data.held_out == "validation: 4 rows of train (seed 'validation/0')"
    assert config.task_definition["validation"] == {"from": "train", "fraction": None, "count": 4, "seed": 0}
    with pytest.raises(ConfigError, match="has a validation file and declares a held-out validation slice"):
        parse_cell_config({**data, "data": {"source": {"files": {**files, "validation": files["test"]}}}})
