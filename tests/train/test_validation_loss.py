"""train.eval_every: the loss on the validation split while training, without changing training."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("model", "task"), [("tiny-bert", "emotion"), ("tiny-t5", "billsum")])
def test_validation_loss_is_recorded_and_training_is_unchanged(make_cell, tmp_path, model: str, task: str) -> None:
    from harness.cell import run_cell

    def cell(eval_every: int):
        return make_cell(
            model,
            "lora",
            task,
            output_dir=str(tmp_path / f"{task}-{eval_every}"),
            train={"max_steps": 5, "eval_every": eval_every},
            data={"max_validation_samples": 8},
        )

    plain, watched = run_cell(cell(0)), run_cell(cell(2))
    assert watched.status == "success", watched.error
    steps = [step for step, _ in watched.efficiency.eval_loss_history]
    assert steps == [2, 4, 5]  # every 2 steps and the last one
    assert all(loss > 0 for _, loss in watched.efficiency.eval_loss_history)
    assert plain.efficiency.eval_loss_history == []
    # measuring draws no random numbers and leaves dropout as it was: the same run, step by step
    assert watched.efficiency.loss_history == plain.efficiency.loss_history
    assert watched.metrics == plain.metrics
    assert plain.cell_id != watched.cell_id  # what it records differs, so it is another cell
