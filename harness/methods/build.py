"""Build a method's PEFT config for a model family and head, apply it, check combinations.

``check_combination`` runs before any model is loaded: a combination that cannot
work is refused with its reason.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from harness.config import CellConfig, ConfigError
from harness.methods.registry import MethodSpec, resolve_method

# peft 0.21 still reads transformers' deprecated `is_gradient_checkpointing`; harmless noise.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

TASK_TYPES = {"seq2seq": "SEQ_2_SEQ_LM", "causal": "CAUSAL_LM", "seqcls": "SEQ_CLS"}
# Fields the harness sets itself; a user override of these would be silently wrong.
MANAGED_FIELDS = {"task_type", "peft_type", "base_model_name_or_path", "revision", "inference_mode"}


def peft_config_class(spec: MethodSpec) -> type:
    import peft

    assert spec.peft_config
    return getattr(peft, spec.peft_config)


def resolve_method_args(spec: MethodSpec, family: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the family's defaults, then the user's overrides; unknown fields refused."""
    if spec.peft_config is None:
        if overrides:
            raise ConfigError(f"method {spec.name!r} takes no method_args (got {', '.join(sorted(overrides))})")
        return {}
    managed = sorted(set(overrides) & MANAGED_FIELDS)
    if managed:
        raise ConfigError(
            f"method {spec.name!r}: method_args {', '.join(managed)} are set by the harness (from the model, the "
            f"task's head and the run), not by a cell; remove them (harness-set: {', '.join(sorted(MANAGED_FIELDS))})"
        )
    valid = {f.name for f in dataclasses.fields(peft_config_class(spec))} - MANAGED_FIELDS
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(
            f"method {spec.name!r}: unknown method_args {', '.join(unknown)}; valid {spec.peft_config} fields: "
            f"{', '.join(sorted(valid))}"
        )
    return {**spec.defaults, **spec.family_defaults.get(family, {}), **overrides}


def check_combination(config: CellConfig, spec: MethodSpec, family: str, head: str, args: dict[str, Any]) -> None:
    """Refuse combinations that cannot work, with the reason, before loading anything."""
    if spec.prompt_based and config.train.gradient_checkpointing:
        raise ConfigError(
            f"method {spec.name!r} cannot use gradient checkpointing: its virtual tokens/prefixes enter every layer "
            "through the attention cache, which checkpointed layers do not keep; set train.gradient_checkpointing: false"
        )
    if not spec.trains and head == "seqcls":
        raise ConfigError(
            f"method 'zeroshot' on {config.model!r} for {config.task!r}: a classification head is untrained "
            "(random) before fine-tuning, so zero-shot scores would be meaningless; use an encoder-decoder "
            "(text-to-text) model for zero-shot classification"
        )
    if spec.name == "ia3":
        targets, feedforward = args.get("target_modules"), args.get("feedforward_modules")
        if isinstance(targets, list) and isinstance(feedforward, list) and not set(feedforward) <= set(targets):
            raise ConfigError(
                f"method 'ia3': feedforward_modules {sorted(set(feedforward) - set(targets))} are not in "
                f"target_modules {targets}; feed-forward modules must be a subset of the targets"
            )
    if spec.rank_allocation:
        init_r, target_r = args.get("init_r", 12), args.get("target_r", 8)
        if target_r > init_r:
            raise ConfigError(f"method 'adalora': target_r ({target_r}) must not exceed init_r ({init_r})")
    if config.train.packing:
        reason = _packing_refusal(spec, head)
        if reason:
            raise ConfigError(f"train.packing: cannot pack {config.method!r} on a {head} head: {reason}; "
                              "set train.packing: false (packing applies to decoder-only models with weight-space methods)")
    if config.train.precision == "fp16" and spec.quantize_4bit:
        raise ConfigError("method 'qlora' with fp16: use bf16 (the 4-bit compute dtype) or fp32")


# Why padding-free packing (one flattened row per batch) cannot apply, per head.
PACKING_REFUSALS = {
    "seq2seq": "an encoder-decoder example is two sequences (encoder input, decoder target), which one flattened "
               "row cannot hold",
    "seqcls": "a classification head pools one position per padded row (the last token, or [CLS]), which a row of "
              "several examples does not have",
}


