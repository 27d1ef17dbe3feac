"""Sweeps in the matrix: grids, stage-1 expansion on the selection split, the choice (ties,
failed points), stage-2 expansion once the grid has finished, and refusals at plan time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.matrix import matrix_from_dict
from harness.matrix.schema import LogGrid
from harness.matrix.sweep import Outcome, choose
from harness.names import FINAL_STAGE, SELECT_STAGE
from harness.result import RESULT_FILE, CorruptState, Result, ResultFile
from harness.result import write_result as save_result

LR = "train.learning_rate"


def sweep_matrix(tmp_path: Path, **changes) -> dict:
    data = {
        "name": "sweep",
        "output_dir": str(tmp_path / "out"),
        "executor": {"kind": "debug"},
        "models": ["tiny-bert"],
        "methods": ["lora", "ia3"],
        "tasks": ["emotion"],
        "seeds": [3, 4, 5],
        "defaults": {"train": {"max_steps": 2}},
        "sweep": [
            {"values": {LR: {"log": [1.0e-4, 1.0e-2], "n": 3}}},
            {"match": {"method": "ia3"}, "values": {LR: [1.0e-2, 3.0e-2]}},
        ],
        "select": {"metric": "f1_macro", "split": "validation", "mode": "max"},
    }
    data.update(changes)
    return data


def write_result(cell, status: str = "success", **metrics: float) -> None:
    """What the cell runner leaves behind: a whole result (the selection reads it validated)."""
    config = cell.config.model_dump(mode="json")
    save_result(cell.folder, Result(cell_id=cell.cell_id, status=status, config=config, metrics=metrics))


def test_log_grid_is_evenly_spaced_in_log_scale_with_both_ends():
    assert LogGrid(log=(1e-5, 1e-2), n=7).values() == [1e-05, 3.16e-05, 0.0001, 0.000316, 0.001, 0.00316, 0.01]


def test_stage_one_is_the_grid_on_the_first_seed_scored_on_validation(tmp_path):
    matrix = matrix_from_dict(sweep_matrix(tmp_path))
    stage1 = [c for c in matrix.cells if c.stage == SELECT_STAGE]
    assert {c.seed for c in stage1} == {3}
    lora = [c.config.train.learning_rate for c in stage1 if c.method == "lora"]
    ia3 = [c.config.train.learning_rate for c in stage1 if c.method == "ia3"]
    assert lora == [1e-4, 1e-3, 1e-2] and ia3 == [1e-2, 3e-2]  # the scoped entry replaces the key
    assert all(c.config.data.eval_split == "validation" for c in stage1)
    assert len({c.cell_id for c in stage1}) == 5
    # stage 2 does not exist until the grid has finished
    assert not [c for c in matrix.cells if c.stage == FINAL_STAGE]
    assert [s.state for s in matrix.selections] == ["waiting", "waiting"]


def test_stage_two_runs_the_best_point_on_every_seed_on_test(tmp_path):
    data = sweep_matrix(tmp_path)
    matrix = matrix_from_dict(data)
    lora = [c for c in matrix.cells if c.method == "lora"]
    for cell, f1 in zip(lora, (0.30, 0.55, 0.41)):
        write_result(cell, f1_macro=f1)
    again = matrix_from_dict(data)
    lora_selection = next(s for s in again.selections if s.method == "lora")
    assert lora_selection.state == "selected" and lora_selection.choice.point == {LR: 1e-3}
    finals = [c for c in again.cells if c.stage == FINAL_STAGE]
    assert [(c.method, c.seed) for c in finals] == [("lora", 3), ("lora", 4), ("lora", 5)]
    assert all(c.config.train.learning_rate == 1e-3 and c.config.data.eval_split == "test" for c in finals)
    assert all(c.point == {LR: 1e-3} for c in finals)
    # the selected seed-3 cell is not the grid point: it is scored on another split
    assert finals[0].cell_id != lora[1].cell_id
    assert next(s for s in again.selections if s.method == "ia3").state == "waiting"


def test_failed_points_are_left_out_and_ties_go_to_the_first_in_grid_order():
    outcomes = [Outcome({LR: 1e-4}, "success", 0.5), Outcome({LR: 1e-3}, "oom"), Outcome({LR: 1e-2}, "success", 0.5)]
    choice = choose(outcomes, "max")
    assert choice.point == {LR: 1e-4} and choice.ties == [{LR: 1e-2}]
    assert [o.point for o in choice.failed] == [{LR: 1e-3}]
    assert "tied with" in choice.describe() and "1 failed point(s) left out" in choice.describe()
    assert choose([Outcome({LR: 1e-4}, "success", 0.2), Outcome({LR: 1e-3}, "success", 0.1)], "min").point == {LR: 1e-3}
    assert choose([Outcome({LR: 1e-4}, "waiting"), Outcome({LR: 1e-3}, "success", 0.1)], "max") is None
    edge = choose(
        [Outcome({LR: 1e-4}, "success", 0.1), Outcome({LR: 1e-3}, "success", 0.2), Outcome({LR: 1e-2}, "success", 0.3)],
        "max",
    )
    assert edge.edges == {LR: "upper"} and "at the upper edge of the train.learning_rate grid" in edge.describe()
    assert choice.edges == {LR: "lower"}  # 1e-4 of 1e-4..1e-2
    nothing = choose([Outcome({LR: 1e-4}, "failed"), Outcome({LR: 1e-3}, "timeout")], "max")
    assert nothing.point is None and "every grid point failed" in nothing.reason


def test_a_sweep_whose_every_point_failed_has_no_stage_two(tmp_path):
    data = sweep_matrix(tmp_path, methods=["lora"])
    for cell in matrix_from_dict(data).cells:
        write_result(cell, status="failed")
    matrix = matrix_from_dict(data)
    assert matrix.selections[0].state == "failed"
    assert not [c for c in matrix.cells if c.stage == FINAL_STAGE]
    assert "every grid point failed (3)" in matrix.selections[0].describe()


def test_a_point_the_scheduler_saw_die_counts_as_failed(tmp_path):
    """An out-of-memory kill leaves no result.json: the scheduler's word ends that point."""
    data = sweep_matrix(tmp_path, methods=["lora"])
    matrix = matrix_from_dict(data)
    points = matrix.selections[0].points
    write_result(points[0], f1_macro=0.2)
    write_result(points[1], f1_macro=0.1)
    assert matrix_from_dict(data).selections[0].state == "waiting"
    again = matrix_from_dict(data)
    added = again.resolve_selections({points[2].cell_id: "oom"})
    assert [c.seed for c in added] == [3, 4, 5] and all(c.config.train.learning_rate == 1e-4 for c in added)


