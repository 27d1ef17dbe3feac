"""A cell stopped at rungs (successive halving's building block) and continued: the same run as
an uninterrupted one, step by step, with the same cell id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cell import run_cell
from harness.cell.resolve import parse_cell_config
from harness.cell.train import CHECKPOINT_DIR
from harness.dispatch import cell_states
from harness.dispatch.cell_state import ACTIVE, RETRYABLE, SUCCESSFUL
from harness.dispatch.submit import select_cells
from harness.errors import ConfigError
from harness.matrix import Matrix, matrix_from_dict
from harness.result import load_result
from harness.train.checkpoint import latest_checkpoint

STEPS = 12


def _matrix(tmp_path: Path) -> Matrix:
    """One tiny-bert LoRA cell on emotion: 12 steps over 3 epochs of 16 examples, a warmup and a
    cosine decay, so a schedule planned on a rung's steps would show in the losses and rates."""
    return matrix_from_dict(
        {
            "name": "rungs",
            "output_dir": str(tmp_path / "out"),
            "models": ["tiny-bert"],
            "methods": ["lora"],
            "tasks": ["emotion"],
            "seeds": [0],
            "defaults": {
                "train": {
                    "max_steps": STEPS,
                    "batch_size": 4,
                    "learning_rate": 1.0e-2,
                    "warmup_ratio": 0.25,
                    "scheduler": "cosine",
                    "log_every": 1,
                    "progress_bar": False,
                },
                "data": {"max_train_samples": 16, "max_eval_samples": 8, "max_source_tokens": 48},
                "tracking": {"enabled": False},
                "telemetry": {"enabled": False},
            },
        },
        output_dir=tmp_path / "out",
    )


def _rates(cell_dir: Path) -> dict[int, tuple[str, str]]:
    """Each step's (total steps, learning rate) as log.txt logged them (every run of the cell)."""
    found = re.findall(r"step (\d+)/(\d+) loss \S+ lr (\S+)", (cell_dir / "log.txt").read_text())
    return {int(step): (total, lr) for step, total, lr in found}


def test_a_cell_stopped_at_rungs_and_continued_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    matrix = _matrix(tmp_path)
    cell = matrix.cells[0]
    straight_config = parse_cell_config(
        {**cell.config.public_dump(), "output_dir": str(tmp_path / "straight")}, where="test cell"
    )
    assert straight_config.cell_id == cell.cell_id
    straight = run_cell(straight_config)
    assert straight.status == "success" and straight.efficiency.train_steps == STEPS

    first = run_cell(cell.config, stop_at_step=4)
    assert first.status == "paused" and first.cell_id == cell.cell_id
    assert [r.step for r in first.rungs] == [4]
    assert set(first.rungs[0].metrics) == set(straight.metrics) and first.rungs[0].device_s > 0
    assert first.efficiency.loss_history == straight.efficiency.loss_history[:4]
    assert latest_checkpoint(cell.folder / CHECKPOINT_DIR).name == "step-00000004"  # type: ignore[union-attr]
    assert not (cell.folder / "adapter").exists()  # at a rung only the checkpoint is kept
    state = cell_states(matrix).states[0]
    assert state.status == "paused" and state.error is None
    assert cell_states(matrix).counts() == {"paused": 1}
    assert "paused" not in RETRYABLE | SUCCESSFUL | ACTIVE
    chosen, skipped = select_cells(cell_states(matrix), retry_failed=True, force=False, only=None)
    assert chosen == [] and skipped == {"paused at a rung (--force runs it to the end)": 1}  # not a failure

    second = run_cell(cell.config, stop_at_step=8)
    assert second.status == "paused" and second.efficiency.resumed_from_step == 4
    assert [r.step for r in second.rungs] == [4, 8]
    assert second.rungs[0] == first.rungs[0]  # the earlier rung kept as it was
    assert second.rungs[1].device_s > first.rungs[0].device_s  # what the cell has cost so far

    final = run_cell(cell.config)
    assert final.status == "success" and final.cell_id == cell.cell_id == straight.cell_id
    assert final.efficiency.resumed_from_step == 8 and final.efficiency.train_steps == STEPS
    assert [r.step for r in final.rungs] == [4, 8]
    # exactly the uninterrupted run: every step's loss, the metrics, the learning rate at each step
    assert final.efficiency.loss_history == straight.efficiency.loss_history
    assert final.metrics == straight.metrics
    assert _rates(cell.folder) == _rates(tmp_path / "straight")
    assert set(_rates(cell.folder)) == set(range(1, STEPS + 1))
    assert {total for total, _ in _rates(cell.folder).values()} == {str(STEPS)}  # the full budget's schedule
    # the cost counts the rungs' runs; the checkpoints are gone, the weights saved once
    assert final.efficiency.cost.phases["earlier_runs"] == second.rungs[-1].device_s  # type: ignore[union-attr]
    assert not (cell.folder / CHECKPOINT_DIR).exists() and (cell.folder / "adapter").is_dir()
    assert load_result(cell.folder).status == "success"
    assert cell_states(matrix).counts() == {"success": 1}


@pytest.mark.parametrize("stop", [0, STEPS, STEPS + 5])
def test_a_stop_outside_the_budget_is_refused_before_anything_is_written(tmp_path: Path, stop: int) -> None:
    cell = _matrix(tmp_path).cells[0]
    with pytest.raises(
        ConfigError, match=rf"^stop at step {stop}: a rung must lie in 1\.\.11, below the cell's 12 steps$"
    ):
        run_cell(cell.config, stop_at_step=stop)
    assert not cell.folder.exists()


def test_the_job_carries_the_rung_to_the_runner_and_records_the_pause(tmp_path: Path) -> None:
    """The rung is the job's, not the cell's: the same config runs to the rung, then to the end."""
    from harness.dispatch.job import CellJob
    from harness.dispatch.ledger import read_run

    cell = _matrix(tmp_path).cells[0]
    config = cell.config.model_dump(mode="json")
    assert CellJob(time_limit_min=5, stop_at_step=6)(config)["status"] == "paused"
    assert read_run(cell.folder).status == "paused"  # type: ignore[union-attr]
    assert [r.step for r in load_result(cell.folder).rungs] == [6]
    assert CellJob(time_limit_min=5)(config)["status"] == "success"
    result = load_result(cell.folder)
    assert result.efficiency.resumed_from_step == 6 and [r.step for r in result.rungs] == [6]
