"""Build a method's PEFT config for a model and head, apply it, check combinations.

``check_combination`` runs before any model is loaded (and at plan time, through
:func:`count_parameters`): a combination that cannot work is refused with its reason.
Nothing here names a method: what varies lives in the method's registry entry.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from typing import TYPE_CHECKING, Any

from harness.config import CellConfig
from harness.errors import ConfigError
from harness.heads import HEADS
from harness.methods.hooks import BuildContext
from harness.methods.registry import MethodSpec, resolve_method

if TYPE_CHECKING:
    import torch

# peft 0.21 still reads transformers' deprecated `is_gradient_checkpointing`; harmless noise.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

# Fields the harness sets itself; a user override of these would be silently wrong.
MANAGED_FIELDS = frozenset({"task_type", "peft_type", "base_model_name_or_path", "revision", "inference_mode"})
# peft has no default virtual-token count for prompt learning; the study used 20
DEFAULT_VIRTUAL_TOKENS = 20
PROMPT_LEARNING_RATE, WEIGHT_SPACE_LEARNING_RATE = 1e-2, 1e-3


def peft_config_class(spec: MethodSpec) -> type:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    assert spec.peft_type
    return PEFT_TYPE_TO_CONFIG_MAPPING[spec.peft_type]


def is_prompt_learning(spec: MethodSpec) -> bool:
    """Virtual tokens or prefixes (prompt tuning, P-tuning, prefix tuning, CPT, cartridges):
    they enter every layer through the attention cache, and are prepended to each row."""
    if spec.peft_type is None:
        return False
    from peft.config import PromptLearningConfig

    return issubclass(peft_config_class(spec), PromptLearningConfig)


def default_learning_rate(spec: MethodSpec) -> float:
    if spec.learning_rate is not None:
        return spec.learning_rate
    return PROMPT_LEARNING_RATE if is_prompt_learning(spec) else WEIGHT_SPACE_LEARNING_RATE


def config_fields(spec: MethodSpec) -> list[str]:
    """The fields a cell may set in ``method_args``: the config class's, less the harness-set ones."""
    return sorted({f.name for f in dataclasses.fields(peft_config_class(spec))} - MANAGED_FIELDS)


