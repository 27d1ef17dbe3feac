"""Every method on every architecture and task it suits: trains, records, reloads identically."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.cell import load_trained, run_cell
from harness.errors import ConfigError
from harness.methods.build import combination_refusal
from harness.methods.registry import methods, resolve_method
from harness.models import resolve_model
from harness.result import load_result
from harness.tasks import head_for, resolve_task
from harness.tasks.evaluate import evaluate

COMBOS = [
    ("tiny-t5", "billsum"),
    ("tiny-t5", "emotion"),
    ("tiny-llama", "billsum"),
    ("tiny-llama", "emotion"),
    ("tiny-bert", "emotion"),
]
# peft's defaults that assume real model sizes: the 64-wide tiny layers need smaller blocks
TINY_ARGS = {
    "vblora": {"vector_length": 16},
    "c3a": {"block_size": 16},
    "shira": {"r": 4},
    "waveft": {"n_frequency": 100},
    "road": {"group_size": 16},
    "adaption_prompt": {"adapter_len": 4},
    # PVeRA's default rank barely moves tiny-T5's BillSum loss in 6 steps (on the held-out-free train)
    "pvera": {"r": 64},
    # the tiny tokenizer's byte alphabet: tokens every example uses
    "trainable_tokens": {"token_indices": list(range(4, 260))},
}


# train settings per method: PVeRA trains scaling vectors only and, like VeRA, wants a rate about
# ten times LoRA's; at the shared 1e-2 it moved tiny-Llama's BillSum loss by under 0.003 in 6 steps
TINY_TRAIN = {"pvera": {"learning_rate": 1e-1}}


def _refusal(model: str, task: str, method: str) -> str | None:
    family = resolve_model(model).family
    return combination_refusal(resolve_method(method), family, head_for(resolve_task(task), family, model))


CASES = [(m, t, method) for m, t in COMBOS for method in methods() if _refusal(m, t, method) is None]
REFUSALS = [(m, t, method) for m, t in COMBOS for method in methods() if _refusal(m, t, method) is not None]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize(("model", "task", "method"), CASES, ids=[f"{m}-{t}-{x}" for m, t, x in CASES])
def test_method_trains_records_and_reloads(make_cell, model: str, task: str, method: str) -> None:
    config = make_cell(model, method, task, method_args=TINY_ARGS.get(method, {}), train=TINY_TRAIN.get(method, {}))
    result = run_cell(config)
    cell_dir = Path(config.output_dir)
    assert result.status == "success", result.traceback

    on_disk = load_result(cell_dir)
    assert on_disk.status == "success" and on_disk.cell_id == config.cell_id
    expected = (
        {"rouge1", "rouge2", "rougeL", "rougeLsum"}
        if task == "billsum"
        else {
            "accuracy",
            "precision_macro",
            "recall_macro",
            "f1_macro",
            "precision_weighted",
            "recall_weighted",
            "f1_weighted",
        }
    )
    assert expected <= set(on_disk.metrics)
    eff = on_disk.efficiency
    assert eff.total_params > 0 and 0 <= eff.trainable_share <= 1
    assert on_disk.environment["packages"]["peft"] and on_disk.environment["accelerator"]["type"] == "cpu"
    assert (cell_dir / "predictions.jsonl").is_file() and (cell_dir / "log.txt").is_file()
    assert not (cell_dir / "checkpoints").exists(), "checkpoints are removed once a cell succeeds"

    spec = resolve_method(method)
    run = on_disk.run
    assert run is not None and run.head == head_for(resolve_task(task), resolve_model(model).family, model)
    if spec.peft_type is None:
        assert run.peft_config is None
    else:  # the config as built: its type, and every field set, target modules included
        assert run.peft_config["peft_type"] == spec.peft_type
        assert run.peft_config["task_type"]
        assert all(run.peft_config[key] == value for key, value in TINY_ARGS.get(method, {}).items())
    if method == "zeroshot":
        assert run.learning_rate is None
        assert eff.trainable_params == 0 and set(eff.phases) == {"load", "eval"}
        return
    assert set(eff.phases) == {"load", "train", "eval"}
    assert eff.trainable_params > 0 and eff.train_steps == 6 and eff.train_samples_per_s > 0
    assert eff.adapter_bytes and eff.adapter_bytes > 0
    losses = [loss for _, loss in eff.loss_history]
    assert mean(losses[-2:]) < mean(losses[:2]), f"loss did not decrease: {losses}"

    # The saved adapter (or model) reproduces the run's own predictions exactly.
    model_reloaded, formatter, examples, plan = load_trained(cell_dir)
    again = evaluate(
        model_reloaded,
        formatter,
        examples,
        data=config.data,
        batch_size=config.train.eval_batch_size,
        device=next(model_reloaded.parameters()).device,
    )
    saved = [json.loads(line) for line in (cell_dir / "predictions.jsonl").read_text().splitlines()]
    assert again.predictions == saved
    assert again.metrics == pytest.approx(on_disk.metrics)


@pytest.mark.parametrize(("model", "task", "method"), REFUSALS, ids=[f"{m}-{t}-{x}" for m, t, x in REFUSALS])
def test_a_refused_method_names_its_reason_before_loading(make_cell, model: str, task: str, method: str) -> None:
    config = make_cell(model, method, task)
    reason = _refusal(model, task, method)
    with pytest.raises(ConfigError, match=f"method {method!r} cannot run on") as refused:
        run_cell(config)
    assert reason in str(refused.value) and "\n" not in str(refused.value)
    assert not Path(config.output_dir).exists()


@pytest.mark.parametrize(("model", "task"), [("tiny-llama", "emotion"), ("tiny-bert", "emotion")])
def test_zeroshot_on_a_classification_head_is_refused_before_loading(make_cell, model: str, task: str) -> None:
    config = make_cell(model, "zeroshot", task)
    with pytest.raises(ConfigError, match="untrained"):
        run_cell(config)
    assert not Path(config.output_dir).exists()


@pytest.mark.parametrize("method", ["prefix", "ptuning_v2", "ptuning", "prompt_tuning"])
def test_prompt_methods_refuse_gradient_checkpointing(make_cell, method: str) -> None:
    config = make_cell("tiny-llama", method, "billsum", train={"gradient_checkpointing": True})
    with pytest.raises(ConfigError, match="gradient checkpointing"):
        run_cell(config)
    assert not Path(config.output_dir).exists()


def test_summarization_on_an_encoder_only_model_is_refused(make_cell) -> None:
    with pytest.raises(ConfigError, match="a bert model has no head for generation; families that can: t5, llama"):
        run_cell(make_cell("tiny-bert", "lora", "billsum"))


def test_ia3_feedforward_must_be_a_subset_of_targets(make_cell) -> None:
    config = make_cell(
        "tiny-t5", "ia3", "billsum", method_args={"target_modules": ["k", "v"], "feedforward_modules": ["wo"]}
    )
    with pytest.raises(ConfigError, match="subset"):
        run_cell(config)


def assert_produced(config, result) -> None:
    """What a successful training cell must leave: finite metrics, one prediction per evaluation
    example, the saved weights, the run record and the efficiency figures, on disk as returned."""
    cell_dir = Path(config.output_dir)
    on_disk = load_result(cell_dir)
    assert on_disk.status == "success" and on_disk.metrics == result.metrics
    assert result.metrics and all(math.isfinite(value) for value in result.metrics.values()), result.metrics
    run = result.run
    assert run is not None and run.learning_rate == config.train.learning_rate
    assert run.total_steps == config.train.max_steps and run.eval_examples == config.data.max_eval_samples
    assert len((cell_dir / "predictions.jsonl").read_text().splitlines()) == run.eval_examples
    weights = cell_dir / ("model" if resolve_method(config.method).peft_type is None else "adapter")
    assert weights.is_dir() and result.artifacts[weights.name] == weights.name
    eff = result.efficiency
    assert set(eff.phases) == {"load", "train", "eval"} and all(p.wall_s > 0 for p in eff.phases.values())
    assert eff.trainable_params > 0 and eff.train_steps == run.total_steps and eff.train_samples_per_s > 0
    assert eff.adapter_bytes and eff.adapter_bytes > 0
    assert len(eff.loss_history) == eff.train_steps and math.isfinite(eff.final_train_loss)


def test_class_weighted_loss_runs_for_both_formulations(make_cell) -> None:
    for model in ("tiny-bert", "tiny-t5"):
        config = make_cell(model, "lora", "emotion", data={"class_weighted_loss": True})
        result = run_cell(config)
        assert result.status == "success", result.traceback
        assert_produced(config, result)


def test_gradient_checkpointing_and_accumulation(make_cell) -> None:
    config = make_cell("tiny-llama", "lora", "billsum", train={"gradient_checkpointing": True, "grad_accum": 2})
    result = run_cell(config)
    assert result.status == "success", result.traceback
    assert_produced(config, result)
    # 8 examples in batches of 4: one optimizer step takes both micro-batches of an epoch
    assert result.efficiency.train_samples == 6 * 8


def test_a_failing_cell_ends_failed_with_traceback(make_cell) -> None:
    config = make_cell("tiny-llama", "lora", "emotion", model_args={"no_such_kwarg_for_the_model": 1})
    result = run_cell(config)
    assert result.status == "failed"
    assert result.traceback and "Traceback" in result.traceback
    assert load_result(Path(config.output_dir)).status == "failed"


def test_host_telemetry_samples_a_real_training_cell(make_cell) -> None:
    import csv

    import psutil

    config = make_cell(
        "tiny-llama", "lora", "emotion", train={"max_steps": 20}, telemetry={"enabled": True, "interval_s": 0.1}
    )
    result = run_cell(config)
    assert result.status == "success", result.traceback
    telemetry = result.telemetry
    assert telemetry["backend"] == "host" and telemetry["nvml_unavailable_reason"]
    rows = list(csv.DictReader((Path(config.output_dir) / "telemetry.csv").open()))
    phases = list(dict.fromkeys(row["phase"] for row in rows if row["phase"] in ("load", "train", "eval")))
    assert phases == ["load", "train", "eval"]
    train_rows = [row for row in rows if row["phase"] == "train"]
    assert telemetry["metrics"]["host/train/sample_count"] == len(train_rows)
    assert telemetry["metrics"]["host/train/rss_peak_bytes"] == max(float(r["rss_bytes"]) for r in train_rows)
    assert (Path(config.output_dir) / result.artifacts["timeline_png"]).is_file()
    # the sampler process is gone once the cell has ended
    assert not [p for p in psutil.Process().children(recursive=True) if "telemetry" in " ".join(p.cmdline())]


def test_predictions_name_their_source_row_and_input(make_cell) -> None:
    """Each predictions.jsonl record carries ``row``, the example's index in the bundled test
    split as read (before the seeded sample), and ``input``, its text cut to INPUT_CHARS."""
    from harness.tasks.data import read_table
    from harness.tasks.evaluate import INPUT_CHARS

    config = make_cell("tiny-bert", "lora", "emotion", data={"max_eval_samples": 6})
    assert run_cell(config).status == "success"
    records = [json.loads(line) for line in (Path(config.output_dir) / "predictions.jsonl").read_text().splitlines()]
    test = read_table(resolve_task("emotion").bundled["test"])
    assert len(records) == 6 and [r["index"] for r in records] == list(range(6))
    rows = [r["row"] for r in records]
    assert rows != list(range(6)) and len(set(rows)) == 6  # a sample of the split, not its first rows
    for record in records:
        assert {"index", "row", "input", "prediction", "reference"} <= set(record)
        assert 0 < len(record["input"]) <= INPUT_CHARS
        assert record["input"] == test[record["row"]]["text"][:INPUT_CHARS]
