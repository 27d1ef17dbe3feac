"""Cell ids are stable: a setting added later enters the id only when it is set."""

from __future__ import annotations

from harness.config import CellConfig


def test_cell_ids_of_configs_from_before_packing_and_compile_are_unchanged() -> None:
    base = dict(model="tiny-bert", method="lora", task="emotion")
    # the id this config had before train.packing and train.compile existed (commit dfeff3a)
    # (then the defaults were a 6 % warmup and length-grouped batches)
    before = {"warmup_ratio": 0.06, "group_by_length": True}
    assert CellConfig(**base, train=before).cell_id == "cd3a9eda91dbcd25"
    assert CellConfig(**base, train=before | {"packing": False, "compile": False}).cell_id == "cd3a9eda91dbcd25"
    assert CellConfig(**base, train=before | {"packing": True}).cell_id != "cd3a9eda91dbcd25"
    assert CellConfig(**base, train={"compile": True}).cell_id != CellConfig(**base, train={"packing": True}).cell_id


def test_cells_at_the_defaults_from_before_no_warmup_and_random_batches_are_other_cells() -> None:
    # what they ran is not what the defaults now run: their results must not be reused
    base = dict(model="tiny-bert", method="lora", task="emotion")
    assert CellConfig(**base).cell_id != "cd3a9eda91dbcd25"
    assert CellConfig(**base, train={"warmup_ratio": 0.06}).cell_id != CellConfig(**base).cell_id
    assert CellConfig(**base, train={"group_by_length": True}).cell_id != CellConfig(**base).cell_id
