"""peft's method_comparison/MetaMathQA benchmark as a matrix (issue 22): the shipped experiment
configs plan with the trainable counts of peft's published result files, the configs whose fields
the installed peft lacks are refused with that reason, training rows can come from another source
than the task's (MetaMathQA for GSM8K) with peft's character filter, the prompt is peft's query
template, several configurations of one method are cells of their own, and the CPU variant runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "jobs" / "peft-metamathqa.yaml"
SHIPPED = ROOT / "jobs" / "peft-metamathqa"

# counted when the cell runs: these methods initialise their adapter from the base weights
COUNTED_AT_RUN_TIME = {
    "adamss/llama-3.2-3B-rank32",
    "frod/llama-3.2-3B-default",
    "frod/llama-3.2-3B-sparse0.02-lr_0.001",
    "shira/llama-3.2-3B-lr_0.0003-random_seed_42",
}
# peft counts after its LoRA-FA optimizer froze A (3,670,016); the plan counts the adapter as built
LORA_FA = "lora/llama-3.2-3B-rank32-lorafa"
# the installed peft's config classes lack fields these configs set
REFUSED = {
    "c3a/llama-3.2-3B-default": "unknown method_args exclude_modules, fan_in_fan_out",
    "oft/llama-3.2-3B-rank32": "unknown method_args alpha_pattern, rank_pattern",
    "unilora/llama-3.2-3B-default": "unknown method_args exclude_modules",
}


def _published() -> dict[str, int]:
    """experiment -> train_info.num_trainable_params, from the shipped result files."""
    counts = {}
    for path in sorted((SHIPPED / "results").glob("*.json")):
        data = json.loads(path.read_text())
        counts[data["run_info"]["experiment_name"]] = data["train_info"]["num_trainable_params"]
    return counts


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import os

    from harness.matrix import load_matrix

    here = Path.cwd()
    os.chdir(ROOT)  # the configs' paths are relative to the repository root, as the file says
    try:
        return load_matrix(JOB, output_dir=tmp_path_factory.mktemp("peft"))
    finally:
        os.chdir(here)


def _experiment(cell: Any) -> str:
    return str(cell.config.tags["peft_experiment"])


def test_the_shipped_configs_are_pefts_files() -> None:
    """Every shipped file is byte for byte the one its SOURCES checksum names."""
    import hashlib

    listed = {}
    for line in (SHIPPED / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    assert len(listed) == 164
    for name, digest in listed.items():
        assert hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest() == digest, name


def test_every_config_is_a_cell_and_plans_with_pefts_trainable_counts(matrix: Any) -> None:
    from harness.methods.build import CountUnavailable, count_parameters

    experiments = {p.parent.relative_to(SHIPPED / "experiments").as_posix() for p in SHIPPED.glob("experiments/*/*/*")}
    cells = {_experiment(cell): cell for cell in matrix.cells}
    # one cell per experiment, but the Riemannian one: the same adapter config as rank32
    assert set(cells) == experiments - {"lora/llama-3.2-3B-rank32-riemannian"}
    assert len({cell.cell_id for cell in matrix.cells}) == len(cells) == 70
    assert {_experiment(cell) for cell in matrix.cells if cell.excluded} == {
        *REFUSED,
        "prefixtuning/llama-3.2-3B-tokens50-init_prefix-lr_0.005",
    }
    published = _published()
    assert len(published) == 63
    matched = []
    for experiment, cell in sorted(cells.items()):
        if cell.excluded or experiment not in published:
            continue
        assert cell.config.model == "llama-3.2-3b" and cell.config.tags["harness.variant"] == experiment
        try:
            trainable, _ = count_parameters(cell.config)
        except CountUnavailable:
            assert experiment in COUNTED_AT_RUN_TIME
            continue
        if experiment == LORA_FA:
            assert (trainable, published[experiment]) == (9_175_040, 3_670_016)
            continue
        assert trainable == published[experiment], experiment
        matched.append(experiment)
    assert len(matched) == 63 - 4 - len(COUNTED_AT_RUN_TIME) - 1  # 4 excluded/refused of the published


@pytest.mark.parametrize("experiment", sorted(REFUSED))
def test_configs_the_installed_peft_cannot_express_are_refused_with_that_reason(matrix: Any, experiment: str) -> None:
    from harness.methods.build import count_parameters

    (cell,) = [c for c in matrix.cells if _experiment(c) == experiment]
    assert "installed peft" in str(cell.excluded)
    with pytest.raises(ConfigError, match=REFUSED[experiment]):
        count_parameters(cell.config)


def test_pefts_default_training_parameters_and_overrides(matrix: Any) -> None:
    defaults = json.loads((SHIPPED / "default_training_params.json").read_text())
    cells = {_experiment(cell): cell.config for cell in matrix.cells}
    lora = cells["lora/llama-3.2-3B-rank32"]
    train, data = lora.train, lora.data
    kwargs = defaults["optimizer_kwargs"]
    assert (train.max_steps, train.batch_size, train.grad_accum) == (defaults["max_steps"], defaults["batch_size"], 1)
    assert (train.learning_rate, train.weight_decay) == (kwargs["lr"], kwargs["weight_decay"])
    assert (train.scheduler, train.warmup_ratio, train.max_grad_norm) == ("cosine", 0.1, defaults["grad_norm_clip"])
    assert (train.precision, train.eval_every, train.eval_batch_size) == ("bf16", defaults["eval_steps"], 50)
    assert data.max_source_tokens + data.max_target_tokens == defaults["max_seq_length"]
    assert data.max_target_tokens == defaults["generation_kwargs"]["max_new_tokens"]
    assert (data.max_validation_samples, data.eval_split, data.max_eval_samples) == (50, "test", None)
    source = data.train_source
    assert source is not None and (source.hub_id, source.max_chars) == ("meta-math/MetaMathQA", 1300)
    assert source.fields == {"text": "query", "target": "response"}
    # peft merges training_params.json shallowly: an optimizer_kwargs without weight_decay ran
    # with AdamW's own 0.01, which the published results record
    assert (
        cells["vera/llama-3.2-3B-default"].train.learning_rate,
        cells["vera/llama-3.2-3B-default"].train.weight_decay,
    ) == (
        1e-3,
        0.01,
    )
    assert cells["lokr/llama-3.2-3B-rank32-factor4-lr0.003"].train.weight_decay == 0.1
    assert cells["hira/llama-3.2-3B-rank32-lr4.5e-3"].train.weight_decay == 0.0
    assert cells["full-finetuning/llama-3.2-3B-lr_0.00001"].method == "full"
    assert cells[LORA_FA].method == "lorafa"


def test_the_tuned_matrix_sweeps_the_rate_on_three_seeds(tmp_path: Path) -> None:
    import os

    from harness.matrix import load_matrix

    here = Path.cwd()
    os.chdir(ROOT)
    try:
        tuned = load_matrix(ROOT / "jobs" / "peft-metamathqa-tuned.yaml", output_dir=tmp_path)
    finally:
        os.chdir(here)
    assert tuned.spec.seeds == [0, 1, 2]
    stage1 = [cell for cell in tuned.active if cell.stage == "select"]
    lora = [c for c in stage1 if _experiment(c) == "lora/llama-3.2-3B-rank32"]
    assert len(lora) == 5 and {c.config.data.eval_split for c in lora} == {"validation"}
    assert {c.config.seed for c in lora} == {0}


def _rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_training_rows_from_another_source_with_pefts_character_filter(make_cell: Any, tmp_path: Path) -> None:
    """The gsm8k task trains on data.train_source (MetaMathQA's columns, mapped by its fields),
    without the rows longer than max_chars (query + " " + response), and still validates on its
    held-out GSM8K-train slice and tests on GSM8K's test split."""
    from harness.tasks import resolve_task
    from harness.tasks.data import load_split

    long = "x" * 1300
    train = _rows(
        tmp_path / "metamath.jsonl",
        [
            {"query": "What is 2 + 2?", "response": "2 + 2 = 4. The answer is: 4"},
            {"query": long, "response": "The answer is: 1"},  # 1,300 + 1 + 16 characters: dropped
            {"query": "x" * 1283, "response": "The answer is: 1"},  # exactly 1,300: kept
        ],
    )
    source = {"files": {"train": str(train)}, "fields": {"text": "query", "target": "response"}, "max_chars": 1300}
    config = make_cell("tiny-llama", "lora", "gsm8k", data={"train_source": source, "max_train_samples": None})
    task = resolve_task("gsm8k")
    rows = load_split(task, config.data, "train", None)
    assert [row["target"] for row in rows] == ["2 + 2 = 4. The answer is: 4", "The answer is: 1"]
    assert [row.index for row in rows] == [0, 2]  # as read, before the filter
    assert len(load_split(task, config.data, "validation", None)) == 50
    assert len(load_split(task, config.data, "test", None)) == 1319
    without = make_cell("tiny-llama", "lora", "gsm8k", data={"max_train_samples": None})
    assert len(load_split(task, without.data, "train", None)) == 7473 - 50
    assert config.cell_id != without.cell_id
    # the file's content is in the cell id, and a file changed after planning is refused
    import hashlib

    from harness.cell.resolve import parse_cell_config

    assert config.data.train_source is not None
    assert config.data.train_source.sha256 == {"train": hashlib.sha256(train.read_bytes()).hexdigest()}
    planned = config.model_dump(mode="json")
    train.write_text(train.read_text() + json.dumps({"query": "1 + 1?", "response": "The answer is: 2"}) + "\n")
    with pytest.raises(ConfigError, match=r"metamath.jsonl \(train\) changed since its cell was planned"):
        parse_cell_config(planned)
    with pytest.raises(ConfigError, match="max_chars"):
        make_cell("tiny-llama", "lora", "gsm8k", data={"train_source": {**source, "max_chars": 0}})


def test_the_gsm8k_prompt_is_pefts_query_template() -> None:
    """Training and generation prompts are peft's "Question: {query} Think step by step.\\nAnswer:",
    the answer following "Answer:" directly."""
    from transformers import AutoTokenizer

    from harness.config import DataConfig
    from harness.models import materialise, resolve_model
    from harness.tasks import resolve_task
    from harness.tasks.formatting import Formatter

    tokenizer = AutoTokenizer.from_pretrained(materialise(resolve_model("tiny-llama")))
    formatter = Formatter(resolve_task("gsm8k"), "causal", tokenizer, DataConfig(prompt_template="plain"))
    example = formatter.encode({"text": "What is 2 + 2?", "target": " 4\n#### 4"})
    # the token ids peft's tokenize_wo_answer gives: the template filled in, tokenized as one string
    assert example.prompt_ids == tokenizer("Question: What is 2 + 2? Think step by step.\nAnswer:")["input_ids"]
    assert example.input_ids[len(example.prompt_ids) :][-1] == tokenizer.eos_token_id


def test_several_configurations_of_one_method_are_cells_shown_apart(tmp_path: Path) -> None:
    """A methods entry with ``method:`` is a labelled configuration: two of lora are two cells,
    matched by their labels, tagged with them, and grouped apart by the report."""
    from harness.matrix import load_matrix
    from harness.report.load import CellRow, sweep_fields
    from harness.report.tables import group_rows

    spec = {
        "models": ["tiny-llama"],
        "tasks": ["emotion"],
        "methods": [
            "lora",
            {"name": "lora-r4", "method": "lora", "set": {"method_args": {"r": 4}}},
            {"name": "lora-r2", "method": "lora", "set": {"method_args": {"r": 2}}},
        ],
        "exclude": [{"match": {"method": "lora-r2"}, "reason": "shown excluded"}],
    }
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps(spec))
    cells = load_matrix(path, output_dir=tmp_path / "out").cells
    assert [c.method for c in cells] == ["lora"] * 3
    assert [c.config.tags.get("harness.variant") for c in cells] == [None, "lora-r4", "lora-r2"]
    assert [c.config.method_args.get("r") for c in cells] == [None, 4, 2]
    assert [bool(c.excluded) for c in cells] == [False, False, True]
    rows = [
        CellRow(
            cell_id=c.cell_id,
            task="emotion",
            model="tiny-llama",
            method="lora",
            seed=0,
            status="success",
            **sweep_fields(c.config.model_dump()),
        )
        for c in cells
    ]
    assert [g.label for g in group_rows(rows)] == ["lora", "lora-r2", "lora-r4"]
    spec["methods"].append({"name": "lora-r8", "method": "no-such-method"})
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="unknown method 'no-such-method'; valid: lora"):
        load_matrix(path, output_dir=tmp_path / "out")


def test_the_cpu_variant_runs_end_to_end(tmp_path: Path) -> None:
    """SmolLM2-135M, peft's LoRA r32 config, two steps on bundled GSM8K-train rows, 20 GSM8K test
    questions scored on the extracted final number."""
    import os

    from harness.cell import run_cell
    from harness.matrix import load_matrix
    from harness.models import package_dir, resolve_model

    if package_dir(resolve_model("smollm2-135m")) is None:
        pytest.skip("run `harness prefetch --model smollm2-135m`")
    here = Path.cwd()
    os.chdir(ROOT)
    try:
        (cell,) = load_matrix(ROOT / "jobs" / "peft-metamathqa-cpu.yaml", output_dir=tmp_path).active
        result = run_cell(cell.config)
    finally:
        os.chdir(here)
    assert result.status == "success", result.error
    assert set(result.metrics) >= {"exact_match"} and 0 <= result.metrics["exact_match"] <= 1
    predictions = [json.loads(line) for line in (cell.folder / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 20 and all("extracted" in p for p in predictions)
    assert result.efficiency.trainable_params == 1_843_200  # r32 on q_proj and v_proj of SmolLM2-135M