def resolve_method_args(spec: MethodSpec, family: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults, then the user's overrides; harness-set and unknown fields refused.

    The family's target modules are not merged here: they are a fallback for architectures
    peft has no defaults for (see :func:`apply_method`)."""
    if spec.peft_type is None:
        if overrides:
            raise ConfigError(f"method {spec.name!r} takes no method_args (got {', '.join(sorted(overrides))})")
        return {}
    managed = sorted(set(overrides) & MANAGED_FIELDS)
    if managed:
        raise ConfigError(
            f"method {spec.name!r}: method_args {', '.join(managed)} are set by the harness (from the model, the "
            f"task's head and the run), not by a cell; remove them (harness-set: {', '.join(sorted(MANAGED_FIELDS))})"
        )
    valid = config_fields(spec)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(
            f"method {spec.name!r}: unknown method_args {', '.join(unknown)}; valid "
            f"{peft_config_class(spec).__name__} fields: {', '.join(valid)}"
        )
    args = dict(spec.defaults)
    if is_prompt_learning(spec) and "num_virtual_tokens" in valid:
        args.setdefault("num_virtual_tokens", DEFAULT_VIRTUAL_TOKENS)
    return {**args, **overrides}


def combination_refusal(spec: MethodSpec, family: str, head: str) -> str | None:
    """Why a method cannot run on a family's head: declared in its registry entry, or read from
    its peft config class."""
    declared = spec.refusal(family, head)
    if declared or spec.peft_type is None:
        return declared
    if HEADS[head].class_labels and "modules_to_save" not in config_fields(spec):
        # peft trains and saves a new classification head through modules_to_save
        return (
            f"{peft_config_class(spec).__name__} has no modules_to_save, so the new classification head would "
            "neither train nor be saved with the adapter"
        )
    return None


def check_combination(config: CellConfig, spec: MethodSpec, family: str, head: str, args: dict[str, Any]) -> None:
    """Refuse combinations that cannot work, with the reason, before loading anything."""
    reason = combination_refusal(spec, family, head)
    if reason:
        raise ConfigError(
            f"method {spec.name!r} cannot run on {config.model!r} for {config.task!r} ({family}, {head} head): {reason}"
        )
    prompt = is_prompt_learning(spec)
    if prompt and config.train.gradient_checkpointing:
        raise ConfigError(
            f"method {spec.name!r} cannot use gradient checkpointing: its virtual tokens/prefixes enter every layer "
            "through the attention cache, which checkpointed layers do not keep; set train.gradient_checkpointing: false"
        )
    targets, feedforward = args.get("target_modules"), args.get("feedforward_modules")
    if isinstance(targets, list) and isinstance(feedforward, list) and not set(feedforward) <= set(targets):
        raise ConfigError(
            f"method {spec.name!r}: feedforward_modules {sorted(set(feedforward) - set(targets))} are not in "
            f"target_modules {targets}; feed-forward modules must be a subset of the targets"
        )
    if config.train.packing:
        refusal = _packing_refusal(spec, prompt, head)
        if refusal:
            raise ConfigError(
                f"train.packing: cannot pack {config.method!r} on a {head} head: {refusal}; "
                "set train.packing: false (packing applies to decoder-only models with weight-space methods)"
            )
    if config.train.precision == "fp16" and spec.quantize_4bit:
        raise ConfigError(f"method {spec.name!r} with fp16: use bf16 (the 4-bit compute dtype) or fp32")


def _packing_refusal(spec: MethodSpec, prompt_learning: bool, head: str) -> str | None:
    if not spec.trains:
        return "a method that does not train has no training batches to pack"
    if prompt_learning:
        return "its virtual tokens or prefixes are prepended to each row, and a flattened row holds several examples"
    return HEADS[head].packing_refusal


def build_peft_config(spec: MethodSpec, head: str, args: dict[str, Any], *, total_steps: int, model_config: Any) -> Any:
    """The peft config object for this head, with the fields the harness manages filled in."""
    cls = peft_config_class(spec)
    kwargs = dict(args)
    if spec.hooks.args is not None:
        kwargs = spec.hooks.args(kwargs, BuildContext(spec.name, total_steps, model_config))
    kwargs["task_type"] = HEADS[head].peft_task_type
    if kwargs.get("prefix_projection") and "encoder_hidden_size" in config_fields(spec):
        # The reparameterization MLP needs a width; the model's hidden size is the usual choice.
        kwargs.setdefault("encoder_hidden_size", _hidden_size(model_config))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"method {spec.name!r}: invalid {cls.__name__}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
    family: str,
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
        if spec.peft_type is not None:
            model.enable_input_require_grads()
    if spec.peft_type is None:
        for param in model.parameters():
            param.requires_grad_(spec.trains)
        return model
    from peft import get_peft_model

    def wrap(method_args: dict[str, Any]) -> torch.nn.Module:
        peft_config = build_peft_config(spec, head, method_args, total_steps=total_steps, model_config=model.config)
        return get_peft_model(model, peft_config)

    try:
        try:
            return wrap(args)
        except ValueError as error:
            # peft knows no target modules for this architecture: the family's, if the registry has them
            fallback = spec.family_defaults.get(family, {})
            if "target_modules" in str(error) and "target_modules" not in args and fallback:
                return wrap({**fallback, **args})
            raise
    except ConfigError:
        raise
    except (ValueError, TypeError, RuntimeError) as error:
        reason = _first_line(error)
        if "target" in reason.lower():  # target modules this architecture lacks: name the ones it has
            names = sorted(
                {
                    name.rsplit(".", 1)[-1]
                    for name, module in model.named_modules()
                    if name and not list(module.children())
                }
            )
            reason = (
                f"target_modules {args.get('target_modules')!r} match no layer of this model; "
                f"its layer names: {', '.join(names)}"
            )
        raise ConfigError(f"method {spec.name!r}: {reason}") from None


def after_optimizer_step(model: torch.nn.Module, spec: MethodSpec, step: int) -> None:
    """The method's per-step hook; must run after optimizer.step() and before zero_grad()
    (AdaLoRA otherwise silently acts as plain LoRA)."""
    if spec.hooks.after_step is not None:
        spec.hooks.after_step(model, step)


def resolved_peft_config(model: Any) -> dict[str, Any] | None:
    """The active adapter's config as built (``PeftConfig.to_dict()``), JSON-safe; None without peft."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    config = configs[getattr(model, "active_adapter", "default")]
    return json.loads(json.dumps(config.to_dict(), default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def count_parameters(config: CellConfig) -> tuple[int, int]:
    """(trainable, total) parameters of a cell, computed offline on the meta device.

    QLoRA counts the same as LoRA on the unquantized base: 4-bit weights are counted at
    their logical size, as :func:`harness.models.params.count_module_parameters` does.
    """
    import torch

    from harness.models import build_meta_model, count_module_parameters, resolve_model
    from harness.tasks import head_for, task_of

    model_spec, task, spec = resolve_model(config.model), task_of(config), resolve_method(config.method)
    head = head_for(task, model_spec.family, config.model)
    args = resolve_method_args(spec, model_spec.family, config.method_args)
    check_combination(config, spec, model_spec.family, head, args)
    total_steps = max(config.train.max_steps or 0, args.get("tinit", 0) + args.get("tfinal", 0) + 1)

    def wrapped_skeleton() -> torch.nn.Module:
        # eval mode: some methods run a training-mode step while building (BOFT's butterfly dropout
        # draws a random index), which meta tensors cannot give; the count does not depend on the mode
        base = build_meta_model(model_spec, head, num_labels=len(task.label_names) or None).eval()
        return apply_method(
            base,
            spec,
            head,
            args,
            family=model_spec.family,
            total_steps=total_steps,
            gradient_checkpointing=False,
            quantized=False,
        )

    try:
        with torch.device("meta"):  # the adapter's own tensors too: no memory for any of it
            return count_module_parameters(wrapped_skeleton())
    except ConfigError as error:
        if not _needs_data(error):
            raise
    # A method that computes values while building (BOFT's permutation matrices) cannot make
    # them on the meta device: its adapter is built in memory (small), beside the meta base.
    try:
        return count_module_parameters(wrapped_skeleton())
    except ConfigError as error:
        if not _needs_data(error):
            raise
        raise CountUnavailable(
            f"method {spec.name!r} initialises its adapter from the base weights, which a "
            "meta-device skeleton does not have; its count comes when the cell runs"
        ) from None


class CountUnavailable(RuntimeError):
    """The method cannot be built on a weightless skeleton (an SVD or a data-dependent init of the
    base weights): the cell is not refused, its count is known only once it runs."""


def _needs_data(error: Exception) -> bool:
    return "meta" in str(error).lower()
