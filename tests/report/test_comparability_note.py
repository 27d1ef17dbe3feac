"""A report table says when its cells ran under different package versions or from a dirty tree."""

from __future__ import annotations

from harness.report.load import row_from_flat
from harness.report.tables import comparability_note, group_rows, quality_table


def _row(seed: int, transformers: str, dirty: bool | None = False):
    config = {"model": "tiny-bert", "method": "lora", "task": "emotion", "seed": seed}
    row = row_from_flat(cell_id=f"c{seed}", status="success", config=config, flat={"accuracy": 0.5})
    row.packages, row.git_dirty = {"torch": "2.13.0", "transformers": transformers}, dirty
    return row


def test_one_environment_is_comparable_and_a_mixed_one_is_flagged():
    assert comparability_note(group_rows([_row(0, "5.23.0"), _row(1, "5.23.0", None)])) == ""
    mixed = comparability_note(group_rows([_row(0, "5.23.0"), _row(1, "5.24.0"), _row(2, "5.24.0", True)]))
    assert "transformers 5.23.0 (1 cells) / 5.24.0 (2 cells)" in mixed and "torch" not in mixed
    assert "1 of 3 cells ran from a harness tree with uncommitted changes" in mixed
    table = quality_table(group_rows([_row(0, "5.23.0"), _row(1, "5.24.0")]), "classification")
    assert table is not None and "Not comparable as run" in table.note


def test_a_real_result_carries_its_environment(make_cell):
    from harness.cell import run_cell
    from harness.report.load import row_from_result

    config = make_cell("tiny-bert", "lora", "emotion", train={"max_steps": 1})
    row = row_from_result(run_cell(config))
    assert row.packages["torch"].startswith("2.13.0") and row.git_dirty in (True, False, None)