def test_methods_that_do_not_train_are_not_swept(tmp_path):
    data = sweep_matrix(tmp_path, models=["tiny-t5"], methods=["zeroshot", "lora"], seeds=[0])
    matrix = matrix_from_dict(data)
    zeroshot = [c for c in matrix.cells if c.method == "zeroshot"]
    assert len(zeroshot) == 1 and zeroshot[0].stage is None
    assert any("zeroshot does not train" in w for w in matrix.warnings)


def test_several_keys_make_a_product(tmp_path):
    data = sweep_matrix(tmp_path, methods=["lora"], sweep=[{"values": {LR: [1e-4, 1e-3], "method_args.r": [4, 8, 16]}}])
    stage1 = matrix_from_dict(data).selections[0].points
    assert [(c.config.train.learning_rate, c.config.method_args["r"]) for c in stage1] == [
        (1e-4, 4),
        (1e-4, 8),
        (1e-4, 16),
        (1e-3, 4),
        (1e-3, 8),
        (1e-3, 16),
    ]


def test_billsum_selects_on_a_held_out_slice_of_train(tmp_path):
    data = sweep_matrix(tmp_path, models=["tiny-t5"], methods=["lora"], tasks=["billsum"], select={"metric": "rougeL"})
    stage1 = matrix_from_dict(data).selections[0].points
    assert all(c.config.data.eval_split == "validation" for c in stage1)
    from harness.config import DataConfig
    from harness.tasks import load_split, resolve_task

    task = resolve_task("billsum")
    train, held_out = load_split(task, DataConfig(), "train", None), load_split(task, DataConfig(), "validation", None)
    assert (len(train), len(held_out)) == (90, 10)
    assert not {r["text"] for r in train} & {r["text"] for r in held_out}
    # seeded on its own: the same slice whatever the cell's seed or sample size
    assert load_split(task, DataConfig(), "validation", None, seed=7) == held_out


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sweep": [{"values": {"train.lr": [1e-3]}}]}, "lr"),
        ({"sweep": [{"values": {LR: []}}]}, "empty list"),
        ({"sweep": [{"values": {LR: [1e-3, 1e-3]}}]}, "duplicate values"),
        ({"sweep": [{"values": {LR: {"log": [1e-2, 1e-4], "n": 3}}}]}, "0 < low < high"),
        ({"sweep": [{"values": {"seed": [1, 2]}}]}, "cannot be set here"),
        ({"sweep": [{"match": {"method": "lorra"}, "values": {LR: [1e-3]}}]}, "unknown method 'lorra'"),
        ({"select": {"split": "test"}}, "selection never sees the test split"),
        (
            {"tasks": ["billsum"], "models": ["tiny-t5"]},
            "task billsum does not produce it; its metrics: rouge1, rouge2, rougeL",
        ),
        ({"sweep": []}, "select: needs a sweep section"),
        ({"defaults": {"train": {"max_steps": 2}, "data": {"eval_split": "validation"}}}, "is the split"),
    ],
)
def test_bad_sweeps_are_refused_in_one_line(tmp_path, changes, message):
    with pytest.raises(ConfigError) as error:
        matrix_from_dict(sweep_matrix(tmp_path, **changes))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_metric_per_task(tmp_path):
    data = sweep_matrix(
        tmp_path,
        models=["tiny-t5"],
        methods=["lora"],
        tasks=["emotion", "billsum"],
        select={"metric": {"emotion": "accuracy"}},
    )
    metrics = {s.task: s.metric for s in matrix_from_dict(data).selections}
    assert metrics == {"emotion": "accuracy", "billsum": "rougeL"}  # billsum: its headline


