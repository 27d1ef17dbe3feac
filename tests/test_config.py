"""Cell ids are stable: a setting added later enters the id only when it is set. Numbers that are
not settings (NaN, infinity, seeds numpy cannot take) and files over the size cap are refused."""

from __future__ import annotations

import math
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from harness.config import MAX_SEED, CellConfig, finite_values, read_yaml_mapping
from harness.errors import ConfigError


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


def test_ids_through_the_edge_are_those_from_before_the_registries_left_the_config(tmp_path, monkeypatch) -> None:
    """A bundled task's held-out split and a defined task's normalised definition enter the id at
    harness.cell.resolve now (config.py imports no registry): the ids are those of 5d4df92, by
    every path: a cell file, and a CellConfig built in code once its cell is planned."""
    from harness.cell import prepare_cell
    from harness.cell.resolve import parse_cell_config

    billsum = {"model": "tiny-t5", "method": "lora", "task": "billsum", "output_dir": str(tmp_path)}
    assert parse_cell_config(billsum).cell_id == "54d89fadfa72dad4"
    assert parse_cell_config(billsum).data.held_out == "validation: 10% of train (seed 'billsum/validation')"
    assert prepare_cell(CellConfig(**billsum)).config.cell_id == "54d89fadfa72dad4"
    # a defined task on local files: the same id as then once the files' sha256 (recorded since
    # results follow their data) is left out; with them, a new cell per content
    (tmp_path / "a.csv").write_text("text,label\nfine,pos\n")
    (tmp_path / "b.csv").write_text("text,label\nbad,neg\n")
    files = {"source": {"files": {"train": "a.csv", "test": "b.csv"}}}
    monkeypatch.chdir(tmp_path)

    def id_without_hashes(config: CellConfig) -> str:
        assert config.data.source is not None and set(config.data.source.sha256 or ()) == {"train", "test"}
        source = config.data.source.model_copy(update={"sha256": None})
        return config.model_copy(update={"data": config.data.model_copy(update={"source": source})}).cell_id

    tweets = {
        "model": "tiny-bert",
        "method": "lora",
        "task": "tweets",
        "data": files,
        "task_definition": {"kind": "classification", "labels": ["neg", "pos"]},
    }
    assert id_without_hashes(parse_cell_config(tweets)) == "9b5da5edc7c01c49" != parse_cell_config(tweets).cell_id
    answers = {
        "model": "tiny-t5",
        "method": "lora",
        "task": "qa",
        "data": files,
        "task_definition": {"kind": "generation", "metric": "exact_match"},
    }
    assert id_without_hashes(parse_cell_config(answers)) == "709a22b9935549f1"


# ---------------------------------------------------------------- numbers that are not settings

CELL = {"model": "tiny-bert", "method": "lora", "task": "emotion"}


def refusal(data: dict) -> str:
    from harness.cell.resolve import parse_cell_config

    with pytest.raises(ConfigError) as info:
        parse_cell_config(data)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train": {"learning_rate": math.inf}}, "train.learning_rate: Input should be a finite number"),
        ({"train": {"learning_rate": math.nan}}, "train.learning_rate: Input should be a finite number"),
        ({"train": {"epochs": math.inf}}, "train.epochs: Input should be a finite number"),
        ({"train": {"epochs": 1e300}}, "train.epochs: Input should be less than or equal to 1000000"),
        ({"train": {"weight_decay": -math.inf}}, "train.weight_decay: Input should be a finite number"),
        ({"train": {"max_grad_norm": math.inf}}, "train.max_grad_norm: Input should be a finite number"),
        ({"train": {"adam_betas": [0.9, math.nan]}}, "train.adam_betas.1: Input should be a finite number"),
        ({"telemetry": {"interval_s": math.inf}}, "telemetry.interval_s: Input should be a finite number"),
        ({"method_args": {"lora_alpha": math.nan}}, "method_args: lora_alpha: nan is not a finite number"),
        ({"method_args": {"lora_dropout": -math.inf}}, "method_args: lora_dropout: -inf is not a finite number"),
        ({"method_args": {"rank_pattern": {"q": [1.0, math.inf]}}}, "rank_pattern.q[1]: inf is not a finite"),
        ({"model_args": {"scale": math.inf}}, "model_args: scale: inf is not a finite number"),
        ({"seed": 2**70}, "seed 1180591620717411303424 is out of range: seeds are 0 .. 4,294,967,295"),
        ({"seed": MAX_SEED + 1}, "is out of range"),
        ({"seed": -1}, "seed -1 is out of range"),
    ],
)
def test_numbers_that_are_not_finite_or_not_representable_are_refused(changes: dict, message: str) -> None:
    """`.inf`/`.nan` trained a broken model to "success"; 1e300 epochs and seed 2**70 failed only
    at run time (an infinite step count, numpy's seed range)."""
    assert message in refusal({**CELL, **changes})


def test_the_largest_seed_numpy_takes_is_accepted_and_ids_do_not_move() -> None:
    from harness.cell.resolve import parse_cell_config

    assert parse_cell_config({**CELL, "seed": MAX_SEED}).seed == 2**32 - 1
    assert CellConfig(**CELL, method_args={"lora_alpha": 16.0, "target_modules": ["q"]}).method_args["lora_alpha"] == 16
    # the pinned id of the first test above, through the same validators
    before = {"warmup_ratio": 0.06, "group_by_length": True}
    assert CellConfig(**CELL, train=before, seed=0).cell_id == "cd3a9eda91dbcd25"


def test_a_deep_method_args_value_is_checked_without_recursion() -> None:
    fine: object = 1.5
    bad: object = math.nan
    for _ in range(100_000):
        fine, bad = [fine], {"k": bad}
    with pytest.raises(ValueError, match=r"^bad\.k\.k.*characters\): nan is not a finite number"):
        finite_values({"fine": fine, "bad": bad})


# ---------------------------------------------------------------- sizes before reading


def _measured(action) -> tuple[float, float]:
    """(seconds, peak MiB of Python allocations) of a refusal."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            action()
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    assert "\n" not in str(info.value)
    return seconds, peak


def test_a_file_over_the_cap_is_refused_by_its_size_before_a_byte_is_read(tmp_path: Path) -> None:
    """An 8 GB (sparse) cell file ended in a MemoryError: it was read whole, then measured."""
    huge = tmp_path / "cell.yaml"
    with huge.open("wb") as handle:
        handle.truncate(8 << 30)
    seconds, peak = _measured(lambda: read_yaml_mapping(huge, what="config file"))
    assert seconds < 0.5 and peak < 5, (seconds, peak)
    with pytest.raises(ConfigError, match=r"8,589,934,592 bytes, larger than 1024 KiB"):
        read_yaml_mapping(huge, what="config file")


def test_a_file_that_reports_no_size_is_read_no_further_than_the_cap() -> None:
    """/proc files report size 0 (so does a file that grows after the stat): at most cap + 1 bytes."""
    from harness.safeyaml import YamlRefused, read_bounded

    status = Path(f"/proc/{os.getpid()}/status")
    if not status.is_file() or status.stat().st_size:
        pytest.skip("no procfs")
    with pytest.raises(YamlRefused, match="more than 100 bytes"):
        read_bounded(status, limit=100)
