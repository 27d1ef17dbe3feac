"""The quality table's Forgetting column (data.forgetting): shown only when some cell has it; a
classification cell says why it has no figure instead of showing one."""

from __future__ import annotations

import pytest

from harness.report.load import row_from_flat, row_from_result
from harness.report.tables import group_rows, quality_table
from harness.result import Forgetting, Result


def _row(method: str, seed: int, forgetting: float | None = None, why: str | None = None):
    config = {"model": "tiny-llama", "method": method, "task": "billsum", "seed": seed}
    row = row_from_flat(cell_id=f"{method}{seed}", status="success", config=config, flat={"rouge1": 0.2})
    row.forgetting, row.forgetting_not_applicable = forgetting, why
    return row


def test_no_column_without_forgetting():
    table = quality_table(group_rows([_row("lora", 0), _row("lora", 1)]), "rouge")
    assert table is not None and "Forgetting" not in table.display.columns


def test_the_column_shows_the_mean_over_seeds():
    table = quality_table(group_rows([_row("lora", 0, 0.25), _row("lora", 1, 0.35), _row("ia3", 0)]), "rouge")
    assert table is not None
    shown = dict(zip(table.display["Method"], table.display["Forgetting"]))
    assert shown["lora"].startswith("0.3000 ± ") and shown["ia3"] == "—"
    assert "Forgetting (data.forgetting, peft's metric)" in table.note
    assert table.data.loc[table.data["method"] == "lora", "forgetting_mean"].item() == pytest.approx(0.3)


def test_a_classification_cell_shows_not_applicable():
    config = {"model": "tiny-bert", "method": "lora", "task": "emotion", "seed": 0}
    result = Result(
        cell_id="c0",
        status="success",
        config=config,
        metrics={"accuracy": 0.5, "f1_macro": 0.4},
        forgetting=Forgetting(sample="wikitext-103-test", max_tokens=768, not_applicable="classification head"),
    )
    row = row_from_result(result)
    assert row.forgetting is None and row.forgetting_not_applicable == "classification head"
    table = quality_table(group_rows([row]), "classification")
    assert table is not None and table.display["Forgetting"].tolist() == ["n/a (classification head)"]
