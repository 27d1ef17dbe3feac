"""Rows pair on (task, model, method, swept values), never on cell ids."""

from __future__ import annotations

import pytest
from compare_helpers import f1_side, gpu_facts, sample, side

from harness.compare.comparison import compare_sides
from harness.compare.pairing import pair_sides
from harness.compare.sides import sample_from_result
from harness.errors import ConfigError
from harness.result import Result


def _result(config, f1: float) -> Result:
    return Result(
        cell_id=config.cell_id,
        status="success",
        config=config.model_dump(mode="json"),
        metrics={"f1_macro": f1, "accuracy": f1},
        environment={"accelerator": {"type": "cuda", "name": "NVIDIA H100"}, "packages": {"torch": "2.13.0"}},
    )


def test_pairing_survives_a_default_change_that_alters_cell_ids(make_cell):
    """The same three seeds before and after a default changed (max_grad_norm 1.0 -> 0.5): the
    ids differ, the rows pair, and the changed setting is listed."""
    before = [make_cell("tiny-bert", "lora", "emotion", seed=s) for s in range(3)]
    after = [make_cell("tiny-bert", "lora", "emotion", seed=s, train={"max_grad_norm": 0.5}) for s in range(3)]
    assert {c.cell_id for c in before}.isdisjoint(c.cell_id for c in after)
    ref = side("REFERENCE", [sample_from_result(_result(c, 0.8)) for c in before])
    new = side("NEW", [sample_from_result(_result(c, 0.8)) for c in after])
    comparison = compare_sides(new, ref)
    (pair,) = comparison.pairing.pairs
    assert pair.label == "emotion / tiny-bert / lora" and [s.row.seed for s in pair.new] == [0, 1, 2]
    assert not comparison.pairing.only_new and not comparison.pairing.only_ref
    assert [(d.key, d.ref, d.new) for d in comparison.differences] == [("train.max_grad_norm", ["1.0"], ["0.5"])]
    assert comparison.exit_code == 0


def test_rows_on_one_side_only_are_listed_and_swept_values_are_part_of_the_row():
    ref = side("REFERENCE", [sample(0, 0.8), sample(1, 0.8), sample(0, 0.7, method="ia3")])
    new = side("NEW", [sample(0, 0.8), sample(1, 0.8), sample(0, 0.6, model="tiny-llama")])
    pairing = pair_sides(new, ref)
    assert [p.label for p in pairing.pairs] == ["emotion / tiny-bert / lora"]
    assert list(map(str, pairing.only_new)) and len(pairing.only_new) == len(pairing.only_ref) == 1
    swept = sample(0, 0.8)
    swept.row.stage, swept.row.point = "select", {"train.learning_rate": 0.001}
    other = sample(0, 0.8)
    other.row.stage, other.row.point = "select", {"train.learning_rate": 0.01}
    assert swept.key != other.key and swept.key != sample(0, 0.8).key


def test_no_pairable_row_is_bad_input():
    with pytest.raises(ConfigError, match=r"no row of NEW pairs with one of REFERENCE .*emotion / tiny-bert / ia3"):
        compare_sides(f1_side("NEW", {0: 0.8}, method="lora"), f1_side("REFERENCE", {0: 0.8}, method="ia3"))


def test_a_side_without_results_is_bad_input():
    missing = side("NEW", [sample(0, status="missing", facts=gpu_facts())])
    with pytest.raises(ConfigError, match="^NEW has no results"):
        compare_sides(missing, f1_side("REFERENCE", {0: 0.8}))
