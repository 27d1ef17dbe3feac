"""Cell ids are stable: a setting added later enters the id only when it is set."""

from __future__ import annotations

from harness.config import CellConfig


def test_cell_ids_of_configs_from_before_packing_and_compile_are_unchanged() -> None:
    base = dict(model="tiny-bert", method="lora", task="emotion")
    # the id this config had before train.packing and train.compile existed (commit dfeff3a)
    assert CellConfig(**base).cell_id == "cd3a9eda91dbcd25"
    assert CellConfig(**base, train={"packing": False, "compile": False}).cell_id == "cd3a9eda91dbcd25"
    assert CellConfig(**base, train={"packing": True}).cell_id != "cd3a9eda91dbcd25"
    assert CellConfig(**base, train={"compile": True}).cell_id != CellConfig(**base, train={"packing": True}).cell_id