def _packing_refusal(spec: MethodSpec, head: str) -> str | None:
    if not spec.trains:
        return "a method that does not train has no training batches to pack"
    if spec.prompt_based:
        return "its virtual tokens or prefixes are prepended to each row, and a flattened row holds several examples"
    return PACKING_REFUSALS.get(head)


def build_peft_config(
    spec: MethodSpec, head: str, args: dict[str, Any], *, total_steps: int, model_config: Any
) -> Any:
    """The peft config object for this head, with the fields the harness manages filled in."""
    cls = peft_config_class(spec)
    kwargs = dict(args)
    kwargs["task_type"] = TASK_TYPES[head]
    if spec.rank_allocation:
        kwargs.setdefault("total_step", max(total_steps, 1))
        budget = kwargs.get("tinit", 0) + kwargs.get("tfinal", 0)
        if budget >= kwargs["total_step"]:
            raise ConfigError(
                f"method 'adalora': tinit + tfinal ({budget}) must be below the total step count "
                f"({kwargs['total_step']}); lower them or train longer"
            )
    if spec.peft_config == "PrefixTuningConfig" and kwargs.get("prefix_projection"):
        # The reparameterization MLP needs a width; the model's hidden size is the usual choice.
        kwargs.setdefault("encoder_hidden_size", _hidden_size(model_config))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"method {spec.name!r}: invalid {cls.__name__}: {error}") from None


def _hidden_size(model_config: Any) -> int:
    for name in ("hidden_size", "d_model"):
        value = getattr(model_config, name, None)
        if value:
            return int(value)
    raise ConfigError("cannot tell the model's hidden size for prefix_projection; set method_args.encoder_hidden_size")


def apply_method(
    model: torch.nn.Module,
    spec: MethodSpec,
    head: str,
    args: dict[str, Any],
    *,
    total_steps: int,
    gradient_checkpointing: bool,
    quantized: bool,
) -> torch.nn.Module:
    """Wrap the base model for training (or freeze it for zero-shot)."""
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.23
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if spec.peft_config is not None:
            model.enable_input_require_grads()
    if spec.peft_config is None:
        for param in model.parameters():
            param.requires_grad_(spec.trains)
        return model
    from peft import get_peft_model

    peft_config = build_peft_config(spec, head, args, total_steps=total_steps, model_config=model.config)
    try:
        return get_peft_model(model, peft_config)
    except ValueError as error:
        # e.g. target modules that do not exist in this architecture: name the ones that do
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "target" in reason.lower():
            names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                            if name and not list(module.children())})
            reason = (f"target_modules {args.get('target_modules')!r} match no layer of this model; "
                      f"its layer names: {', '.join(names)}")
        raise ConfigError(f"method {spec.name!r}: {reason}") from None


def after_optimizer_step(model: torch.nn.Module, spec: MethodSpec, step: int) -> None:
    """AdaLoRA's rank allocation; must run after optimizer.step() and before zero_grad(),
    otherwise AdaLoRA silently acts as plain LoRA."""
    if spec.rank_allocation:
        model.base_model.update_and_allocate(step)


def count_parameters(config: CellConfig) -> tuple[int, int]:
    """(trainable, total) parameters of a cell, computed offline on the meta device.

    QLoRA counts the same as LoRA on the unquantized base: 4-bit weights are counted at
    their logical size, as :func:`harness.models.params.count_module_parameters` does.
    """
    from harness.models import build_meta_model, count_module_parameters, resolve_model
    from harness.tasks import head_for, resolve_task

    model_spec, task, spec = resolve_model(config.model), resolve_task(config.task), resolve_method(config.method)
    head = head_for(task, model_spec.family, config.model)
    args = resolve_method_args(spec, model_spec.family, config.method_args)
    check_combination(config, spec, model_spec.family, head, args)
    model = build_meta_model(model_spec, head, num_labels=len(task.label_names) or None)
    total_steps = max(config.train.max_steps or 0, args.get("tinit", 0) + args.get("tfinal", 0) + 1)
    with torch.device("meta"):
        model = apply_method(model, spec, head, args, total_steps=total_steps, gradient_checkpointing=False, quantized=False)
    return count_module_parameters(model)
