"""A diverged run is never a success: a non-finite or exploded training loss stops the loop at
that step, and the cell ends ``diverged`` with the step, the loss and the last finite loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.result import load_result
from harness.train.divergence import EXPLOSION_RATIO, MIN_REFERENCE, check_divergence


def test_the_rule_lets_ordinary_noise_and_tiny_first_losses_pass() -> None:
    # a noisy run: up and down by half its first loss, never near 100x
    noisy = [2.3, 2.5, 1.9, 3.1, 2.2, 1.5, 3.4, 0.9, 2.8]
    history: list[tuple[int, float]] = []
    for step, loss in enumerate(noisy, start=1):
        assert check_divergence(step, loss, history) is None, (step, loss)
        history.append((step, loss))
    # a model that already fits its task: 0.01, then an ordinary batch costs it 5 nats
    assert check_divergence(2, 5.0, [(1, 0.01)]) is None
    # ... but not 100 nats: the reference is floored at MIN_REFERENCE, not ignored
    tripped = check_divergence(2, EXPLOSION_RATIO * MIN_REFERENCE * 1.01, [(1, 0.01)])
    assert tripped is not None and tripped.rule == "explosion" and tripped.last_finite_loss == 0.01
    # the reference is the mean of the first steps only: a later low loss does not lower it
    first = [(s, 2.0) for s in range(1, 6)] + [(s, 0.001) for s in range(6, 50)]
    assert check_divergence(50, 150.0, first) is None
    # the first step is judged on finiteness alone, and a non-finite loss always trips
    assert check_divergence(1, 1e9, []) is None
    for bad in (math.nan, math.inf, -math.inf):
        found = check_divergence(1, bad, [])
        assert found is not None and found.rule == "non-finite" and found.last_finite_loss is None


def test_an_exploding_loss_ends_the_cell_diverged_at_that_step(make_cell) -> None:
    """tiny-llama at learning_rate 1e6: 1.84, then ~1.3e7 at step 2 (finite); it used to end success."""
    from harness.cell import run_cell

    config = make_cell("tiny-llama", "lora", "emotion", train={"learning_rate": 1e6, "checkpoint_every": 1})
    result = run_cell(config)
    assert result.status == "diverged", (result.status, result.efficiency.loss_history)
    divergence = result.divergence
    assert divergence is not None and divergence.rule == "explosion" and divergence.step == 2
    assert divergence.loss > EXPLOSION_RATIO * divergence.reference and math.isfinite(divergence.loss)
    assert divergence.last_finite_loss == pytest.approx(1.84, abs=0.05)
    assert result.error.startswith("TrainingDiverged: training diverged at step 2: loss ")
    assert result.traceback is None  # an outcome of the settings, not a fault
    # stopped at once: one optimizer step applied, the exploded loss in the curve, nothing scored or saved
    assert result.efficiency.train_steps == 1
    assert [step for step, _ in result.efficiency.loss_history] == [1, 2]
    assert result.metrics == {} and "adapter" not in result.artifacts
    folder = Path(config.output_dir)
    on_disk = load_result(folder)
    assert on_disk.status == "diverged" and on_disk.divergence == divergence
    assert not (folder / "checkpoints").exists()  # it would only lead to the same divergence


def test_a_nan_loss_stops_training_at_once(make_cell) -> None:
    """tiny-bert at learning_rate 1e30 (finite, so the plan takes it): step 1's update overflows
    the adapter and step 2's loss is NaN. It used to train on to max_steps and end success."""
    from harness.cell import run_cell

    config = make_cell("tiny-bert", "lora", "emotion", train={"learning_rate": 1e30, "max_steps": 50})
    result = run_cell(config)
    assert result.status == "diverged", (result.status, result.efficiency.loss_history)
    divergence = result.divergence
    assert divergence is not None and divergence.rule == "non-finite" and divergence.step == 2
    assert math.isnan(divergence.loss)
    assert divergence.last_finite_loss == pytest.approx(1.76, abs=0.05)
    assert result.efficiency.train_steps == 1  # not 50
    assert result.efficiency.loss_history == [(1, divergence.last_finite_loss)]  # no NaN in the curve
    assert "loss nan" in result.error and "last finite loss 1.76" in result.error
    assert result.metrics == {}
    # result.json reads back (the NaN of divergence.loss included)
    raw = json.loads((Path(config.output_dir) / "result.json").read_text())
    assert raw["status"] == "diverged" and raw["divergence"]["step"] == 2
