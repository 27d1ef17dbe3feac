"""Padding-free packing: a packed row's loss is the padded batch's loss; refused where it cannot apply."""

from __future__ import annotations

import pytest
import torch

from harness.config import DataConfig
from harness.errors import ConfigError
from harness.models import load_model, resolve_model
from harness.tasks import Formatter, collate_packed, collate_train, count_tokens, load_split, resolve_task


@pytest.fixture(scope="module")
def llama_and_examples():
    loaded = load_model(
        resolve_model("tiny-llama"),
        "causal",
        num_labels=None,
        label_names=None,
        quantize_4bit=False,
        dtype=torch.float32,
        device=torch.device("cpu"),
        extra_kwargs={},
    )
    task = resolve_task("billsum")
    data = DataConfig(max_source_tokens=48, max_target_tokens=160)  # summaries differ in length below 160
    formatter = Formatter(task, "causal", loaded.tokenizer, data)
    rows = load_split(task, data, "train", 6, seed=5)  # a sample whose summaries differ in length
    examples = [formatter.encode(row) for row in rows]
    assert len({len(e.input_ids) for e in examples}) > 1, "the examples must differ in length for padding to matter"
    return loaded, examples


@pytest.mark.parametrize("method", ["none", "lora"])
def test_packed_loss_equals_padded_loss(llama_and_examples, method: str) -> None:
    loaded, examples = llama_and_examples
    model = loaded.model
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)
        model = get_peft_model(
            model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
    model.eval()
    padded = collate_train(examples, "causal", loaded.tokenizer.pad_token_id)
    packed = collate_packed(examples)
    assert packed["input_ids"].shape == (1, sum(len(e.input_ids) for e in examples))
    assert count_tokens(packed) == (packed["input_ids"].numel(),) * 2
    with torch.no_grad():
        loss_padded = model(**padded).loss
        loss_packed = model(**packed, use_cache=False).loss
    assert abs(float(loss_padded) - float(loss_packed)) < 1e-5, (float(loss_padded), float(loss_packed))
    # and the gradients agree too (what training sees)
    if method == "lora":
        grads = []
        for batch in (padded, packed):
            model.zero_grad()
            model(**batch, **({"use_cache": False} if batch is packed else {})).loss.backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
        model.unload()


def test_a_packed_cell_trains_as_the_padded_one_without_padding(make_cell, tmp_path) -> None:
    """The trainer's packed batches give the padded run's losses, step by step (same batches, no dropout)."""
    from harness.cell import run_cell

    def cell(packing: bool):
        return make_cell(
            "tiny-llama",
            "lora",
            "billsum",
            output_dir=str(tmp_path / f"packed-{packing}"),
            method_args={"lora_dropout": 0.0},
            train={"packing": packing, "group_by_length": False},
            data={"max_target_tokens": 400},
        )

    padded, result = run_cell(cell(False)), run_cell(cell(True))
    assert result.status == "success", result.error
    assert padded.efficiency.padding_fraction > 0.05
    for (_, a), (_, b) in zip(padded.efficiency.loss_history, result.efficiency.loss_history):
        assert abs(a - b) < 1e-4, (a, b)
    assert result.efficiency.padding_fraction == 0.0
    assert (
        result.efficiency.model_flops_per_token
        == 4 * result.efficiency.total_params + 2 * result.efficiency.trainable_params
    )
    assert result.efficiency.mfu is None  # a CPU has no bf16 peak in the table
    losses = [loss for _, loss in result.efficiency.loss_history]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("model", "method", "task", "reason"),
    [
        ("tiny-bert", "lora", "emotion", "a classification head pools one position per padded row"),
        ("tiny-llama", "lora", "emotion", "a classification head pools one position per padded row"),
        ("tiny-t5", "lora", "billsum", "an encoder-decoder example is two sequences"),
        ("tiny-llama", "prompt_tuning", "billsum", "virtual tokens or prefixes are prepended to each row"),
        ("tiny-llama", "zeroshot", "billsum", "does not train"),
    ],
)
def test_packing_is_refused_where_it_cannot_apply(make_cell, model: str, method: str, task: str, reason: str) -> None:
    from harness.cell import prepare_cell

    with pytest.raises(ConfigError) as info:
        prepare_cell(make_cell(model, method, task, train={"packing": True}))
    assert "train.packing: cannot pack" in str(info.value) and reason in str(info.value)


def test_compile_on_cpu_warns_and_trains(make_cell, caplog) -> None:
    from harness.cell import run_cell

    with caplog.at_level("WARNING", logger="harness.train"):
        result = run_cell(make_cell("tiny-llama", "lora", "billsum", train={"compile": True}))
    assert result.status == "success" and result.efficiency.compile_s is None
    assert any("train.compile: skipped" in r.getMessage() for r in caplog.records)
