"""A sweep's stage 2 reuses the stage-1 winner's run for its first seed (harness.cell.reuse): it
evaluates the winner's saved weights on its own split instead of training them again, scores
exactly what a retrained cell scores, records the reuse, and costs its evaluation alone."""

from __future__ import annotations

import pytest
import yaml
from dispatch_helpers import smoke_dict, write_matrix

from harness.dispatch import plan, render_plan, status, submit
from harness.names import FINAL_STAGE, RETRAIN_TAG, REUSE_TAG, SELECT_STAGE
from harness.result import load_result

LR = "train.learning_rate"


def sweep_file(tmp, methods: list[str], select_set: dict | None = None):
    data = smoke_dict(
        tmp / "out", models=["tiny-bert"], methods=methods, seeds=[0, 1], exclude=[], executor={"cluster": "debug"}
    )
    data["defaults"]["train"]["max_steps"] = 2
    data["sweep"] = [{"values": {LR: [1.0e-4, 3.0e-2]}}]
    # an evaluation-only setting for stage 1 alone: it does not stop the reuse
    data["select"] = {"metric": "f1_macro", "split": "validation", "set": select_set or {"data.max_eval_samples": 8}}
    return write_matrix(tmp / "sweep.yaml", data)


def _cells(path):
    report = status(path)
    assert report.finished and {s.status for s in report.states} == {"success"}
    selection = report.matrix.selections[0]
    winner = next(c for c in selection.points if c.point == selection.choice.point)
    finals = sorted((s.cell for s in report.states if s.cell.stage == FINAL_STAGE), key=lambda c: c.seed)
    return selection, winner, finals


@pytest.mark.parametrize(("method", "weights"), [("lora", "adapter"), ("ia3", "adapter"), ("full", "model")])
def test_the_first_seed_evaluates_the_winners_run_and_scores_as_a_retrained_cell(
    tmp_path, monkeypatch, method, weights
):
    from harness.cell import run_cell

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = sweep_file(tmp_path, [method])
    assert "2 stage-1 runs + 1 stage-2 runs (1 first seeds reuse the winner's run) = 3 runs-equivalent" in (
        render_plan(plan(path, params=False), scripts=False)
    )
    report = submit(path)
    assert report.ok and len(report.submitted) == 4
    selection, winner, (first, second) = _cells(path)
    assert selection.retrains == "" and "its first seed evaluates the winner's run (1 train)" in selection.describe()
    assert first.config.tags[REUSE_TAG] == str(winner.folder.absolute())
    trained, reused, other = load_result(winner.folder), load_result(first.folder), load_result(second.folder)

    # the reuse is recorded; the training figures are the winner's; the cost is the evaluation's
    assert reused.reused_from is not None and reused.reused_from.cell_id == winner.cell_id
    assert reused.reused_from.device_s == trained.efficiency.cost.device_s
    assert reused.config["data"]["eval_split"] == "test" and reused.run.eval_examples == 16
    assert reused.efficiency.loss_history == trained.efficiency.loss_history
    assert reused.run.learning_rate == trained.run.learning_rate == selection.choice.point[LR]
    assert reused.efficiency.trainable_params == trained.efficiency.trainable_params > 0
    assert "train" in reused.efficiency.phases and "train" not in reused.efficiency.cost.phases
    assert (first.folder / weights).is_dir() and reused.artifacts[weights] == weights
    # seed 1 trains as before
    assert other.reused_from is None and "train" in other.efficiency.cost.phases
    assert other.efficiency.train_steps == 2

    # the same config run without the reuse, in another folder: the same metrics, exactly
    fresh_tags = {k: v for k, v in first.config.tags.items() if k != REUSE_TAG}
    fresh = first.config.model_copy(update={"tags": fresh_tags, "output_dir": tmp_path / "fresh"})
    assert fresh.cell_id == first.cell_id
    retrained = run_cell(fresh)
    assert retrained.status == "success" and retrained.reused_from is None
    assert reused.metrics == retrained.metrics and reused.reports == retrained.reports
    assert retrained.efficiency.loss_history == reused.efficiency.loss_history
    assert (tmp_path / "fresh" / "predictions.jsonl").read_text() == (first.folder / "predictions.jsonl").read_text()

    # the report counts the winner's training once: the grid has it, the reused seed its evaluation
    from harness.report.cost import cost_table
    from harness.report.load import row_from_result

    seeds = [row_from_result(load_result(c.folder)) for c in (first, second)]
    grid = [row_from_result(load_result(c.folder)) for c in selection.points]
    row = cost_table(seeds, grid).data.to_dict("records")[0]
    grid_s = sum(load_result(c.folder).efficiency.cost.device_s for c in selection.points)
    assert row["grid_device_s"] == pytest.approx(grid_s)
    assert row["seeds_device_s"] == pytest.approx(reused.efficiency.cost.device_s + other.efficiency.cost.device_s)
    untuned = row["seeds_device_s"] + trained.efficiency.cost.device_s
    assert row["vs_untuned"] == pytest.approx((grid_s + row["seeds_device_s"]) / untuned)


def test_a_method_whose_saved_state_loses_something_retrains(tmp_path, monkeypatch):
    from harness.methods.registry import resolve_method

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_method("adalora").reload_differs
    path = sweep_file(tmp_path, ["adalora"])
    assert "2 stage-1 runs + 2 stage-2 runs = 4 runs-equivalent" in render_plan(plan(path, params=False), scripts=False)
    assert submit(path).ok
    selection, _, (first, _) = _cells(path)
    assert "adalora's saved weights may not score as the trained model" in selection.retrains
    assert REUSE_TAG not in first.config.tags and "rank allocation is rebuilt" in first.config.tags[RETRAIN_TAG]
    result = load_result(first.folder)
    assert result.reused_from is None and "train" in result.efficiency.cost.phases


def test_select_set_on_a_training_setting_retrains_and_says_which(tmp_path):
    path = sweep_file(tmp_path, ["lora"], {"data.max_train_samples": 8})
    matrix = plan(path, params=False).matrix
    (selection,) = matrix.selections
    assert selection.retrains == "the stage-1 run trained with other settings: data.max_train_samples"
    assert [c.stage for c in matrix.cells] == [SELECT_STAGE, SELECT_STAGE]
    assert "its first seed trains again: the stage-1 run trained with other settings" in selection.describe()


def test_the_winners_config_differs_from_the_first_seeds_in_evaluation_settings_and_tags_only(tmp_path):
    """What stage 1's winner and stage 2's first seed differ in, listed: the evaluation split,
    select.set's evaluation-only settings and the tags."""
    from harness.cell.reuse import differences

    path = sweep_file(tmp_path, ["lora"])
    matrix = plan(path, params=False).matrix
    (selection,) = matrix.selections
    winner = selection.points[0]
    final = selection.build(winner.point)[0]
    dumped = [yaml.safe_load(yaml.safe_dump(c.config.model_dump(mode="json"))) for c in (winner, final)]
    differ = [key for key in differences(*dumped) if not key.startswith("output_dir")]
    assert sorted(differ) == [
        "data.eval_split",
        "data.max_eval_samples",
        "tags.harness.reuses",
        "tags.harness.selected",
        "tags.harness.stage",
        "tags.harness.sweep",
    ]
    assert winner.config.training_identity() == final.config.training_identity()
