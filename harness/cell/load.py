"""Phase ``load``: the model with its head and the method applied, the tokenizer, the encoded
examples; and a finished cell reloaded from its folder (:func:`load_trained`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from harness.cell.plan import CellPlan, prepare_cell
from harness.cell.resolve import parse_cell_config
from harness.cell.save import ADAPTER_DIR, MODEL_DIR
from harness.config import CellConfig
from harness.errors import ConfigError
from harness.methods.build import apply_method, default_learning_rate, resolved_peft_config
from harness.models import load_model
from harness.names import CELL_CONFIG
from harness.result import RunRecord
from harness.tasks import Formatter
from harness.train import distributed


@dataclass
class Loaded:
    """What the load phase built: the model (method applied), its tokenizer's formatter and the
    encoded examples."""

    model: Any
    tokenizer: Any
    formatter: Formatter
    quantized_4bit: bool
    train_examples: list[Any]
    eval_examples: list[Any]
    total_steps: int  # optimizer steps of the whole run (0: the method does not train)


def resolve_precision(config: CellConfig, device: Any) -> tuple[str, Any]:
    """train.precision ("auto": bf16 on a GPU that has it, else fp32) and its torch dtype."""
    import torch

    precision = config.train.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision != "fp32" and device.type != "cuda":
        raise ConfigError(f"train.precision {precision!r} needs a GPU; this run is on CPU (use fp32 or auto)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    return precision, dtype


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load(plan: CellPlan, device: Any, dtype: Any) -> Loaded:
    """Load the base model, encode the examples, apply the method."""
    from harness.train import total_optimizer_steps

    config, method = plan.config, plan.method
    loaded = load_model(
        plan.model,
        plan.head,
        num_labels=len(plan.task.label_names) or None,
        label_names=list(plan.task.label_names) or None,
        quantize_4bit=method.quantize_4bit,
        dtype=dtype,
        device=device,
        extra_kwargs=config.model_args,
        sharded=config.train.distributed == "fsdp",
    )
    formatter = Formatter(plan.task, plan.head, loaded.tokenizer, config.data)
    train_examples = [formatter.encode(row) for row in plan.train_rows]
    eval_examples = [formatter.encode(row) for row in plan.eval_rows]
    total_steps = total_optimizer_steps(len(train_examples), config.train) if method.trains else 0
    model = apply_method(
        loaded.model,
        method,
        plan.head,
        plan.method_args,
        family=plan.model.family,
        total_steps=total_steps,
        gradient_checkpointing=config.train.gradient_checkpointing,
        quantized=loaded.quantized_4bit,
    )
    return Loaded(model, loaded.tokenizer, formatter, loaded.quantized_4bit, train_examples, eval_examples, total_steps)


def learning_rate(plan: CellPlan) -> float:
    """train.learning_rate, else the method's default: the rate the cell trains at."""
    return plan.config.train.learning_rate or default_learning_rate(plan.method)


def run_record(plan: CellPlan, loaded: Loaded) -> RunRecord:
    """What ran, as built (result.json's ``run``): reports read it instead of re-deriving settings."""
    trains = plan.method.trains
    return RunRecord(
        head=plan.head,
        family=plan.model.family,
        peft_config=resolved_peft_config(loaded.model),
        learning_rate=learning_rate(plan) if trains else None,
        total_steps=loaded.total_steps if trains else 0,
        train_examples=len(loaded.train_examples),
        eval_examples=len(loaded.eval_examples),
        **_batch_record(plan.config, trains),
    )


def _batch_record(config: CellConfig, trains: bool) -> dict[str, Any]:
    """How the global batch was split: the processes, each one's batch, the batch per optimizer
    step (no training batch for a method that does not train)."""
    ctx, train = distributed.current(), config.train
    per_device = train.batch_size // ctx.world_size
    return {
        "distributed": ctx.mode,
        "world_size": ctx.world_size,
        "per_device_batch": per_device if trains else None,
        "effective_batch": per_device * ctx.world_size * train.grad_accum if trains else None,
    }


def load_trained(cell_dir: Path) -> tuple[Any, Formatter, list[Any], CellPlan]:
    """Reload a finished cell: base model plus its saved adapter (or fine-tuned weights).

    Returns (model, formatter, eval examples, plan), ready for :func:`harness.tasks.evaluate.evaluate`.
    """
    import torch

    path = cell_dir / CELL_CONFIG
    plan = prepare_cell(parse_cell_config(yaml.safe_load(path.read_text()), where=str(path)))
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    _, dtype = resolve_precision(plan.config, device)
    loaded = load_saved(plan, cell_dir, device, dtype)
    return loaded.model, loaded.formatter, loaded.eval_examples, plan


def load_saved(plan: CellPlan, cell_dir: Path, device: Any, dtype: Any) -> Loaded:
    """The base model with the weights a finished cell saved in ``cell_dir`` (its adapter, or
    every weight for full fine-tuning), and ``plan``'s evaluation examples: no training examples,
    ``total_steps`` 0."""
    config = plan.config
    spec = plan.model
    if (cell_dir / MODEL_DIR).is_dir():  # full fine-tuning saved every weight
        spec = replace(spec, origin="local", local_dir=cell_dir / MODEL_DIR)
    loaded = load_model(
        spec,
        plan.head,
        num_labels=len(plan.task.label_names) or None,
        label_names=list(plan.task.label_names) or None,
        quantize_4bit=plan.method.quantize_4bit,
        dtype=dtype,
        device=device,
        extra_kwargs=config.model_args,
    )
    model = loaded.model
    if (cell_dir / ADAPTER_DIR).is_dir():
        from peft import PeftModel

        # AdaLoRA's reloaded adapter needs is_trainable=True for a forward pass with labels.
        model = PeftModel.from_pretrained(
            model, cell_dir / ADAPTER_DIR, is_trainable=plan.method.hooks.reload_trainable
        )
    formatter = Formatter(plan.task, plan.head, loaded.tokenizer, config.data)
    examples = [formatter.encode(row) for row in plan.eval_rows]
    return Loaded(model, loaded.tokenizer, formatter, loaded.quantized_4bit, [], examples, 0)
