"""Results follow their data: a local data file's sha256 is in the cell id and result.json, an
edited file makes new cells (``plan`` names the stale ones, ``matrix`` reruns them), a file that
changes under a planned cell is refused, and samples are drawn from content, not a task's name."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from harness.errors import ConfigError

WORDS = ["good", "fine", "great", "bad", "awful", "poor"]


def _write(path: Path, size: int, prefix: str = "row") -> str:
    rows = [(f"{prefix} {i} is {WORDS[i % 6]}", "positive" if i % 6 < 3 else "negative") for i in range(size)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


def _matrix(tmp_path: Path, tasks: list[dict[str, Any]] | None = None) -> Path:
    files = {"train": _write(tmp_path / "train.csv", 24), "test": _write(tmp_path / "test.csv", 12, "test")}
    task = {"name": "reviews", "kind": "classification", "labels": ["negative", "positive"], "source": {"files": files}}
    data: dict[str, Any] = {
        "name": "follow",
        "output_dir": str(tmp_path / "out"),
        "models": ["tiny-bert"],
        "methods": ["lora"],
        "tasks": tasks or [task],
        "seeds": [0],
        "executor": {"cluster": "debug"},
        "defaults": {
            "train": {"max_steps": 1, "batch_size": 4, "progress_bar": False},
            "data": {"max_source_tokens": 16},
            "tracking": {"enabled": False},
            "telemetry": {"enabled": False},
        },
    }
    path = tmp_path / "follow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_edited_test_file_makes_plan_name_the_stale_cell_and_matrix_rerun_it(tmp_path, monkeypatch):
    from harness.dispatch import commands
    from harness.result import load_result

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _matrix(tmp_path)
    first = commands.plan(path, params=False)
    cell = first.matrix.cells[0]
    assert cell.config.data.source is not None
    assert cell.config.data.source.sha256 == {
        "test": _sha(tmp_path / "test.csv"),
        "train": _sha(tmp_path / "train.csv"),
    }
    assert commands.submit(path).ok
    result = load_result(cell.folder)
    assert result.status == "success"
    assert result.config["data"]["source"]["sha256"]["test"] == _sha(tmp_path / "test.csv")  # what was read
    assert commands.plan(path, params=False).to_run == 0

    _write(tmp_path / "test.csv", 5, "test")  # the user cuts the test file
    again = commands.plan(path, params=False)
    new = again.matrix.cells[0]
    assert new.cell_id != cell.cell_id and again.to_run == 1
    (row,) = again.rows
    assert row["status"] == "pending"
    assert row["stale"].startswith(f"data changed since {cell.folder.name} ran: test file ")
    assert "train" not in row["stale"]  # only what changed is named
    rendered = commands.render_plan(again, scripts=False)
    assert "1 cell(s) went stale" in rendered and "stale: data changed since" in rendered

    assert commands.submit(path).ok  # matrix reruns it; the old result stays where it was
    assert load_result(new.folder).status == "success"
    assert load_result(cell.folder).status == "success"
    predictions = (new.folder / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 5  # scored on the file as it is now
    latest = commands.plan(path, params=False)
    assert latest.to_run == 0 and latest.rows[0]["stale"] is None  # the rerun superseded it


def test_a_file_changed_after_planning_is_refused_by_the_job(tmp_path):
    from harness.cell.resolve import parse_cell_config

    files = {"train": _write(tmp_path / "train.csv", 24), "test": _write(tmp_path / "test.csv", 12)}
    cell = {
        "model": "tiny-bert",
        "method": "lora",
        "task": "reviews",
        "task_definition": {"kind": "classification", "labels": ["negative", "positive"]},
        "data": {"source": {"files": files}},
    }
    planned = parse_cell_config(cell).model_dump(mode="json")  # what config.yaml and the job get
    assert parse_cell_config(planned).cell_id == parse_cell_config(cell).cell_id
    _write(tmp_path / "test.csv", 11)
    with pytest.raises(ConfigError, match=r"data file .*test\.csv \(test\) changed since its cell was planned"):
        parse_cell_config(planned, where="cell job")


def test_a_zero_shot_cell_hashes_only_what_it_reads(tmp_path):
    from harness.cell.resolve import parse_cell_config

    files = {"train": str(tmp_path / "missing-train.csv"), "test": _write(tmp_path / "test.csv", 6)}
    cell = {
        "model": "tiny-t5",
        "method": "zeroshot",
        "task": "answers",
        "task_definition": {"kind": "generation", "metric": "exact_match"},
        "data": {"source": {"files": files}},
    }
    source = parse_cell_config(cell).data.source
    assert source is not None and set(source.sha256 or {}) == {"test"}


def test_bad_sha256_pins_are_refused(tmp_path):
    from harness.cell.resolve import parse_cell_config

    cell = {
        "model": "tiny-bert",
        "method": "lora",
        "task": "reviews",
        "task_definition": {"kind": "classification", "labels": ["negative", "positive"]},
        "data": {"source": {"files": {"train": "a.csv"}, "sha256": {"train": "abc"}}},
    }
    with pytest.raises(ConfigError, match=r"sha256.'train' is not a sha256 \(64 hex digits\)"):
        parse_cell_config(cell)


def test_two_tasks_on_one_file_score_the_same_examples(tmp_path):
    from harness.config import DataConfig, DataSource
    from harness.tasks import load_split
    from harness.tasks.registry import resolve_task

    test = _write(tmp_path / "test.csv", 200)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(Path(test).read_bytes())
    data = DataConfig(source=DataSource(files={"test": test}))

    def sample(name: str, config: DataConfig = data, seed: int = 0) -> list[int]:
        task = resolve_task(name, {"kind": "classification", "labels": ["negative", "positive"]})
        return [row.index for row in load_split(task, config, "test", 20, seed)]  # type: ignore[attr-defined]

    assert sample("reviews") == sample("sentiment")  # the name does not draw the sample
    assert sample("reviews") == sample("other", DataConfig(source=DataSource(files={"test": str(copy)})))
    assert sample("reviews", seed=1) != sample("reviews")
    _write(tmp_path / "test.csv", 200, "edited")  # new content: drawn anew
    assert sample("reviews") != sample("other", DataConfig(source=DataSource(files={"test": str(copy)})))


def test_bundled_samples_and_ids_stay_as_they_were():
    """Bundled data is drawn by the task's name as before (its cells' results stay valid), and its
    ids have no hashes: the pinned ids of tests/test_config.py hold."""
    import random

    from harness.config import CellConfig, DataConfig
    from harness.tasks import load_split
    from harness.tasks.registry import resolve_task

    task = resolve_task("emotion")
    rows = load_split(task, DataConfig(), "test", 10, 0)
    everything = load_split(task, DataConfig(), "test", None)
    picked = sorted(random.Random("emotion/test/0").sample(range(len(everything)), 10))
    assert [r["text"] for r in rows] == [everything[i]["text"] for i in picked]
    assert CellConfig(model="tiny-bert", method="lora", task="emotion").data.source is None
