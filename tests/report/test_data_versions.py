"""A report never averages results of two versions of a task's data files into one row."""

from __future__ import annotations

from harness.report.load import row_from_flat, separate_data_versions
from harness.report.tables import group_rows


def _row(seed: int, hashes: dict[str, str] | None):
    source = {"files": {"test": "t.csv"}, **({"sha256": hashes} if hashes else {})}
    config = {"model": "tiny-bert", "method": "lora", "task": "reviews", "seed": seed, "data": {"source": source}}
    return row_from_flat(cell_id=f"c{seed}", status="success", config=config, flat={"accuracy": 0.5})


def test_rows_of_two_data_versions_are_two_rows_and_one_version_is_one():
    old, new = {"test": "a" * 64}, {"test": "b" * 64}
    same = separate_data_versions([_row(0, new), _row(1, new)])
    assert [g.task for g in group_rows(same)] == ["reviews"]
    mixed = separate_data_versions([_row(0, old), _row(1, new), _row(2, new), _row(3, None)])
    groups = group_rows(mixed)
    assert len(groups) == 3 and [len(g.rows) for g in groups] == [1, 2, 1]
    assert all(g.task.startswith("reviews [data ") for g in groups)
    assert groups[2].task == "reviews [data unhashed]"