def test_a_matrix_file_extends_another(tmp_path):
    import yaml

    from harness.matrix import load_matrix

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(sweep_matrix(tmp_path, sweep=[], select=None)))
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\nseeds: [7]\n")
    child = load_matrix(tmp_path / "child.yaml")
    assert child.name == "child" and {c.seed for c in child.cells} == {7} and not child.selections
    (tmp_path / "loop.yaml").write_text("extends: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="a cycle"):
        load_matrix(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="matrix file not found"):
        load_matrix(tmp_path / "orphan.yaml")


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("[]", "corrupt: result.json: a JSON array, not an object"),
        ("metrics", "corrupt: result.json: metrics: Input should be a valid dictionary"),
        ("directory", "corrupt: result.json: a directory, not a file"),
    ],
)
def test_a_corrupt_grid_point_is_left_out_as_corrupt(tmp_path, content, line):
    """A stage-1 result.json that is not a result: the point is a failed one ("corrupt"), the
    others are chosen from, and the matrix still loads (plan, status, --retry-failed read it)."""
    data = sweep_matrix(tmp_path, methods=["lora"])
    points = matrix_from_dict(data).selections[0].points
    write_result(points[1], f1_macro=0.4)
    write_result(points[2], f1_macro=0.3)
    target = points[0].folder / RESULT_FILE
    if content == "directory":
        target.mkdir(parents=True)
    elif content == "metrics":
        write_result(points[0], f1_macro=0.9)
        target.write_text(json.dumps({**json.loads(target.read_text()), "metrics": [1]}))
    else:
        target.parent.mkdir(parents=True)
        target.write_text(content)
    selection = matrix_from_dict(data).selections[0]
    assert [o.status for o in selection.outcomes] == ["corrupt", "success", "success"]
    assert selection.choice.point == points[1].point
    assert "1 failed point(s) left out" in selection.describe() and "corrupt" in selection.describe()
    with pytest.raises(CorruptState, match=re.escape(line)):
        ResultFile(points[0].folder).read()
