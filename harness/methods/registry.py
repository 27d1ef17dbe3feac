"""Method presets: which PEFT config, its defaults per model family, and what a method needs.

Adding a method means adding one entry here (and its tests). The study's own
hyperparameters (ranks, targets, learning rates) live in ``jobs/thesis.yaml``;
these defaults only make every method runnable out of the box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.config import ConfigError

_ATTENTION_QV = {"t5": ["q", "v"], "llama": ["q_proj", "v_proj"], "bert": ["query", "value"]}


def _per_family(**values_by_key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {family: value}} -> {family: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, by_family in values_by_key.items():
        for family, value in by_family.items():
            out.setdefault(family, {})[key] = value
    return out


@dataclass(frozen=True)
class MethodSpec:
    name: str
    # the peft config class name, None for full fine-tuning and zero-shot
    peft_config: str | None
    learning_rate: float
    defaults: dict[str, Any] = field(default_factory=dict)
    family_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    trains: bool = True
    prompt_based: bool = False  # virtual tokens or prefixes: no gradient checkpointing
    quantize_4bit: bool = False
    # AdaLoRA reallocates ranks after every optimizer step; it needs the total step count
    rank_allocation: bool = False
    description: str = ""


_LORA_FAMILY = _per_family(target_modules=_ATTENTION_QV)

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("lora", "LoraConfig", 1e-3, {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05}, _LORA_FAMILY,
                   description="LoRA: low-rank updates of the attention projections"),
        MethodSpec("qlora", "LoraConfig", 1e-3, {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05}, _LORA_FAMILY,
                   quantize_4bit=True, description="QLoRA: LoRA on a 4-bit NF4 base with double quantization"),
        MethodSpec("adalora", "AdaLoraConfig", 1e-3,
                   {"init_r": 12, "target_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "tinit": 0, "tfinal": 0,
                    "deltaT": 1},
                   _LORA_FAMILY, rank_allocation=True, description="AdaLoRA: SVD-form LoRA with adaptive rank budget"),
        MethodSpec("loha", "LoHaConfig", 1e-3, {"r": 8, "alpha": 16}, _LORA_FAMILY,
                   description="LoHa: low-rank Hadamard product"),
        MethodSpec("lokr", "LoKrConfig", 1e-3, {"r": 8, "alpha": 16}, _LORA_FAMILY,
                   description="LoKr: low-rank Kronecker product"),
        MethodSpec("ia3", "IA3Config", 3e-3, {},
                   _per_family(
                       target_modules={"t5": ["k", "v", "wo"], "llama": ["k_proj", "v_proj", "down_proj"],
                                       "bert": ["key", "value", "output.dense"]},
                       feedforward_modules={"t5": ["wo"], "llama": ["down_proj"], "bert": ["output.dense"]},
                   ),
                   description="IA3: learned rescaling of keys, values and feed-forward activations"),
        MethodSpec("prefix", "PrefixTuningConfig", 1e-2, {"num_virtual_tokens": 20, "prefix_projection": True},
                   prompt_based=True, description="Prefix tuning (Li & Liang): reparameterized key/value prefixes"),
        MethodSpec("ptuning_v2", "PrefixTuningConfig", 1e-2, {"num_virtual_tokens": 20, "prefix_projection": False},
                   prompt_based=True,
                   description="P-Tuning v2: deep prompts at every layer (prefix tuning without reparameterization)"),
        MethodSpec("ptuning", "PromptEncoderConfig", 1e-2,
                   {"num_virtual_tokens": 20, "encoder_hidden_size": 128, "encoder_reparameterization_type": "MLP"},
                   prompt_based=True, description="P-tuning: virtual tokens from a prompt encoder"),
        MethodSpec("prompt_tuning", "PromptTuningConfig", 1e-2, {"num_virtual_tokens": 20},
                   prompt_based=True, description="Prompt tuning: trainable input embeddings"),
        MethodSpec("full", None, 5e-5, description="Full fine-tuning: every weight trains"),
        MethodSpec("zeroshot", None, 0.0, trains=False, description="No training: evaluate the base model"),
    )
}


def resolve_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]
