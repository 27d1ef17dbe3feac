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


def test_ids_through_the_edge_are_those_from_before_the_registries_left_the_config(tmp_path) -> None:
    """A bundled task's held-out split and a defined task's normalised definition enter the id at
    harness.cell.resolve now (config.py imports no registry): the ids are those of 5d4df92, by
    every path: a cell file, and a CellConfig built in code once its cell is planned."""
    from harness.cell import prepare_cell
    from harness.cell.resolve import parse_cell_config

    billsum = {"model": "tiny-t5", "method": "lora", "task": "billsum", "output_dir": str(tmp_path)}
    assert parse_cell_config(billsum).cell_id == "54d89fadfa72dad4"
    assert parse_cell_config(billsum).data.held_out == "validation: 10% of train (seed 'billsum/validation')"
    assert prepare_cell(CellConfig(**billsum)).config.cell_id == "54d89fadfa72dad4"
    files = {"source": {"files": {"train": "a.csv", "test": "b.csv"}}}
    tweets = {
        "model": "tiny-bert",
        "method": "lora",
        "task": "tweets",
        "data": files,
        "task_definition": {"kind": "classification", "labels": ["neg", "pos"]},
    }
    assert parse_cell_config(tweets).cell_id == "9b5da5edc7c01c49"
    answers = {
        "model": "tiny-t5",
        "method": "lora",
        "task": "qa",
        "data": files,
        "task_definition": {"kind": "generation", "metric": "exact_match"},
    }
    assert parse_cell_config(answers).cell_id == "709a22b9935549f1"
