"""The report's compute-cost table: per (task, model, method), per sweep stage, for the matrix."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.report.cost import cost_table
from harness.report.load import row_from_flat


def _row(method: str, seed: int, device_s: float | None, stage: str | None = None):
    config = {"model": "tiny-bert", "method": method, "task": "emotion", "seed": seed}
    row = row_from_flat(cell_id=f"{method}{seed}{stage}", status="success", config=config, flat={})
    row.device_s, row.cost_measure, row.stage = device_s, "core_seconds" if device_s else None, stage
    return row


def test_a_sweeps_cost_is_its_grid_and_its_seeds_against_the_seeds_alone():
    seeds = [_row("lora", s, 100.0) for s in range(3)] + [_row("zeroshot", 0, 10.0)]
    grid = [_row("lora", 0, 90.0, "select") for _ in range(7)]
    table = cost_table(seeds, grid)
    assert table is not None
    lora, zeroshot, total = table.data.to_dict("records")
    assert (lora["grid_points"], lora["grid_device_s"], lora["seeds_device_s"]) == (7, 630.0, 300.0)
    assert lora["vs_untuned"] == pytest.approx(930 / 300)
    assert pd.isna(zeroshot["vs_untuned"]) and zeroshot["device_s"] == 10.0  # not tuned: no ratio
    assert total["method"] == "—" and total["device_s"] == 940.0 and total["vs_untuned"] == pytest.approx(940 / 310)
    assert table.display.iloc[0]["Measure"] == "core-s" and table.display.iloc[0]["vs untuned"] == "×3.10"


def test_no_recorded_cost_means_no_table():
    assert cost_table([_row("lora", 0, None)], []) is None


def test_a_real_results_cost_reaches_its_row(make_cell):
    from harness.cell import run_cell
    from harness.report.load import row_from_result

    result = run_cell(make_cell("tiny-bert", "lora", "emotion", train={"max_steps": 1}))
    row = row_from_result(result)
    assert result.efficiency.cost is not None
    assert row.device_s == result.efficiency.cost.device_s > 0 and row.cost_measure == "core_seconds"
