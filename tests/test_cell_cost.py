"""A cell's compute cost in result.json: core-seconds on a CPU, GPU-seconds on a GPU, per phase."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from harness.cell.measure import compute_cost
from harness.result import Efficiency, PhaseStats, RankStats, Result


def _result(ranks: list[RankStats] | None = None) -> Result:
    phases = {
        "load": PhaseStats(wall_s=2.0, cpu_s=1.5),
        "train": PhaseStats(wall_s=10.0, cpu_s=18.0),
        "eval": PhaseStats(wall_s=3.0, cpu_s=2.5),
    }
    efficiency = Efficiency(phases=phases, ranks=ranks or [], job_energy_j=None)
    return Result(cell_id="c", status="success", config={}, efficiency=efficiency)


def test_on_a_gpu_each_process_holds_its_device_for_the_phase():
    cost = compute_cost(_result(), SimpleNamespace(type="cuda"), world_size=4)
    assert cost.measure == "gpu_seconds"
    assert cost.phases == {"load": 8.0, "train": 40.0, "eval": 3.0}  # eval runs on rank 0 alone
    assert cost.device_s == 51.0 and cost.wall_s == 15.0


def test_on_a_cpu_the_processes_cpu_time_counts_every_ranks_training():
    single = compute_cost(_result(), SimpleNamespace(type="cpu"), world_size=1)
    assert single.measure == "core_seconds" and single.phases == {"load": 1.5, "train": 18.0, "eval": 2.5}
    ranks = [RankStats(rank=i, node=0, host="h", train_cpu_s=cpu) for i, cpu in enumerate((18.0, 16.0))]
    two = compute_cost(_result(ranks), SimpleNamespace(type="cpu"), world_size=2)
    assert two.phases == {"load": 3.0, "train": 34.0, "eval": 2.5} and two.device_s == 39.5


def test_a_real_cell_records_its_core_seconds(make_cell):
    from harness.cell import run_cell

    result = run_cell(make_cell("tiny-bert", "lora", "emotion"))
    assert result.status == "success", result.traceback
    cost = result.efficiency.cost
    assert cost is not None and cost.measure == "core_seconds" and set(cost.phases) == {"load", "train", "eval"}
    train = result.efficiency.phases["train"]
    assert cost.phases["train"] == train.cpu_s > 0
    assert train.cpu_s <= train.wall_s * (os.cpu_count() or 1) * 1.05 + 0.05  # no more than every core, all along
    assert cost.device_s == pytest.approx(sum(cost.phases.values()))
