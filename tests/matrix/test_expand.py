"""Matrix files: validation as a whole (one-line errors), expansion, ids and folders."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.matrix import load_matrix, matrix_from_dict, model_slug

REPO = Path(__file__).resolve().parents[2]


def base(**changes):
    data = {
        "name": "t",
        "output_dir": "out",
        "models": ["tiny-bert", "tiny-llama"],
        "methods": ["lora", "ia3"],
        "tasks": ["emotion"],
        "seeds": [0, 1],
        "defaults": {"train": {"max_steps": 3}},
    }
    data.update(changes)
    return data


def error_of(data, tmp_path) -> str:
    with pytest.raises(ConfigError) as info:
        matrix_from_dict(data, output_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("name", ["smoke.yaml", "demo.yaml"])
def test_shipped_matrices_load(name, tmp_path):
    matrix = load_matrix(REPO / "jobs" / name, output_dir=tmp_path)
    assert matrix.active and not matrix.warnings


def test_expansion_is_the_product_in_task_model_method_seed_order(tmp_path):
    matrix = matrix_from_dict(base(), output_dir=tmp_path)
    assert [(c.model, c.method, c.seed) for c in matrix.cells] == [
        ("tiny-bert", "lora", 0),
        ("tiny-bert", "lora", 1),
        ("tiny-bert", "ia3", 0),
        ("tiny-bert", "ia3", 1),
        ("tiny-llama", "lora", 0),
        ("tiny-llama", "lora", 1),
        ("tiny-llama", "ia3", 0),
        ("tiny-llama", "ia3", 1),
    ]
    assert all(c.config.train.max_steps == 3 for c in matrix.cells)


def test_cell_ids_are_stable_and_folders_readable(tmp_path):
    one = matrix_from_dict(base(), output_dir=tmp_path / "a")
    two = matrix_from_dict(base(), output_dir=tmp_path / "b")
    assert [c.cell_id for c in one.cells] == [c.cell_id for c in two.cells]  # output_dir is not part of the id
    assert len({c.cell_id for c in one.cells}) == len(one.cells)
    cell = one.cells[0]
    assert cell.folder == tmp_path / "a" / "emotion" / "tiny-bert" / "lora" / f"seed0-{cell.cell_id[:8]}"
    assert cell.config.output_dir == cell.folder
    assert cell.config.tags["harness.matrix"] == "t"
    changed = matrix_from_dict(base(defaults={"train": {"max_steps": 4}}), output_dir=tmp_path / "a")
    assert changed.cells[0].cell_id != cell.cell_id


def test_model_slug():
    assert model_slug("tiny-bert") == "tiny-bert"
    assert model_slug("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB--SmolLM2-135M"
    assert model_slug("weird name!") == "weird_name"


def test_axis_entries_overrides_in_order_and_dotted_keys(tmp_path):
    data = base(
        methods=["lora", {"name": "ia3", "set": {"train.learning_rate": 3e-3}, "resources": {"time_min": 30}}],
        models=[{"name": "tiny-bert", "set": {"method_args": {"r": 4}}, "resources": {"mem_gb": 8}}, "tiny-llama"],
        overrides=[
            {
                "match": {"model": "tiny-bert", "method": "lora"},
                "set": {"method_args": {"lora_alpha": 16}, "train": {"learning_rate": 1e-3}},
            },
            {
                "match": {"method": ["lora", "ia3"], "seed": 1},
                "set": {"train.learning_rate": 5e-4},
                "resources": {"cpus": 4},
            },
        ],
    )
    cells = {(c.model, c.method, c.seed): c for c in matrix_from_dict(data, output_dir=tmp_path).cells}
    bert_lora = cells["tiny-bert", "lora", 0]
    assert bert_lora.config.method_args == {"r": 4, "lora_alpha": 16}  # mappings merge
    assert bert_lora.config.train.learning_rate == 1e-3
    assert bert_lora.config.train.max_steps == 3  # defaults survive
    assert cells["tiny-bert", "lora", 1].config.train.learning_rate == 5e-4  # later override wins
    assert cells["tiny-llama", "ia3", 0].config.train.learning_rate == 3e-3
    assert cells["tiny-llama", "lora", 0].config.train.learning_rate is None  # the method's default
    assert bert_lora.resources.mem_gb == 8 and bert_lora.resources.time_min == 60
    assert cells["tiny-bert", "ia3", 0].resources.time_min == 30
    assert cells["tiny-llama", "ia3", 1].resources.cpus == 4


def test_exclusions_are_kept_with_their_reason(tmp_path):
    data = base(exclude=[{"match": {"model": "tiny-llama", "method": "ia3"}, "reason": "not today"}])
    matrix = matrix_from_dict(data, output_dir=tmp_path)
    excluded = [c for c in matrix.cells if c.excluded]
    assert len(matrix.cells) == 8 and len(excluded) == 2 and len(matrix.active) == 6
    assert {c.excluded for c in excluded} == {"not today"}
    assert "reason" in error_of(base(exclude=[{"match": {"method": "ia3"}}]), tmp_path)
    assert "non-empty reason" in error_of(base(exclude=[{"match": {"method": "ia3"}, "reason": " "}]), tmp_path)


def test_rules_that_match_nothing_are_warned_about(tmp_path):
    data = base(overrides=[{"match": {"method": "lora", "seed": 7}, "set": {"seed_note": 1}}])
    # unknown CellConfig key in a set fragment is an error naming the fragment
    assert "overrides[0]" in error_of(data, tmp_path) and "seed_note" in error_of(data, tmp_path)
    data = base(overrides=[{"match": {"method": "lora", "seed": 7}, "set": {"train.max_steps": 1}}])
    matrix = matrix_from_dict(data, output_dir=tmp_path)
    assert matrix.warnings == ["overrides[0] (method=lora,seed=7) matches no cell"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"modles": ["tiny-bert"]}, "unknown key 'modles'; valid keys: name=None"),
        (
            {"executor": {"cluster": "local", "paralel": 2}},
            "unknown key 'executor.paralel'; valid keys: cluster='slurm'",
        ),
        ({"resources": {"gpu": 1}}, "unknown key 'resources.gpu'; valid keys: nodes=1, gpus=0"),
        # an unknown executor.cluster is refused by dispatch's registry (tests/dispatch/test_executors.py)
        (
            {"executor": {"kind": "local", "cluster": "debug"}},
            "executor: executor.kind 'local' and executor.cluster 'debug' disagree",
        ),
        ({"methods": ["lora", "loraa"]}, "unknown method 'loraa'; valid: lora, qlora"),
        ({"tasks": ["sst2"]}, "unknown task 'sst2'; valid: emotion, billsum"),
        (
            {"methods": [{"name": "lora", "sett": {}}]},
            "unknown key 'methods.0.sett'; valid keys: name (required), set={}",
        ),
        ({"defaults": {"train": {"lr": 1e-3}}}, "defaults: unknown key 'train.lr'; valid keys: max_steps=None"),
        ({"defaults": {"model": "tiny-t5"}}, "defaults: 'model' cannot be set here"),
        (
            {"overrides": [{"match": {"methd": "lora"}}]},
            "unknown key 'overrides.0.match.methd'; valid keys: model=None",
        ),
        ({"overrides": [{"match": {"method": "lorra"}}]}, "overrides[0].match: unknown method 'lorra'"),
        (
            {"overrides": [{"match": {"model": "tiny-t5"}}]},
            "overrides[0].match: model 'tiny-t5' is not on the models axis",
        ),
        (
            {"overrides": [{"resources": {"time_min": 0}}]},
            "overrides[0].resources: resources: nodes must be >= 1, gpus >= 0, cpus >= 1, time_min >= 1",
        ),
        ({"seeds": [0, 0]}, "seeds: duplicate entries 0"),
        ({"methods": []}, "methods: needs at least one entry"),
        # numbers that are not settings: refused before anything runs (issue 24)
        (
            {"resources": {"mem_gb": 0.0001}},
            "mem_gb 0.0001 is out of range: give 0.001 (1 MB) to 1,048,576 (GB); below 1 MB, --mem would be 0",
        ),
        ({"resources": {"mem_gb": 1e300}}, "mem_gb 1e+300 is out of range"),
        ({"resources": {"mem_gb": math.nan}}, "resources.mem_gb: Input should be a finite number"),
        (
            {"overrides": [{"resources": {"mem_gb": math.inf}}]},
            "overrides[0].resources: mem_gb: Input should be a finite number",
        ),
        ({"seeds": [0, 2**70]}, "seeds.1: seed 1180591620717411303424 is out of range: seeds are 0 .. 4,294,967,295"),
        ({"defaults": {"train": {"epochs": math.inf}}}, "defaults: train.epochs: Input should be a finite number"),
        (
            {"defaults": {"train": {"learning_rate": math.inf}}},
            "defaults: train.learning_rate: Input should be a finite",
        ),
        (
            {"defaults": {"method_args": {"lora_alpha": math.nan}}},
            "defaults: method_args: lora_alpha: nan is not a finite",
        ),
        (
            {"methods": [{"name": "lora", "set": {"method_args.lora_alpha": math.nan}}]},
            "methods[lora]: method_args: lora_alpha: nan is not a finite number",
        ),
        (
            {"sweep": [{"values": {"method_args.lora_alpha": [8, math.nan]}}]},
            "sweep[0].values.method_args.lora_alpha: method_args: lora_alpha: nan is not a finite number",
        ),
        (
            {"sweep": [{"values": {"train.learning_rate": {"log": [1e-5, math.inf], "n": 3}}}]},
            "Input should be a finite number",
        ),
    ],
)
def test_invalid_files_are_one_line_errors(change, expected, tmp_path):
    message = error_of(base(**change), tmp_path)
    assert expected in message, message


def test_unknown_model_is_an_error(tmp_path):
    message = error_of(base(models=["tiny-bret"]), tmp_path)
    assert "tiny-bret" in message and "tiny-bert" in message  # names it and lists valid ones


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="matrix file not found"):
        load_matrix(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [tiny-bert\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_matrix(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_matrix(bad)


def test_output_dir_and_name_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCH_TEST", str(tmp_path / "scratch"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "grid.yaml"
    data = base(output_dir="$SCRATCH_TEST/runs")
    data.pop("name")
    path.write_text(yaml.safe_dump(data))
    matrix = load_matrix(path)
    assert matrix.name == "grid" and matrix.experiment == "grid"
    assert matrix.output_dir == tmp_path / "scratch" / "runs"
    assert matrix.tracking_uri == f"sqlite:///{tmp_path / 'scratch' / 'runs' / 'mlflow.db'}"
    # a SQLite store is not shared by live jobs: they leave logging to ``collect``
    assert all(not c.config.tracking.enabled for c in matrix.cells)
    live = matrix_from_dict(base(tracking={"uri": "http://127.0.0.1:5000"}), output_dir=tmp_path)
    assert all(c.config.tracking.enabled and c.config.tracking.uri == "http://127.0.0.1:5000" for c in live.cells)
    assert all(c.config.tracking.experiment == "t" for c in live.cells)


def test_grids_are_a_union_of_sub_products(tmp_path):
    data = base(
        models=["tiny-bert", "tiny-llama", "tiny-t5"],
        grids=[
            {"models": ["tiny-bert"], "methods": ["lora", "ia3"], "seeds": [0]},
            {"models": ["tiny-llama", "tiny-t5"], "methods": ["lora"]},
            {"models": ["tiny-bert"], "methods": ["lora"], "seeds": [0]},
        ],  # overlaps: no duplicate cells
    )
    cells = [(c.model, c.method, c.seed) for c in matrix_from_dict(data, output_dir=tmp_path).cells]
    assert cells == [
        ("tiny-bert", "lora", 0),
        ("tiny-bert", "ia3", 0),
        ("tiny-llama", "lora", 0),
        ("tiny-llama", "lora", 1),
        ("tiny-t5", "lora", 0),
        ("tiny-t5", "lora", 1),
    ]
    assert "grids[0].models: 'tiny-gpt' is not on the models axis" in error_of(
        base(grids=[{"models": ["tiny-gpt"]}]), tmp_path
    )
    assert "grids[0].seeds: 5 is not on the seeds axis" in error_of(base(grids=[{"seeds": [5]}]), tmp_path)
    assert "unknown key 'grids.0.model'; valid keys: models=None" in error_of(
        base(grids=[{"model": ["tiny-bert"]}]), tmp_path
    )


def test_memory_below_a_megabyte_never_renders_as_zero(tmp_path):
    """--mem=0 is "all of the node's memory" to SLURM: 1 MB is the least a matrix may ask for."""
    from harness.dispatch.executor import mem_text

    matrix = matrix_from_dict(base(resources={"mem_gb": 0.001}), output_dir=tmp_path)
    assert mem_text(matrix.cells[0].resources.mem_gb) == "1M"
    assert (
        mem_text(matrix_from_dict(base(resources={"mem_gb": 1.5}), output_dir=tmp_path).cells[0].resources.mem_gb)
        == "1536M"
    )


def test_duplicate_axis_entries_are_found_in_linear_time(tmp_path):
    """100,000 seeds took 95 s: each was counted in the whole list. Now a Counter: well under a second."""
    start = time.perf_counter()
    message = error_of(base(seeds=[*range(100_000), 99_999]), tmp_path)
    assert "seeds: duplicate entries 99999" in message
    assert time.perf_counter() - start < 2
    message = error_of(base(methods=["lora", "ia3", *["lora"] * 50_000]), tmp_path)
    assert "methods: duplicate entries lora" in message


def test_a_huge_name_is_quoted_short(tmp_path):
    """A 300 KB method name was echoed whole: now its head and its length."""
    message = error_of(base(methods=["m" * 300_000]), tmp_path)
    assert "unknown method 'mmmm" in message and "(300,000 characters)" in message and len(message) < 2_000
