"""What a method needs beyond its peft config, as hooks its registry entry declares.

The trainer and the cell call these and know no method by name:

- ``args``: fill in arguments that come from the run (AdaLoRA's total step count), the model
  (adaption prompt's layer count), or refuse what peft would silently accept (trainable
  tokens without any token);
- ``after_step``: run after ``optimizer.step()`` and before ``zero_grad()`` (AdaLoRA's and
  AdaMSS's allocation; AdaLoRA silently acts as plain LoRA without it);
- ``optimizer``: build the optimizer (LoRA-FA's projected-gradient AdamW);
- ``checkpoint_state`` / ``restore_state``: state outside the model and optimizer that an
  exact resume needs (AdaLoRA's importance scores);
- ``reload_trainable``: reload the saved adapter as trainable (AdaLoRA's forward with labels
  needs it).

Hooks import torch and peft inside their bodies: the registry that names them stays plain data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError


@dataclass(frozen=True)
class BuildContext:
    """What an ``args`` hook may read: the run's step count and the model's config."""

    method: str
    total_steps: int
    model_config: Any


@dataclass(frozen=True)
class MethodHooks:
    args: Callable[[dict[str, Any], BuildContext], dict[str, Any]] | None = None
    after_step: Callable[[Any, int], None] | None = None
    # (model, parameter groups, learning rate, train config) -> optimizer
    optimizer: Callable[[Any, list[dict[str, Any]], float, Any], Any] | None = None
    checkpoint_state: Callable[[Any], dict[str, Any]] | None = None
    restore_state: Callable[[Any, dict[str, Any], Any], None] | None = None
    reload_trainable: bool = False


# -- AdaLoRA ------------------------------------------------------------------------------------
_ADALORA_SCORES = ("ipt", "exp_avg_ipt", "exp_avg_unc")


def _adalora_args(args: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    args = {"total_step": max(ctx.total_steps, 1), **args}
    budget = args.get("tinit", 0) + args.get("tfinal", 0)
    if budget >= args["total_step"]:
        raise ConfigError(
            f"method {ctx.method!r}: tinit + tfinal ({budget}) must be below the total step count "
            f"({args['total_step']}); lower them or train longer"
        )
    init_r, target_r = args.get("init_r", 12), args.get("target_r", 8)
    if target_r > init_r:
        raise ConfigError(f"method {ctx.method!r}: target_r ({target_r}) must not exceed init_r ({init_r})")
    return args


def _allocate(model: Any, step: int) -> None:
    model.base_model.update_and_allocate(step)


def _adalora_state(model: Any) -> dict[str, Any]:
    allocator = model.base_model.rankallocator
    return {name: getattr(allocator, name) for name in _ADALORA_SCORES}


def _adalora_restore(model: Any, state: dict[str, Any], device: Any) -> None:
    allocator = model.base_model.rankallocator
    for name, value in state.items():
        setattr(allocator, name, {k: v.to(device) for k, v in value.items()})


ADALORA = MethodHooks(
    args=_adalora_args,
    after_step=_allocate,
    checkpoint_state=_adalora_state,
    restore_state=_adalora_restore,
    reload_trainable=True,
)
# AdaMSS's subspace allocation (ASA) is a no-op unless use_asa is set; called every step like AdaLoRA's.
ADAMSS = MethodHooks(after_step=_allocate)


# -- LoRA-FA ------------------------------------------------------------------------------------
def _lorafa_optimizer(model: Any, groups: list[dict[str, Any]], learning_rate: float, train: Any) -> Any:
    """peft's LoRA-FA optimizer: freezes every lora_A and projects B's gradient."""
    from peft.optimizers import create_lorafa_optimizer

    config = model.peft_config[model.active_adapter]
    return create_lorafa_optimizer(
        model, r=config.r, lora_alpha=config.lora_alpha, lr=learning_rate, weight_decay=train.weight_decay
    )


LORA_FA = MethodHooks(optimizer=_lorafa_optimizer)


# -- trainable tokens ---------------------------------------------------------------------------
def _trainable_tokens_args(args: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    """peft's default trains no token at all (an empty list), and which tokens matter (new special
    tokens, label words) only the user knows: a cell must name them."""
    if not args.get("token_indices"):
        raise ConfigError(
            f"method {ctx.method!r}: set method_args.token_indices, the vocabulary ids whose "
            "embeddings train (e.g. tokens added for the task); peft's default trains none"
        )
    return args


TRAINABLE_TOKENS = MethodHooks(args=_trainable_tokens_args)


# -- adaption prompt ----------------------------------------------------------------------------
def _adaption_prompt_args(args: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    """LLaMA-Adapter puts its prompts in the top layers; peft has no default count. All of them,
    capped at the paper's 30."""
    if args.get("adapter_layers"):
        return args
    layers = getattr(ctx.model_config, "num_hidden_layers", None)
    if not layers:
        raise ConfigError(f"method {ctx.method!r}: cannot tell the model's layer count; set method_args.adapter_layers")
    return {**args, "adapter_layers": min(int(layers), 30)}


ADAPTION_PROMPT = MethodHooks(args=_adaption_prompt_args)
