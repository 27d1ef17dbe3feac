"""Parameter counts: exact, for 4-bit bases too, and offline on the meta device."""

from __future__ import annotations

import json
from typing import Any

import torch

from harness.models.registry import ModelSpec


def parameter_numel(param: torch.Tensor) -> int:
    """Logical number of elements. bitsandbytes packs two 4-bit values per byte, so a
    ``Params4bit`` reports half its size; its quant_state keeps the real shape."""
    quant_state = getattr(param, "quant_state", None)
    if quant_state is not None and getattr(quant_state, "shape", None) is not None:
        return int(torch.Size(quant_state.shape).numel())
    return param.numel()


def count_module_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total), counting each shared (tied) tensor once."""
    trainable = total = 0
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        numel = parameter_numel(param)
        total += numel
        if param.requires_grad:
            trainable += numel
    return trainable, total


def model_config(spec: ModelSpec) -> Any:
    """The architecture config, without weights: shipped file, tiny preset or local/Hub config."""
    from transformers import AutoConfig

    if spec.config_file is not None:
        data = {k: v for k, v in json.loads(spec.config_file.read_text()).items() if not k.startswith("_")}
        model_type = data.pop("model_type")
        return AutoConfig.for_model(model_type, **data)
    from harness.models.loading import materialise

    if spec.origin == "tiny" or spec.origin == "pip_package":
        return AutoConfig.from_pretrained(materialise(spec))
    return AutoConfig.from_pretrained(spec.local_dir or spec.hub_id)


def build_meta_model(spec: ModelSpec, head: str, num_labels: int | None = None) -> torch.nn.Module:
    """Build the model on the meta device: exact shapes, no memory, no weights."""
    from harness.heads import HEADS, auto_class

    config = model_config(spec)
    if HEADS[head].class_labels:
        config.num_labels = num_labels or 2
        if config.pad_token_id is None:
            config.pad_token_id = 0
    with torch.device("meta"):
        model = auto_class(head).from_config(config)
    # An empty build does not tie embeddings on its own (Llama-3.2 ties input and output).
    model.tie_weights()
    if _declares_untied_embeddings(spec):
        # transformers 5.x forces T5Config.tie_word_embeddings=True, yet FLAN-T5's checkpoint has its
        # own lm_head (loading keeps it separate because the tensors differ). Count it as loaded.
        output = model.get_output_embeddings()
        if output is not None and output.weight is model.get_input_embeddings().weight:
            output.weight = torch.nn.Parameter(torch.empty_like(output.weight, device="meta"))
    return model


def _declares_untied_embeddings(spec: ModelSpec) -> bool:
    return spec.config_file is not None and json.loads(spec.config_file.read_text()).get("tie_word_embeddings") is False
